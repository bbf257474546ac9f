"""Opaque global IDs ("Member:42" in URL-safe base64), as the API shows them.

The domain names objects this way where what it writes leaves the process: audit entries'
targets, privacy exports, imports' reports. The schema's inputs and cursors build on it
(schema/ids.py).
"""

from __future__ import annotations

import base64
import binascii

MAX_ID_LENGTH = 100


def encode_id(type_name: str, pk: int) -> str:
    # base64.urlsafe_b64encode's result, with binascii's function called directly: a page of
    # transactions encodes two of these an entry (its ID and its cursor).
    raw = binascii.b2a_base64(f"{type_name}:{pk}".encode(), newline=False)
    return raw.translate(_URLSAFE).rstrip(b"=").decode()


_URLSAFE = bytes.maketrans(b"+/", b"-_")


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
