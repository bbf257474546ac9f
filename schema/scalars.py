"""DateTime that always carries an offset (UTC on output) and refuses naive input."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import strawberry


def _serialize(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _parse(value: Any) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("DateTime must be an ISO 8601 string")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("DateTime needs a UTC offset, e.g. 2026-01-01T00:00:00Z")
    return parsed.astimezone(UTC)


DateTime = strawberry.scalar(
    name="DateTime",
    description="ISO 8601 date and time with offset; UTC on output",
    serialize=_serialize,
    parse_value=_parse,
)
