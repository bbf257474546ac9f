"""Finding members (admin): the one matching rule of `members(search:)`, the listing's filters
and its keyset-ordered pages, on PostgreSQL and on SQLite.

The rule: a member matches a search when its email, display name, externalId or referral code
contains the searched text (a prefix is a substring too), compared after the database's
`lower()` on both sides. On PostgreSQL the four fields are read from `member_search`, a table
kept by a trigger (migration 0011) as `search_text()` below builds them, whose pg_trgm GIN
index serves `LIKE '%text%'` (prefix and substring alike, which a B-tree cannot; terms of 1-2
characters have no trigram, and the planner then walks the members in order or scans); on
SQLite the same text is built from the members' own columns (no index: the embedded database
is small). SQLite's `lower()` folds ASCII letters only, so there "É" finds "É" but not "é";
PostgreSQL folds by the database's locale.

Pages are keyset pages: a position is (sort value, id). Join dates never change, so paging by
JOINED_AT never skips or repeats a member, whoever enrolls meanwhile; a member whose balance
changes while a client pages by points may move across the position (seen twice or not at
all), as in any listing ordered by a changing value.

Erased members are listed like the others: their rows hold anonymised values only (an old
email or externalId finds nothing). Balances are the members' cached ones, as of their last
write or settlement (the sweep activates pending points every minute).
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Row,
    Select,
    String,
    column,
    func,
    literal,
    select,
    table,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

import models
from models.member import MemberStatus
from services.errors import Invalid

# The longest field searched is an email (320 characters): a longer text can match nothing.
MAX_SEARCH_LENGTH = 320
# Joins the four fields in the searched text; never part of a search (control characters are
# dropped from it), so no match spans two fields.
FIELD_SEPARATOR = "\x1f"
# LIKE's escape character: PostgreSQL's default (so its statements name none: SQLAlchemy would
# render it doubled), named on SQLite, which has no default.
LIKE_ESCAPE = "\\"

_members = models.Member.__table__
_m = _members.c
# PostgreSQL only, kept by a trigger (migration 0011): not a model, since SQLite has none.
member_search = table("member_search", column("member_id", BigInteger), column("text", String))


def search_text() -> ColumnElement[str]:
    """The text a search is matched against, from the members' columns: lower-cased email,
    display name, externalId ('' when none) and referral code, joined by FIELD_SEPARATOR.
    The `member_search` trigger builds exactly this (a test compares the two)."""
    parts: list[ColumnElement[str]] = [
        func.lower(_m.email),
        func.lower(_m.display_name),
        func.lower(func.coalesce(_m.external_id, "")),
        func.lower(_m.referral_code),
    ]
    text = parts[0]
    for part in parts[1:]:
        text = text + literal(FIELD_SEPARATOR) + part
    return text


def clean_search(value: str | None) -> str | None:
    """The text to search for: control characters (the field separator among them) dropped,
    surrounding blanks stripped; None when nothing is left (a blank search is no search).
    INVALID when longer than any searched field."""
    if value is None:
        return None
    kept = "".join(ch for ch in value if unicodedata.category(ch) != "Cc").strip()
    if not kept:
        return None
    if len(kept) > MAX_SEARCH_LENGTH:
        raise Invalid(f"search must be at most {MAX_SEARCH_LENGTH} characters", field=["search"])
    return kept


def like_pattern(term: str, *, inline: bool) -> ColumnElement[str]:
    """`lower('%' || term || '%')` with LIKE's own characters in `term` escaped: the user's
    `%`, `_` and `\\` match themselves.

    `inline`: the pattern is written into the statement as a literal (quoted by SQLAlchemy
    for the connected server), not sent as a parameter, so PostgreSQL plans each search with
    its own text. With a parameter, a prepared statement switches after five executions to a
    generic plan made without the text whenever that plan looks cheaper than the ones made so
    far: one that reads the trigram index whatever the text, which for 1-2 characters (no
    trigram) reads the whole index (1.7 s a request on 1,000,000 members instead of 0.2 s;
    bench/README.md). The price: each search is prepared anew (one more round trip)."""
    escaped = (
        term.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )
    return func.lower(literal(f"%{escaped}%", literal_execute=inline))


class OrderField(enum.StrEnum):
    JOINED_AT = "JOINED_AT"
    LIFETIME_POINTS = "LIFETIME_POINTS"
    AVAILABLE_POINTS = "AVAILABLE_POINTS"


class Direction(enum.StrEnum):
    ASC = "ASC"
    DESC = "DESC"


_SORT_COLUMNS: dict[OrderField, Any] = {
    OrderField.JOINED_AT: _m.joined_at,
    OrderField.LIFETIME_POINTS: _m.lifetime_earned,
    OrderField.AVAILABLE_POINTS: _m.available,
}


@dataclass(frozen=True, slots=True)
class Ordering:
    """A listing's order; ties are broken by id in the same direction, so every member has one
    place and a keyset position (sort value, id) is stable."""

    field: OrderField = OrderField.JOINED_AT
    direction: Direction = Direction.DESC

    def sort_value(self, row: Any) -> int | datetime:
        """The value of this ordering's column in `row` (a member)."""
        value: int | datetime = getattr(row, _SORT_COLUMNS[self.field].key)
        return value


