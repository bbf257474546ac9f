"""Leaderboards kept in Redis sorted sets, one a board, fed from the database.

Keys (all under the store's prefix, `laurel:` by default):

* `lb:board:<label>`: the board, a sorted set of members scored by points (listed members
  with points > 0 only). Labels: `ALL_TIME`, `MONTHLY:2026-01`, `WEEKLY:2026-W02`.
* `lb:unlisted:<label>`: the same for the members that opted out of the leaderboards: on no
  board and in no count, kept only so that their own rank is read in the same round trip
  (the number of the board's members above their score). Erased members are in neither.
* `lb:built:<label>`: set once the board was built from the database; a board without it is
  not trusted (a reader gets None and the board gets rebuilt).
* `lb:lock:<label>` (SET NX EX, a random token) while a process rebuilds the board, and
  `lb:touched:<label>`: the members written while it does, applied again after the swap.
* `lb:tmp:<label>`, `lb:tmpunlisted:<label>`: the board being rebuilt, RENAMEd over the
  live one.
* `lb:names`, `lb:versions`: hashes, per member, of display names and versions (an erased
  member's name is deleted).

Members are stored as `ID_SPAN - member_id`, zero-padded to a fixed width: Redis orders equal
scores by member string, so ZREVRANGE lists a tie by member id ascending, as the database does.
Ranks are competition ranks ("1224"): 1 + the number of members with a strictly higher score.

Writes (`apply`) are absolute and idempotent: a member's points per current period are read
from the database and written with one Lua script per batch, each member only when its version
(the id of its newest ledger entry) is at least the one stored, so a slow writer holding older
figures never overwrites newer ones. An erased member's version is raised by `ERASED_VERSION`,
so figures read before its erasure can never list it (or its name) again. Opting out or back
in is written by the same `apply` (after the commit that changed it, as any other change).
Period boards expire 35 days after their period ends (EXPIRE relative to the application's
clock).

Reads (`board`) are one EVALSHA: the top N with names, my score, the count above me and the
total, returned as one JSON string (decoding it with orjson costs a fraction of redis-py's
element-by-element reply parsing).

Rebuilds (`rebuild`, `ensure_built`) take the board's lock, load the ranking from the database
into `lb:tmp:<label>`, then one script checks the lock is still theirs, RENAMEs the temporary
board over the live one (readers see the old board or the new one, never a half-built one),
sets the built marker and the expiry, releases the lock and returns `touched`: the members an
`apply` wrote meanwhile, whose newer figures the swap may have replaced with the snapshot's;
they are applied again. All keys of a board are named in KEYS; on Redis Cluster, put the
prefix in a hash tag (`{laurel}:`) so that they share a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.leaderboards.lua import APPLY, READ, RELEASE, SWAP
from services.leaderboards.periods import (
    Board,
    Period,
    Standing,
    period_end,
    period_label,
)
from services.leaderboards.sql import MemberPoints, period_points, ranked_members

ID_SPAN = 10**15  # member ids below this; stored members are 15 digits wide
# Added to an erased member's version: above any ledger entry id (and exact in Lua's doubles).
ERASED_VERSION = 2**52
PERIOD_KEY_GRACE = timedelta(days=35)
APPLY_BATCH = 500
WRITE_CHUNK = 5_000
TMP_TTL_SECONDS = 3_600  # a crashed rebuild's leftovers go away on their own

T = TypeVar("T")


def encode_member(member_id: int) -> str:
    if not 0 < member_id < ID_SPAN:
        raise ValueError(f"member id {member_id} out of range")
    return f"{ID_SPAN - member_id:015d}"


def decode_member(value: bytes | str) -> int:
    return ID_SPAN - int(value)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class LeaderboardBusy(Exception):
    """Another process holds the board's rebuild lock (and did not finish in time)."""


class RebuildLockLost(Exception):
    """The rebuild lock expired before the swap: the rebuilt board was thrown away."""


@dataclass(frozen=True, slots=True)
class BoardKeys:
    board: str
    built: str
    lock: str
    touched: str
    tmp: str
    unlisted: str
    tmp_unlisted: str


