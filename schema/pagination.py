"""Arguments every connection takes: `first` (1..100) and an `after` cursor."""

from __future__ import annotations

from schema.exceptions import BadUserInput
from schema.ids import decode_cursor
from services.errors import DomainError

MAX_PAGE = 100


def page_size(first: int | None, default: int = 20) -> int:
    """`first`, or the field's default when null; BAD_USER_INPUT outside 1..MAX_PAGE."""
    size = default if first is None else first
    if not 1 <= size <= MAX_PAGE:
        raise BadUserInput(f"`first` must be between 1 and {MAX_PAGE}")
    return size


def after_id(after: str | None) -> int | None:
    """The key an `after` cursor points at (None without one); BAD_USER_INPUT if malformed."""
    try:
        return decode_cursor(after, ["after"]) if after is not None else None
    except DomainError as exc:
        raise BadUserInput("`after` is not a cursor of this connection") from exc
