"""GraphQL over HTTP (the graphql-over-http draft): which media type a client gets, and the
status codes that go with `application/graphql-response+json`.

* The `Accept` header picks the response's media type: `application/graphql-response+json`
  or `application/json` (by q-value; a tie goes to the newer one), `*/*` and `application/*`
  accept either (the legacy `application/json` then, as for a client that sends no Accept:
  the contract's behaviour for older clients). A client accepting neither gets 406.
* Under `application/json` every GraphQL response is a 200, as the contract has always said.
* Under `application/graphql-response+json` a *request error* (the operation never ran: the
  response has no `data` entry) gets a 4xx: 400 when the document does not parse or the
  variables do not coerce, 422 when the document fails validation (including Laurel's query
  limits); a response with `data` (even null) is a 200.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Final

GRAPHQL_RESPONSE_JSON: Final = "application/graphql-response+json"
JSON: Final = "application/json"


class MediaType(Enum):
    JSON = JSON
    GRAPHQL_RESPONSE = GRAPHQL_RESPONSE_JSON

    @property
    def content_type(self) -> str:
        return f"{self.value}; charset=utf-8"


# What most clients send, decided without parsing.
_COMMON: Final[dict[str, MediaType]] = {
    "": MediaType.JSON,
    "*/*": MediaType.JSON,
    JSON: MediaType.JSON,
    GRAPHQL_RESPONSE_JSON: MediaType.GRAPHQL_RESPONSE,
    f"{GRAPHQL_RESPONSE_JSON}, {JSON}": MediaType.GRAPHQL_RESPONSE,
    f"{GRAPHQL_RESPONSE_JSON},{JSON}": MediaType.GRAPHQL_RESPONSE,
}


def negotiate(accept: str | None) -> MediaType | None:
    """The media type to answer in, or None when the client accepts neither (406)."""
    if accept is None:
        return MediaType.JSON
    common = _COMMON.get(accept.strip())
    if common is not None:
        return common
    best: tuple[float, int, MediaType] | None = None
    for item in accept.split(","):
        kind, *params = (part.strip() for part in item.split(";"))
        kind = kind.lower()
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        if kind == GRAPHQL_RESPONSE_JSON:
            candidate = (quality, 1, MediaType.GRAPHQL_RESPONSE)
        elif kind in (JSON, "application/*", "*/*"):
            # A wildcard is the legacy type: older clients send `*/*` and expect it.
            candidate = (quality, 0, MediaType.JSON)
        else:
            continue
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return best[2] if best is not None else None


def request_error_status(body: Any) -> int | None:
    """Under graphql-response+json: the 4xx status of a response to a request that never
    ran (no `data`, or `data: null` with only errors that have no path), else None (200)."""
    if not isinstance(body, dict) or body.get("data") is not None:
        return None
    errors = body.get("errors")
    if not isinstance(errors, list) or not errors:
        return None
    if any(isinstance(e, dict) and e.get("path") for e in errors):
        return None  # execution started: a field failed, data was nulled
    for error in errors:
        message = error.get("message", "") if isinstance(error, dict) else ""
        if message.startswith("Syntax Error") or message.startswith("Variable '$"):
            return 400
        code = (error.get("extensions") or {}).get("code") if isinstance(error, dict) else None
        if code not in ("BAD_USER_INPUT", "QUERY_TOO_COMPLEX"):
            return 400  # refused for another reason (authentication, rate): not validation
    return 422
