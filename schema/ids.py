"""Global IDs given as input, and connection cursors (the IDs themselves: services.global_ids)."""

from __future__ import annotations

from services.errors import Invalid
from services.global_ids import MAX_ID_LENGTH, decode_id, encode_id

__all__ = ["MAX_ID_LENGTH", "decode_cursor", "decode_id", "encode_cursor", "encode_id", "expect_id"]


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
