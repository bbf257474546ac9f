"""A transaction straight on asyncpg, and the member row as the direct paths lock and read it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol, TypeVar

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only, greenlet_spawn

from models import EntryKind, EntryStatus, MemberStatus
from models.engine import DroppedConnection
from services.errors import DomainError
from services.events import Notifier


class Written(Protocol):
    @property
    def member(self) -> LockedMember: ...


W = TypeVar("W", bound=Written)
T = TypeVar("T")


@dataclass(slots=True)
class LockedMember:
    """The member row as a direct path reads it under its lock (a `MemberRecord` and
    `Balances`, updated in place as the write changes it)."""

    id: int
    external_id: str | None
    email: str
    display_name: str
    birthday: date | None
    joined_at: datetime
    referral_code: str
    referred_by_id: int | None
    referral_rewarded: bool
    tier_id: int
    available: int
    pending: int
    lifetime_earned: int
    redeemed: int
    expired: int
    qualifying_points: int
    earned_points: int
    month_key: int
    month_points: int
    week_key: int
    week_points: int
    next_settlement_at: datetime | None
    tier_floor_id: int | None
    status: MemberStatus
    attributes: dict[str, Any]
    leaderboard_opt_out: bool
    erased_at: datetime | None
    last_purchase_at: datetime | None

    @classmethod
    def from_record(cls, row: Any) -> LockedMember:
        """The member from a row that starts with MEMBER_COLUMNS, read by position (0.8 µs;
        looking its 28 columns up by name took 3.9)."""
        member = cls(*row[:_FIELDS])
        member.status = _MEMBER_STATUSES[member.status]
        if isinstance(member.attributes, str):  # asyncpg hands json over as text
            member.attributes = orjson.loads(member.attributes)
        return member

    @property
    def earns_normally(self) -> bool:
        """Active and not erased: what a suspended or erased member does is the general
        path's to decide."""
        return self.status is MemberStatus.ACTIVE and self.erased_at is None

    def settlement_due(self, now: datetime) -> bool:
        """Pending points to activate or lots to expire: the general path settles them."""
        return self.next_settlement_at is not None and self.next_settlement_at <= now


@dataclass(frozen=True, slots=True)
class WrittenEntry:
    """An entry as a direct path wrote it, or as a member read found it (an `EntryRecord`)."""

    id: int
    member_id: int
    kind: EntryKind
    status: EntryStatus
    points: int
    description: str
    reference: str | None
    created_at: datetime
    available_at: datetime | None
    expires_at: datetime | None
    breakdown: list[dict[str, Any]]


# The columns of `LockedMember`, in its fields' order, for a statement selecting
# `FROM members AS m`: first, as `LockedMember.from_record` reads them.
MEMBER_COLUMNS = ", ".join(f"m.{name}" for name in LockedMember.__slots__)
_FIELDS = len(LockedMember.__slots__)
_MEMBER_STATUSES = {status.value: status for status in MemberStatus}