# Where a page starts: after the member with this sort value and id.
Position = tuple[int | datetime, int]


@dataclass(frozen=True, slots=True)
class MemberFilter:
    """What a listing keeps: every given condition holds. `joined_after` is inclusive and
    `joined_before` exclusive, so consecutive windows neither overlap nor leave a gap."""

    search: str | None = None  # already cleaned (clean_search)
    tier_id: int | None = None
    status: MemberStatus | None = None
    joined_after: datetime | None = None
    joined_before: datetime | None = None

    @property
    def on_members(self) -> bool:
        """Whether a condition reads the members' own columns (not only the search)."""
        return (
            self.tier_id is not None
            or self.status is not None
            or self.joined_after is not None
            or self.joined_before is not None
        )


def _member_conditions(found: MemberFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if found.tier_id is not None:
        conditions.append(_m.tier_id == found.tier_id)
    if found.status is not None:
        conditions.append(_m.status == found.status)
    if found.joined_after is not None:
        conditions.append(_m.joined_at >= found.joined_after)
    if found.joined_before is not None:
        conditions.append(_m.joined_at < found.joined_before)
    return conditions


def _matching(dialect: str, found: MemberFilter) -> Select[Any]:
    """Members meeting `found`, before ordering: selecting every column of `members`."""
    stmt = select(_members).where(*_member_conditions(found))
    if found.search is None:
        return stmt
    if dialect == "postgresql":
        hits = member_search.c
        pattern = like_pattern(found.search, inline=True)
        return stmt.join(member_search, hits.member_id == _m.id).where(hits.text.like(pattern))
    pattern = like_pattern(found.search, inline=False)
    return stmt.where(search_text().like(pattern, escape=LIKE_ESCAPE))


def page_statement(
    dialect: str,
    found: MemberFilter,
    ordering: Ordering,
    *,
    after: Position | None,
    limit: int,
) -> Select[Any]:
    """One statement for a page: up to `limit` members meeting `found`, in `ordering`, after
    the keyset position `after`."""
    sort = _SORT_COLUMNS[ordering.field]
    stmt = _matching(dialect, found)
    descending = ordering.direction is Direction.DESC
    if after is not None:
        value, member_id = after
        here = tuple_(sort, _m.id)
        there = tuple_(literal(value, sort.type), literal(member_id, _m.id.type))
        stmt = stmt.where(here < there if descending else here > there)
    order = (sort.desc(), _m.id.desc()) if descending else (sort.asc(), _m.id.asc())
    return stmt.order_by(*order).limit(limit)


def count_statement(dialect: str, found: MemberFilter) -> Select[Any]:
    """How many members meet `found` (every page together)."""
    if dialect == "postgresql" and found.search is not None and not found.on_members:
        # The search alone: counted on its own table, without reading the members.
        hits = member_search.c
        return select(func.count()).where(hits.text.like(like_pattern(found.search, inline=True)))
    return select(func.count()).select_from(_matching(dialect, found).subquery())


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def find_members(
    session: AsyncSession,
    found: MemberFilter,
    ordering: Ordering,
    *,
    after: Position | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """A page of members (rows of `members`) meeting `found`, in `ordering`."""
    stmt = page_statement(_dialect(session), found, ordering, after=after, limit=limit)
    return (await session.execute(stmt)).all()


async def count_members(session: AsyncSession, found: MemberFilter) -> int:
    return int(await session.scalar(count_statement(_dialect(session), found)) or 0)
