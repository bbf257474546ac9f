"""Member JWTs for a whole seeded population, in bulk.

`services.access.issue_member_token` goes through PyJWT (about 170 µs a token here: 100,000
take ~17 s). The tokens are plain HS256 JWTs with a fixed header and `sub`, `iat`, `exp`
claims, so this signs the same bytes in a tight loop (~10x faster): the header segment is
taken from a token issue_member_token made, the payload is serialized as PyJWT does (compact
JSON, the claims in issue_member_token's order), and `check_tokens` compares a sample with
issue_member_token's own output byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from schema.ids import encode_id
from services.access import issue_member_token


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def member_tokens(
    members: Sequence[int], *, secret: str, now: datetime, ttl: timedelta
) -> list[str]:
    """One token per member, equal to issue_member_token(subject=encode_id("Member", pk))."""
    if not members:
        return []
    reference = issue_member_token(
        subject=encode_id("Member", members[0]), secret=secret, now=now, ttl=ttl
    )
    header = reference.split(".", 1)[0].encode()
    iat, exp = int(now.timestamp()), int((now + ttl).timestamp())
    key = secret.encode()
    tokens = []
    for pk in members:
        claims = {"sub": encode_id("Member", pk), "iat": iat, "exp": exp}
        signing_input = header + b"." + _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = _b64(hmac.new(key, signing_input, hashlib.sha256).digest())
        tokens.append((signing_input + b"." + signature).decode())
    return tokens


def check_tokens(
    members: Sequence[int],
    tokens: Sequence[str],
    *,
    secret: str,
    now: datetime,
    ttl: timedelta,
    sample: int = 50,
) -> None:
    """Raise unless a random sample of `tokens` equals issue_member_token's, byte for byte."""
    chooser = random.Random(len(members))
    for index in chooser.sample(range(len(members)), min(sample, len(members))):
        expected = issue_member_token(
            subject=encode_id("Member", members[index]), secret=secret, now=now, ttl=ttl
        )
        if tokens[index] != expected:
            raise AssertionError(f"bulk token for member {members[index]} differs from PyJWT's")


def write_lines(path: Path, values: Sequence[str]) -> Path:
    """One value a line (what bench/lua/member.lua reads): ASCII, no newlines in values."""
    for value in values[:1]:
        if not value.isascii() or "\n" in value:
            raise ValueError("values must be ASCII without newlines")
    path.write_text("\n".join(values) + "\n")
    return path
