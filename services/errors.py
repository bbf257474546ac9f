"""Domain errors: business outcomes with a stable code, mapped to `userErrors` by resolvers."""

from __future__ import annotations

import enum
from collections.abc import Sequence


class ErrorCode(enum.StrEnum):
    INVALID = "INVALID"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    INSUFFICIENT_POINTS = "INSUFFICIENT_POINTS"
    OUT_OF_STOCK = "OUT_OF_STOCK"
    NOT_ELIGIBLE = "NOT_ELIGIBLE"
    LIMIT_REACHED = "LIMIT_REACHED"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    FORBIDDEN = "FORBIDDEN"
    MEMBER_SUSPENDED = "MEMBER_SUSPENDED"
    URL_NOT_ALLOWED = "URL_NOT_ALLOWED"
    IN_USE = "IN_USE"


class DomainError(Exception):
    """A business rule refused the operation; the unit of work is rolled back, nothing written."""

    code: ErrorCode = ErrorCode.INVALID

    def __init__(self, message: str, *, field: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = list(field) if field is not None else None


class Invalid(DomainError):
    code = ErrorCode.INVALID


class NotFound(DomainError):
    code = ErrorCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = ErrorCode.ALREADY_EXISTS


class InsufficientPoints(DomainError):
    code = ErrorCode.INSUFFICIENT_POINTS


class OutOfStock(DomainError):
    code = ErrorCode.OUT_OF_STOCK


class LimitReached(DomainError):
    code = ErrorCode.LIMIT_REACHED


class NotEligible(DomainError):
    code = ErrorCode.NOT_ELIGIBLE


class IdempotencyConflict(DomainError):
    code = ErrorCode.IDEMPOTENCY_CONFLICT


class MemberSuspended(DomainError):
    code = ErrorCode.MEMBER_SUSPENDED


class UrlNotAllowed(DomainError):
    code = ErrorCode.URL_NOT_ALLOWED


class InUse(DomainError):
    code = ErrorCode.IN_USE