class DirectWriter:
    """Runs a direct path's statements in one transaction on a pooled connection."""

    def __init__(self, engine: AsyncEngine, notify: Notifier) -> None:
        self._engine = engine
        self._notify = notify  # the bus, told after commit (as the ORM's after_commit hook does)

    @classmethod
    def on(cls, engine: AsyncEngine, notify: Notifier) -> DirectWriter | None:
        """The direct paths for `engine`, or None where there are none (SQLite)."""
        return cls(engine, notify) if engine.dialect.name == "postgresql" else None

    async def read_value(self, query: str, *args: object) -> Any:
        """The first column of the first row of one read, outside any transaction."""

        async def read(driver: Any) -> Any:
            return await driver.fetchval(query, *args)

        return await self._on_live_connection(read)

    async def read_rows(self, query: str, *args: object) -> list[Any]:
        """The rows of one read, outside any transaction."""

        async def read(driver: Any) -> list[Any]:
            rows: list[Any] = await driver.fetch(query, *args)
            return rows

        return await self._on_live_connection(read)

    async def transaction(self, work: Callable[[Any], Awaitable[W | None]]) -> W | None:
        """Run `work(asyncpg connection)` in a transaction: committed when it returns a result
        (and its member announced), rolled back when it returns None or raises."""

        async def run(driver: Any) -> W | None:
            transaction = driver.transaction()
            await transaction.start()
            try:
                written = await work(driver)
            except BaseException as error:
                if not breaks_connection(error):  # else the connection is discarded
                    await transaction.rollback()
                raise
            if written is None:
                await transaction.rollback()
            else:
                await transaction.commit()
            return written

        written = await self._on_live_connection(run)
        if written is not None:
            self._notify(frozenset((written.member.id,)))
        return written

    async def autocommit(self, work: Callable[[Any], Awaitable[W | None]]) -> W | None:
        """Run `work(asyncpg connection)` outside any transaction, each statement committing
        on its own (so `work` writes in one statement): the member of a result is announced."""
        written: W | None = await self._on_live_connection(work)
        if written is not None:
            self._notify(frozenset((written.member.id,)))
        return written

    async def _on_live_connection(self, use: Callable[[Any], Awaitable[T]]) -> T:
        """`use(connection)`, and once more on a new connection if the server dropped the
        first one under it (a failover, a terminated backend): a pooled connection can be dead
        without asyncpg knowing yet, and no request should fail for that. Safe because every
        unit of work here is a read or claims its idempotency key first: one whose commit was
        lost with the connection finds its key claimed the second time and is left to the
        general path, which answers the recorded result."""
        try:
            return await greenlet_spawn(self._on_pooled_connection, use)
        except Exception as error:
            if not isinstance(error, DroppedConnection):
                raise
        return await greenlet_spawn(self._on_pooled_connection, use)

    def _on_pooled_connection(self, use: Callable[[Any], Awaitable[T]]) -> T:
        """(In one greenlet, `greenlet_spawn`'s.) `use` on the pool's asyncpg connection itself,
        not an AsyncConnection around it (SQLAlchemy never starts a transaction on it), then
        the connection given back, or discarded if it may be unusable: SQLAlchemy never sees
        asyncpg's errors here, so it would not know to. Raises DroppedConnection if the server
        dropped the connection. The checkout, `use` and the check-in share one greenlet: a
        `greenlet_spawn` costs ~10 µs, and a checkout and a check-in each in its own made a
        read of one row 11-15 µs dearer (68 against 57 µs)."""
        pooled = self._engine.sync_engine.raw_connection()
        driver: Any = pooled.driver_connection
        broken = dropped = False
        try:
            return await_only(use(driver))
        except BaseException as error:
            broken = breaks_connection(error)
            # asyncpg closes the connection when it learns the server dropped it, whichever
            # way it learns it (see DroppedConnection).
            dropped = isinstance(error, Exception) and broken and driver.is_closed()
            if dropped:
                raise DroppedConnection(str(error)) from error
            raise
        finally:
            if dropped:
                # The server dropped this one, so the pool's other connections as old are
                # likely dead too (a failover ends them all): each is replaced when next
                # checked out, as SQLAlchemy does on a disconnect it sees itself.
                self._engine.pool._invalidate(pooled, None)
            # Lost, broken, or still inside a transaction (a cancelled rollback).
            elif broken or driver.is_closed() or driver.is_in_transaction():
                pooled.invalidate()
            pooled.close()


def breaks_connection(error: BaseException) -> bool:
    """Whether the connection may be unusable after `error`: anything but a refusal (ours, or
    one the server reported without dropping the connection) or a cancellation (whose rollback
    `_give_back` checks)."""
    if isinstance(error, asyncpg.PostgresError):
        # SQLSTATE classes 08 (connection exception) and 57 (operator intervention, e.g. the
        # backend was terminated) end the connection; other server errors leave it sound.
        return str(getattr(error, "sqlstate", "") or "")[:2] in ("08", "57")
    return not isinstance(error, DomainError | asyncio.CancelledError)