class LeaderboardStore:
    """Boards in Redis: read in one round trip, written in one script call per batch."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "laurel:",
        lock_seconds: int = 120,
        poll_seconds: float = 0.05,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.names_key = f"{prefix}lb:names"
        self.versions_key = f"{prefix}lb:versions"
        self.lock_seconds = lock_seconds
        self.poll_seconds = poll_seconds
        self._apply = redis.register_script(APPLY)
        self._read = redis.register_script(READ)
        self._swap = redis.register_script(SWAP)
        self._release = redis.register_script(RELEASE)
        self._building: dict[str, asyncio.Task[bool]] = {}
        self._keys: dict[str, BoardKeys] = {}

    # ------------------------------------------------------------ keys

    def keys(self, period: Period, now: datetime) -> BoardKeys:
        label = period_label(period, now)
        cached = self._keys.get(label)
        if cached is not None:
            return cached
        if len(self._keys) > 64:
            self._keys.clear()
        p = self.prefix
        self._keys[label] = keys = BoardKeys(
            board=f"{p}lb:board:{label}",
            built=f"{p}lb:built:{label}",
            lock=f"{p}lb:lock:{label}",
            touched=f"{p}lb:touched:{label}",
            tmp=f"{p}lb:tmp:{label}",
            unlisted=f"{p}lb:unlisted:{label}",
            tmp_unlisted=f"{p}lb:tmpunlisted:{label}",
        )
        return keys

    @staticmethod
    def lifetime(period: Period, now: datetime) -> int:
        """Seconds from `now` until a period board's keys expire (its end + 35 days), 0 for
        ALL_TIME. Relative to the application's clock, not Redis's: the two agree in
        production, and a test's clock may be anywhere."""
        end = period_end(period, now)
        return 0 if end is None else max(int((end + PERIOD_KEY_GRACE - now).total_seconds()), 1)

    # ------------------------------------------------------------ reads

    async def board(
        self, period: Period, now: datetime, *, first: int, member_id: int | None
    ) -> Board | None:
        """The board from Redis in one round trip, or None when it is not built."""
        if first < 0:
            raise ValueError("first must not be negative")
        keys = self.keys(period, now)
        me_key = encode_member(member_id) if member_id is not None else ""
        raw = await self._read(
            keys=[keys.board, keys.built, self.names_key, keys.unlisted], args=[first, me_key]
        )
        if raw is None:
            return None
        total, top, names, my_score, above, my_name = orjson.loads(raw)
        entries: list[Standing] = []
        rank = 0
        previous: float | None = None
        for index in range(0, len(top), 2):
            score = float(top[index + 1])
            if score != previous:
                rank, previous = index // 2 + 1, score
            entries.append(
                Standing(
                    member_id=decode_member(top[index]),
                    display_name=names[index // 2] or "",
                    points=int(score),
                    rank=rank,
                )
            )
        me = None
        if member_id is not None and my_score:
            me = Standing(
                member_id=member_id,
                display_name=my_name or "",
                points=int(float(my_score)),
                rank=int(above) + 1,
            )
        return Board(period=period, entries=entries, me=me, total_ranked=int(total))

    async def is_built(self, period: Period, now: datetime) -> bool:
        return bool(await self.redis.exists(self.keys(period, now).built))

    # ------------------------------------------------------------ writes

    async def apply(self, session: AsyncSession, member_ids: Collection[int], now: datetime) -> int:
        """Recompute these members' points in the current boards from the database and write
        them (absolute scores; members at 0 or less, opted out or erased leave the board): one
        statement and one script call per batch of 500. Returns how many members were written
        (one whose stored version is newer is skipped); members that do not exist are ignored."""
        written = 0
        for batch in _chunks(sorted(set(member_ids)), APPLY_BATCH):
            written += await self.write(await period_points(session, batch, now), now)
        return written

    async def write(self, figures: Mapping[int, MemberPoints], now: datetime) -> int:
        """Write figures read from the database at `now` (one script call): each member only
        when its version is at least the stored one. Returns how many were written."""
        if not figures:
            return 0
        periods = list(Period)
        keys = [self.versions_key, self.names_key]
        for period in periods:
            board = self.keys(period, now)
            keys += [board.board, board.lock, board.touched, board.unlisted]
        args: list[str | int] = [len(periods), *(self.lifetime(p, now) for p in periods)]
        for member_id, member in figures.items():
            if member.erased:
                args += [encode_member(member_id), member.version + ERASED_VERSION, "", "E"]
            else:
                state = "L" if member.listed else "U"
                args += [encode_member(member_id), member.version, member.display_name, state]
            args += [member.points[period] for period in periods]
        return int(await self._apply(keys=keys, args=args))

    async def invalidate(self, now: datetime, periods: Collection[Period] = tuple(Period)) -> None:
        """Forget that these boards are built: the next read rebuilds them."""
        await self.redis.delete(*(self.keys(period, now).built for period in periods))

    async def rebuild(
        self,
        sessions: async_sessionmaker[AsyncSession],
        period: Period,
        now: datetime,
        *,
        wait: float | None = None,
    ) -> int:
        """Rebuild the board from the database and swap it in atomically; returns how many
        members are ranked. Waits up to `wait` seconds (default: the lock's lifetime) for
        another process's rebuild of the same board, then raises LeaderboardBusy."""
        keys = self.keys(period, now)
        token = secrets.token_hex(16)
        deadline = time.monotonic() + (self.lock_seconds if wait is None else wait)
        while not await self.redis.set(keys.lock, token, nx=True, ex=self.lock_seconds):
            if time.monotonic() >= deadline:
                raise LeaderboardBusy(f"another process is rebuilding {keys.board}")
            await asyncio.sleep(self.poll_seconds)
        try:
            return await self._rebuild_locked(sessions, period, now, keys, token)
        finally:
            with contextlib.suppress(Exception):
                await self._release(keys=[keys.lock], args=[token])

    async def _rebuild_locked(
        self,
        sessions: async_sessionmaker[AsyncSession],
        period: Period,
        now: datetime,
        keys: BoardKeys,
        token: str,
    ) -> int:
        # From here on, every apply to this board records its members in `touched`: whatever
        # they wrote to the live board before the swap is written again after it.
        await self.redis.delete(keys.tmp, keys.tmp_unlisted, keys.touched)
        rows = await self._snapshot(sessions, period, now)
        ranked = 0
        for chunk in _chunks(rows, WRITE_CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            listed = {encode_member(m): points for m, _, points, on in chunk if on}
            unlisted = {encode_member(m): points for m, _, points, on in chunk if not on}
            for key, members in ((keys.tmp, listed), (keys.tmp_unlisted, unlisted)):
                if members:
                    pipe.zadd(key, members)
                    pipe.expire(key, TMP_TTL_SECONDS)
            pipe.hset(self.names_key, mapping={encode_member(m): name for m, name, _, _ in chunk})
            await pipe.execute()
            ranked += len(listed)
        touched: list[Any] | None = await self._swap(
            keys=[
                keys.tmp,
                keys.board,
                keys.built,
                keys.lock,
                keys.touched,
                keys.tmp_unlisted,
                keys.unlisted,
            ],
            args=[token, self.lifetime(period, now)],
        )
        if touched is None:
            raise RebuildLockLost(f"the rebuild lock of {keys.board} expired before the swap")
        if touched:  # the lock is released: these writes go to the live board only
            async with sessions() as session:
                await self.apply(session, [decode_member(m) for m in touched], now)
        return ranked

    async def _snapshot(
        self, sessions: async_sessionmaker[AsyncSession], period: Period, now: datetime
    ) -> Sequence[tuple[int, str, int, bool]]:
        async with sessions() as session:
            return await ranked_members(session, period, now)

    async def ensure_built(
        self,
        sessions: async_sessionmaker[AsyncSession],
        period: Period,
        now: datetime,
        *,
        wait: float = 2.0,
    ) -> bool:
        """True once the board is built, rebuilding it if missing. One process rebuilds (SET NX
        EX lock), others poll for the built marker; concurrent callers in this process share
        one attempt. Gives up after `wait` seconds (False; the rebuild goes on in the
        background): the caller answers from the database meanwhile."""
        keys = self.keys(period, now)
        if await self.redis.exists(keys.built):
            return True
        task = self._building.get(keys.board)
        if task is None:
            task = asyncio.create_task(self._build_missing(sessions, period, now, keys))
            self._building[keys.board] = task
            task.add_done_callback(lambda done: self._forget(keys.board, done))
        try:
            return await asyncio.wait_for(asyncio.shield(task), wait)
        except TimeoutError:
            return False

    def _forget(self, board: str, task: asyncio.Task[bool]) -> None:
        if self._building.get(board) is task:
            del self._building[board]
        if not task.cancelled():
            task.exception()  # retrieved: a failure was (or will be) seen by the waiters

    async def _build_missing(
        self,
        sessions: async_sessionmaker[AsyncSession],
        period: Period,
        now: datetime,
        keys: BoardKeys,
    ) -> bool:
        token = secrets.token_hex(16)
        deadline = time.monotonic() + self.lock_seconds
        while time.monotonic() < deadline:
            if await self.redis.set(keys.lock, token, nx=True, ex=self.lock_seconds):
                try:
                    if not await self.redis.exists(keys.built):
                        await self._rebuild_locked(sessions, period, now, keys, token)
                    return True
                finally:
                    with contextlib.suppress(Exception):
                        await self._release(keys=[keys.lock], args=[token])
            await asyncio.sleep(self.poll_seconds)
            if await self.redis.exists(keys.built):
                return True
        return False

    async def drop(self) -> int:
        """Delete every key under the prefix (tests, and a clean slate). Returns how many."""
        deleted = 0
        async for key in self.redis.scan_iter(match=f"{self.prefix}lb:*", count=1000):
            deleted += int(await self.redis.delete(key))
        return deleted
