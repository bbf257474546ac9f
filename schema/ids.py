"""Opaque global IDs ("Member:42" in URL-safe base64) and connection cursors."""

from __future__ import annotations

import base64
import binascii

from services.errors import Invalid

MAX_ID_LENGTH = 100


def encode_id(type_name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


def decode_id(value: str) -> tuple[str, int] | None:
    """(type name, primary key), or None when `value` is not one of our IDs."""
    if not value or len(value) > MAX_ID_LENGTH:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    type_name, _, pk = raw.partition(":")
    if not type_name.isalpha() or not pk.isdigit() or len(pk) > 18:
        return None
    return type_name, int(pk)


def expect_id(value: str, type_name: str, field: list[str]) -> int:
    """The primary key of a `type_name` ID given as input; a clear INVALID otherwise."""
    decoded = decode_id(value)
    if decoded is None or decoded[0] != type_name:
        raise Invalid(f"not a {type_name} ID", field=field)
    return decoded[1]


def encode_cursor(pk: int) -> str:
    return encode_id("cursor", pk)


def decode_cursor(value: str, field: list[str]) -> int:
    return expect_id(value, "cursor", field)
