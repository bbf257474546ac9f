"""Laurel's own member tokens, checked without PyJWT's general pipeline when they have the
one shape Laurel issues; PyJWT decides everything else.

A member token is checked on nearly every cold request. PyJWT 2.15 spends ~30 µs on one in
a tight loop and ~80 µs inside a request (its segment checks walk the token a character at a
time, the standard library's JSON, options merged per call): a tenth of a cold dashboard's
CPU. The tokens `services.access.issue_member_token` signs are always the same shape, so
`claims` verifies exactly that shape with the standard library's HMAC (constant-time
comparison) and strict base64: header `{"alg": "HS256", "typ": "JWT"}`, claims `sub` (a
string), `exp` (a number) and `iat` (an integer, not in the future), nothing else.

It only ever accepts: whatever it is not sure PyJWT would accept with the same claims (any
other header or claim, padding, a signature that matches none of the secrets, JSON that
orjson and the standard library might read differently) returns None, and the caller asks
PyJWT, whose verdict, and error, stand. `tests/services/test_hs256.py` holds the two to
agreement over generated tokens.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import orjson
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import InvalidKeyError

__all__ = ["claims"]

# The headers PyJWT itself writes for HS256 (with and without `typ`), as parsed JSON.
_HEADERS = ({"alg": "HS256", "typ": "JWT"}, {"alg": "HS256"})
_CLAIMS = frozenset({"sub", "exp", "iat"})
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_STANDARD_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_HMAC = HMACAlgorithm(HMACAlgorithm.SHA256)


def claims(token: str, header: dict[str, Any], secrets: Sequence[str]) -> dict[str, Any] | None:
    """The claims of `token` (whose `header` the caller parsed) if it is an HS256 token of
    Laurel's shape signed with one of `secrets` and PyJWT would accept it with the same
    claims; None where PyJWT must decide."""
    if header not in _HEADERS:
        return None
    try:
        data = token.encode("ascii")
    except UnicodeEncodeError:
        return None
    signing_input, dot, signature_segment = data.rpartition(b".")
    header_segment, _, payload_segment = signing_input.partition(b".")
    if not dot or b"." in payload_segment or _segment(header_segment) is None:
        return None  # (the caller's parse of the header allows padding; PyJWT does not)
    signature = _segment(signature_segment)
    payload = _segment(payload_segment)
    if signature is None or payload is None:
        return None
    for secret in secrets:
        keyed = _keyed(secret)
        if keyed is None:
            continue
        mac = keyed.copy()  # the key already set up (a one-shot digest sets it up each time)
        mac.update(signing_input)
        if hmac.compare_digest(mac.digest(), signature):
            break
    else:
        return None
    try:
        found = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(found, dict) or found.keys() - _CLAIMS:
        return None
    subject, expires, issued = found.get("sub"), found.get("exp"), found.get("iat", 0)
    if (
        not isinstance(subject, str)
        or type(expires) not in (int, float)
        or type(issued) is not int
        or issued > time.time()  # PyJWT's own check, on the wall clock
        or len(payload) != len(orjson.dumps(found))  # no duplicate keys, no spaces: plain
    ):
        return None
    return found


def _segment(segment: bytes) -> bytes | None:
    """A base64url segment's bytes when it is canonical (no padding, no stray bits), as
    PyJWT requires; None otherwise."""
    if not segment or len(segment) % 4 == 1:
        return None
    padded = segment.translate(_URLSAFE_TO_STANDARD) + b"=" * (-len(segment) % 4)
    try:
        decoded = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error:
        return None
    encoded = binascii.b2a_base64(decoded, newline=False).translate(_STANDARD_TO_URLSAFE)
    return decoded if encoded.rstrip(b"=") == segment else None


@lru_cache(maxsize=16)
def _keyed(secret: str) -> hmac.HMAC | None:
    """An HMAC-SHA256 with the secret as PyJWT uses it as a key, or None where PyJWT refuses
    it (a PEM or SSH public key given as a secret)."""
    try:
        key: bytes = _HMAC.prepare_key(secret)
    except InvalidKeyError:
        return None
    return hmac.new(key, digestmod=hashlib.sha256)
