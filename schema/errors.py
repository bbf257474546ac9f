"""`UserError`: business outcomes in mutation payloads, with the contract's codes."""

from __future__ import annotations

import enum

import strawberry

from services.errors import DomainError


@strawberry.enum
class UserErrorCode(enum.Enum):
    INVALID = "INVALID"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    INSUFFICIENT_POINTS = "INSUFFICIENT_POINTS"
    OUT_OF_STOCK = "OUT_OF_STOCK"
    NOT_ELIGIBLE = "NOT_ELIGIBLE"
    LIMIT_REACHED = "LIMIT_REACHED"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    FORBIDDEN = "FORBIDDEN"


@strawberry.type
class UserError:
    field: list[str] | None
    code: UserErrorCode
    message: str

    @classmethod
    def from_domain(cls, error: DomainError) -> UserError:
        return cls(field=error.field, code=UserErrorCode(error.code.value), message=error.message)
