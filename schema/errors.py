"""`UserError`: business outcomes in mutation payloads, with the contract's codes."""

from __future__ import annotations

import strawberry

from services.errors import DomainError, ErrorCode

# The domain's own codes, exposed under the contract's name.
strawberry.enum(ErrorCode, name="UserErrorCode")


@strawberry.type
class UserError:
    field: list[str] | None
    code: ErrorCode
    message: str

    @classmethod
    def from_domain(cls, error: DomainError) -> UserError:
        return cls(field=error.field, code=error.code, message=error.message)
