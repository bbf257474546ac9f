"""GraphQL-level errors: each carries the `extensions.code` clients switch on.

Business outcomes are not exceptions at this level; they travel as `userErrors` in payloads.
These are for requests that cannot be served at all (auth, malformed input, limits).
"""

from __future__ import annotations

from typing import Any, ClassVar


class CodedGraphQLError(Exception):
    """Base of every error whose message is safe to show and whose code clients rely on."""

    code: ClassVar[str] = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions: dict[str, Any] = {"code": self.code, **extensions}


class Unauthenticated(CodedGraphQLError):
    code = "UNAUTHENTICATED"


class Forbidden(CodedGraphQLError):
    code = "FORBIDDEN"


class BadUserInput(CodedGraphQLError):
    code = "BAD_USER_INPUT"


class QueryTooComplex(CodedGraphQLError):
    code = "QUERY_TOO_COMPLEX"


class RateLimited(CodedGraphQLError):
    code = "RATE_LIMITED"
