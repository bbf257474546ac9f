"""A whole board computed by the database once and shared by a process's requests for a few
seconds: what `Leaderboards` answers from while Redis is away.

Ranking in SQL aggregates the period's ledger (hundreds of milliseconds on a large program);
doing that per request during a Redis outage would take the database down with it. Instead each
board is computed at most once per `seconds` per process (one load at a time, shared by every
waiting request), and answered from memory: top N by slicing, a rank by bisection.

Only listed members are on a snapshot's board; opted-out members are kept beside it for their
own standing, erased ones not at all (see `sql.listed`). The facade's writer tells the cache
when a member's listing changed (`RankingCache.relist`), so that this process stops showing
an erased or opted-out member at once rather than at the next load.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.leaderboards.periods import Board, Period, Standing, period_label
from services.leaderboards.sql import ranked_members


@dataclass(frozen=True, slots=True)
class Ranking:
    """Every ranked member of one board, by points descending, then member id ascending, and
    the opted-out members' own (display name, points), ranked against the board."""

    period: Period
    members: list[tuple[int, str, int]]  # (member id, display name, points)
    unlisted: dict[int, tuple[str, int]] = field(repr=False)
    negated: list[int] = field(repr=False)  # -points, ascending: for bisection
    positions: dict[int, int] = field(repr=False)
    loaded_at: float  # time.monotonic()

    @classmethod
    def of(cls, period: Period, rows: Sequence[tuple[int, str, int, bool]]) -> Ranking:
        """From `sql.ranked_members`: (member id, display name, points, listed)."""
        members = sorted(
            ((member, name, points) for member, name, points, listed in rows if listed),
            key=lambda row: (-row[2], row[0]),
        )
        return cls(
            period=period,
            members=members,
            unlisted={member: (name, points) for member, name, points, on in rows if not on},
            negated=[-points for _, _, points in members],
            positions={member_id: index for index, (member_id, _, _) in enumerate(members)},
            loaded_at=time.monotonic(),
        )

    def listing(self, member_id: int) -> bool | None:
        """True when the member is on this board, False when kept aside (opted out), None
        when it is not here at all (no points, erased, or unknown)."""
        if member_id in self.positions:
            return True
        return False if member_id in self.unlisted else None

    def rank_of(self, points: int) -> int:
        """1 + the number of members with strictly more points."""
        return bisect.bisect_left(self.negated, -points) + 1

    def board(self, *, first: int, member_id: int | None) -> Board:
        if first < 0:
            raise ValueError("first must not be negative")
        entries = [
            Standing(member, name, points, self.rank_of(points))
            for member, name, points in self.members[:first]
        ]
        me = None
        if member_id is not None:
            position = self.positions.get(member_id)
            if position is not None:
                _, name, points = self.members[position]
                me = Standing(member_id, name, points, self.rank_of(points))
            elif member_id in self.unlisted:
                name, points = self.unlisted[member_id]
                me = Standing(member_id, name, points, self.rank_of(points))
        return Board(self.period, entries, me, len(self.members))


class RankingCache:
    """Boards from the database, each loaded at most once per `seconds` in this process. An
    expired board is still served for up to `stale_seconds` while one request reloads it."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        seconds: float = 2.0,
        stale_seconds: float = 10.0,
    ) -> None:
        self.sessions = sessions
        self.seconds = seconds
        self.stale_seconds = stale_seconds
        self._rankings: dict[str, Ranking] = {}
        self._loading: dict[str, asyncio.Task[Ranking]] = {}

    async def board(
        self, period: Period, now: datetime, *, first: int, member_id: int | None
    ) -> Board:
        label = period_label(period, now)
        ranking = self._rankings.get(label)
        age = time.monotonic() - ranking.loaded_at if ranking is not None else None
        if ranking is None or age is None or age >= self.seconds:
            task = self._loading.get(label)
            if task is None:
                task = asyncio.create_task(self._load(label, period, now))
                self._loading[label] = task
                task.add_done_callback(lambda done: self._loaded(label, done))
            if ranking is None or age is None or age >= self.stale_seconds:
                ranking = await asyncio.shield(task)
        return ranking.board(first=first, member_id=member_id)

    async def _load(self, label: str, period: Period, now: datetime) -> Ranking:
        async with self.sessions() as session:
            ranking = Ranking.of(period, await ranked_members(session, period, now))
        horizon = time.monotonic() - self.stale_seconds
        for old in [k for k, r in self._rankings.items() if r.loaded_at < horizon]:
            del self._rankings[old]  # past periods, boards nobody asks for any more
        self._rankings[label] = ranking
        return ranking

    def _loaded(self, label: str, task: asyncio.Task[Ranking]) -> None:
        if self._loading.get(label) is task:
            del self._loading[label]
        if not task.cancelled():
            task.exception()  # seen by the waiting requests; retrieved here for the others

    def relist(self, listings: Iterable[tuple[int, bool | None]]) -> None:
        """Members whose listing is now known, as (member id, listed: True on the boards,
        False opted out, None erased): any snapshot that shows one otherwise is dropped (the
        next read loads it again). A member's points moving are not a reason: snapshots are
        seconds old by design."""
        changed = list(listings)
        stale = [
            label
            for label, ranking in self._rankings.items()
            if any(ranking.listing(member) not in (None, listed) for member, listed in changed)
        ]
        for label in stale:
            del self._rankings[label]

    def clear(self) -> None:
        self._rankings.clear()
