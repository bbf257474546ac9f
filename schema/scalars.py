"""Scalars: DateTime that always carries an offset (UTC on output) and refuses naive input;
and the one rule that every text input is text the database can store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import strawberry
from graphql import GraphQLScalarType, GraphQLSchema


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


# ---------------------------------------------------------------- text a database can store

MAX_JSON_DEPTH = 32


def storable(text: str) -> str:
    """Text PostgreSQL can store: no NUL character, valid Unicode (no lone surrogates, which
    JSON's \\ud800 escapes can produce). Anything else is the client's mistake, refused as it
    is read rather than as an internal error from the database."""
    if "\x00" in text:
        raise ValueError("text must not contain the NUL character (\\u0000)")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (no unpaired surrogates)") from None
    return text


def _storable_json(value: Any, depth: int = 0) -> Any:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        storable(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(str(key))
            _storable_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _storable_json(item, depth + 1)
    return value


def _guarded(parse: Callable[..., Any], check: Callable[[Any], Any]) -> Callable[..., Any]:
    def parse_storable(*args: Any) -> Any:
        parsed = parse(*args)
        if isinstance(parsed, str | dict | list):
            check(parsed)
        return parsed

    parse_storable.laurel_guarded = True  # type: ignore[attr-defined]
    return parse_storable


# graphql-core 3.3 reads variables through `coerce_input_value` and literals through
# `coerce_input_literal` (falling back to `parse_literal`); older code paths call `parse_value`.
_PARSERS = ("parse_value", "coerce_input_value", "parse_literal", "coerce_input_literal")


def guard_text_inputs(schema: GraphQLSchema) -> None:
    """One rule for every text a client sends, whatever the field: String and ID arguments,
    input fields and variables, and every string inside a JSON value, refuse what the database
    cannot store (a BAD_USER_INPUT error naming the argument or variable). String and ID are
    graphql-core's shared scalars, so this holds for every schema in the process."""
    for name, check in (("String", storable), ("ID", storable), ("JSON", _storable_json)):
        scalar = schema.type_map.get(name)
        if not isinstance(scalar, GraphQLScalarType):
            continue
        for attribute in _PARSERS:
            parse = getattr(scalar, attribute, None)
            if parse is not None and not getattr(parse, "laurel_guarded", False):
                setattr(scalar, attribute, _guarded(parse, check))
