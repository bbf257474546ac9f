"""`access.token_header` reads a token's header alone, as strictly as pyjwt reads it."""

from __future__ import annotations

import base64

import jwt
import pytest

from services.access import InvalidToken, token_header


def _segment(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "headers",
    [{}, {"kid": "key-1"}, {"kid": "k/é", "typ": "at+jwt"}, {"x5t": "a" * 40}],
)
def test_the_header_is_what_pyjwt_reads(headers: dict[str, str]) -> None:
    token = jwt.encode({"sub": "x"}, "a-secret-long-enough-for-hs256-tokens!", headers=headers)

    assert token_header(token) == jwt.get_unverified_header(token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "no-dots-at-all",
        _segment(b"[1, 2]") + ".e30.sig",  # JSON, but not an object
        _segment(b'{"alg": "HS256"') + ".e30.sig",  # not JSON
        "!!!!" + _segment(b'{"alg":"HS256"}') + ".e30.sig",  # stray characters
        _segment(b'{"alg":"HS256"}') + "=.e30.sig",  # wrong padding
        "ééé.e30.sig",  # not ASCII
        "e30=x.e30.sig",
    ],
)
def test_a_malformed_header_is_refused(token: str) -> None:
    with pytest.raises(InvalidToken, match="malformed token"):
        token_header(token)
