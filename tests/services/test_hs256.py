"""`services.hs256` accepts only what PyJWT accepts, with the same claims, and accepts the
tokens Laurel issues: generated tokens, well-formed and not, checked both ways."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services import hs256
from services.access import (
    InvalidToken,
    issue_member_token,
    pyjwt_claims,
    token_header,
    verify_member_token,
)

SECRETS = ("first-secret-long-enough-for-hs256-tokens!", "second-secret-long-enough-for-hs256!")
OTHER = "a-third-secret-nobody-configured-for-hs256"
NOW = int(time.time())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _pyjwt(token: str) -> dict[str, Any] | None:
    try:
        return pyjwt_claims(token, "HS256", SECRETS)
    except InvalidToken:
        return None


def _fast(token: str) -> dict[str, Any] | None:
    try:
        header = token_header(token)
    except InvalidToken:
        return None
    return hs256.claims(token, header, SECRETS)


HEADERS = [
    {"alg": "HS256", "kid": "k1"},
    {"alg": "HS256", "kid": 7},
    {"alg": "HS256", "crit": ["exp"]},
    {"alg": "HS256", "b64": False},
    {"alg": "HS512", "typ": "JWT"},
    {"alg": "none"},
    {"alg": "HS256", "typ": 1},
    {"typ": "JWT", "alg": "HS256"},
]
values = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.sampled_from([NOW - 60, NOW + 3600, NOW + 10**6, float(NOW + 60), "1", ["a"]]),
)
CLAIMS = ("sub", "exp", "iat", "nbf", "aud", "iss", "jti")


@st.composite
def tokens(draw: st.DrawFn) -> str:
    """Mostly the shape Laurel issues, with a few things changed: its header, its claims
    (dropped, retyped, added), its JSON (spaces, a duplicate key), its secret, its
    encoding (padding, stray bits, a broken signature, extra segments)."""
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if draw(st.integers(0, 3)) == 0:
        header = draw(st.sampled_from([{"alg": "HS256"}, *HEADERS]))
    claims: dict[str, Any] = {"sub": "TWVtYmVyOjE=", "iat": NOW - 10, "exp": NOW + 3600}
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(CLAIMS))
        if draw(st.booleans()):
            claims.pop(name, None)
        else:
            claims[name] = draw(values)
    separators = (", ", ": ") if draw(st.integers(0, 5)) == 0 else (",", ":")
    payload = json.dumps(claims, separators=separators).encode()
    if draw(st.integers(0, 5)) == 0:  # a duplicate key
        payload = b'{"sub":"U29tZW9uZUVsc2U=",' + payload[1:]
    head = _b64(json.dumps(header, separators=(",", ":")).encode())
    body = _b64(payload)
    secret = draw(st.sampled_from([*SECRETS, OTHER]))
    signature = _b64(hmac.digest(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256))
    mangle = draw(st.sampled_from(["none"] * 5 + ["pad", "bits", "signature", "dots", "space"]))
    if mangle == "pad" and len(body) % 4:
        body += "=" * (-len(body) % 4)
    elif mangle == "bits":  # a non-canonical last character: the same bytes, stray bits
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        body = body[:-1] + alphabet[alphabet.index(body[-1]) ^ 1]
    elif mangle == "signature":
        signature = signature[::-1]
    elif mangle == "dots":
        body += ".x"
    elif mangle == "space":
        signature += " "
    return f"{head}.{body}.{signature}"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens())
def test_whatever_the_fast_check_accepts_pyjwt_accepts_with_the_same_claims(token: str) -> None:
    fast = _fast(token)
    if fast is not None:
        assert _pyjwt(token) == fast


@pytest.mark.parametrize("secret", SECRETS)
def test_the_tokens_laurel_issues_take_the_fast_check(secret: str) -> None:
    now = datetime.now(UTC)
    token = issue_member_token(subject="TWVtYmVyOjQy", secret=secret, now=now)

    claims = _fast(token)

    assert claims is not None
    assert claims == _pyjwt(token)
    assert verify_member_token(token, hmac_secrets=SECRETS, public_key=None, now=now) == (
        "TWVtYmVyOjQy",
        datetime.fromtimestamp(claims["exp"], tz=UTC),
    )


def test_a_token_signed_with_another_secret_is_left_to_pyjwt_and_refused() -> None:
    now = datetime.now(UTC)
    token = issue_member_token(subject="TWVtYmVyOjQy", secret=OTHER, now=now)

    assert _fast(token) is None
    with pytest.raises(InvalidToken, match="invalid token"):
        verify_member_token(token, hmac_secrets=SECRETS, public_key=None, now=now)


def test_an_expired_token_is_refused_on_the_fast_path_too() -> None:
    issued = datetime.now(UTC) - timedelta(hours=2)
    token = issue_member_token(subject="TWVtYmVyOjQy", secret=SECRETS[0], now=issued)

    assert _fast(token) is not None
    with pytest.raises(InvalidToken, match="token expired"):
        verify_member_token(token, hmac_secrets=SECRETS, public_key=None, now=datetime.now(UTC))


def test_a_secret_pyjwt_refuses_as_an_hmac_key_is_not_used() -> None:
    pem = (
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"
    )
    head = _b64(b'{"alg":"HS256","typ":"JWT"}')
    body = _b64(json.dumps({"sub": "TWVtYmVyOjQy", "exp": NOW + 60}).encode())
    signature = _b64(hmac.digest(pem.encode(), f"{head}.{body}".encode(), hashlib.sha256))
    token = f"{head}.{body}.{signature}"

    assert hs256.claims(token, token_header(token), [pem]) is None
    with pytest.raises(InvalidToken):
        pyjwt_claims(token, "HS256", [pem])
