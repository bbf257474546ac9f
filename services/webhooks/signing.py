"""Endpoint secrets: "whsec_" + base64 (Standard Webhooks), shown once; after a rotation the
previous one keeps signing beside the new one for a day, so receivers can switch over."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime, timedelta

from models import WebhookEndpoint

SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks prefix, not a secret)
SECRET_BYTES = 24
ROTATION_OVERLAP = timedelta(hours=24)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one for a day
    after a rotation."""
    found = [endpoint.secret]
    if (
        endpoint.previous_secret is not None
        and endpoint.previous_secret_until is not None
        and endpoint.previous_secret_until > now
    ):
        found.append(endpoint.previous_secret)
    return found
