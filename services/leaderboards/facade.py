"""`Leaderboards`: what the API calls. Redis when configured and reachable, else the database.

* `board` / `rank` read from Redis (one round trip); a board that is not built is rebuilt
  first (`LeaderboardStore.ensure_built`, bounded wait, database answer meanwhile). Any Redis
  failure falls back to the database: it is logged once per outage and never raised, and for
  `retry_seconds` after a failure reads go straight to the database (no timeout per request).
  Those database answers come from `RankingCache`: each board computed at most once per
  `fallback_cache_seconds` per process (served stale up to `fallback_stale_seconds` while it
  reloads), so an outage costs the database one aggregation per board every few seconds, not
  one per request. Without a store, every read is `board_from_database` (exact, immediate).
* `mark_dirty(member_ids)` after a commit that changed these members' earned points, display
  name, leaderboard opt-out or erasure: it only records them; the background task started by
  `start()` applies them in batches about every `flush_seconds` (a member that opted out or
  was erased leaves every board, one that opted back in returns with its exact points). On
  failure they are kept (up to `max_dirty`; beyond that they are dropped and the current
  boards marked for rebuild) and retried with backoff.
* Opted-out members are on no board and in no count, but `rank` / `board(member_id=)` still
  give their own standing (where they would rank); erased members have none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.breaker import REDIS_FAILURES as REDIS_OUTAGE
from services.breaker import SKIPPED, RedisBreaker
from services.clock import Clock
from services.direct.writer import DirectWriter
from services.leaderboards.periods import Board, Period, Standing
from services.leaderboards.snapshot import RankingCache
from services.leaderboards.sql import board_direct, board_from_database, period_points
from services.leaderboards.store import LeaderboardBusy, LeaderboardStore, RebuildLockLost

log = logging.getLogger("laurel.leaderboards")

# What a Redis outage looks like: redis-py's errors (ConnectionError, TimeoutError, ...), the
# socket's own, and a rebuild that could not finish.
REDIS_FAILURES: tuple[type[BaseException], ...] = (
    *REDIS_OUTAGE,
    LeaderboardBusy,
    RebuildLockLost,
)


def connect_redis(url: str, *, timeout: float = 0.5) -> Redis:
    """A client suited to a cache that has a fallback: short timeouts and a single retry, so an
    outage costs one short wait, not redis-py's default ten retries with backoff."""
    return Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


class Leaderboards:
    """The leaderboards of one API process. `store` None: the database answers everything (no
    Redis configured). Call from the event loop; `start()` / `stop()` in the app's lifespan."""

    def __init__(
        self,
        read_sessions: async_sessionmaker[AsyncSession],
        store: LeaderboardStore | None,
        clock: Clock,
        *,
        flush_seconds: float = 0.1,
        batch_size: int = 500,
        max_dirty: int = 100_000,
        build_wait_seconds: float = 2.0,
        retry_seconds: float = 1.0,
        max_backoff_seconds: float = 5.0,
        fallback_cache_seconds: float = 2.0,
        fallback_stale_seconds: float = 10.0,
        direct: DirectWriter | None = None,
    ) -> None:
        self.read_sessions = read_sessions
        # PostgreSQL's board read straight on asyncpg (`board_direct`); elsewhere a session.
        self.direct = direct
        self.store = store
        self.clock = clock
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.max_dirty = max_dirty
        self.build_wait_seconds = build_wait_seconds
        self.max_backoff_seconds = max_backoff_seconds
        # Without a store the database answers every request (exact; fine for small programs).
        # With one, its fallback answers are shared for a few seconds per process, so that a
        # Redis outage does not turn into one full aggregation of the ledger per request.
        self.fallback: RankingCache | None = None
        if store is not None and fallback_cache_seconds > 0:
            self.fallback = RankingCache(
                read_sessions, seconds=fallback_cache_seconds, stale_seconds=fallback_stale_seconds
            )
        self._dirty: set[int] = set()
        self._rebuild_needed = False
        self.breaker = RedisBreaker(
            "leaderboards",
            open_seconds=retry_seconds,
            fallback="answering from the database",
            failures=REDIS_FAILURES,
            log=log,
        )
        self._wake: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # ------------------------------------------------------------ reads

    async def board(self, period: Period, *, first: int, member_id: int | None) -> Board:
        """The top `first` and `member_id`'s standing (None when unranked or not given)."""
        now = self.clock.now()
        store = self.store
        if store is not None:

            async def from_redis() -> Board | None:
                found = await store.board(period, now, first=first, member_id=member_id)
                if found is None and await store.ensure_built(
                    self.read_sessions, period, now, wait=self.build_wait_seconds
                ):
                    found = await store.board(period, now, first=first, member_id=member_id)
                return found

            # A Redis frozen costs one read a timeout, then reads go to the database at once
            # (services.breaker).
            found = await self.breaker.call(from_redis)
            if found is not None and found is not SKIPPED:
                return found
        if self.fallback is not None:
            return await self.fallback.board(period, now, first=first, member_id=member_id)
        if self.direct is not None:
            return await board_direct(self.direct, period, now, first=first, member_id=member_id)
        async with self.read_sessions() as session:
            return await board_from_database(session, period, now, first=first, member_id=member_id)

    async def rank(self, period: Period, member_id: int) -> Standing | None:
        """The member's standing in the period's board, None when unranked."""
        return (await self.board(period, first=0, member_id=member_id)).me

    async def rebuild_all(self) -> dict[Period, int]:
        """Rebuild every current board from the database: members ranked per board. Without a
        store there is nothing to rebuild ({}). Redis failures are raised here (an operator
        command, not a request)."""
        if self.store is None:
            return {}
        now = self.clock.now()
        return {
            period: await self.store.rebuild(self.read_sessions, period, now) for period in Period
        }

    # ------------------------------------------------------------ writes

    def mark_dirty(self, member_ids: Iterable[int]) -> None:
        """Record members whose earned points, name or listing changed in a committed
        transaction. Never blocks, never raises; the background task writes them to Redis."""
        if self.store is None:
            return
        try:
            self._dirty.update(member_ids)
            if len(self._dirty) > self.max_dirty:
                log.warning(
                    "leaderboards: %d members waiting for Redis; dropping them, the boards will "
                    "be rebuilt",
                    len(self._dirty),
                )
                self._dirty.clear()
                self._rebuild_needed = True
            if self._wake is not None:
                self._wake.set()
        except Exception:  # a caller's commit must never fail because of a leaderboard
            log.exception("leaderboards: mark_dirty failed")

    @property
    def pending(self) -> int:
        """How many members wait to be written to Redis."""
        return len(self._dirty)

    async def flush(self) -> bool:
        """Write every pending member now. True when all were written (or there is no store)."""
        store = self.store
        if store is None:
            self._dirty.clear()
            return True
        now = self.clock.now()
        if self._rebuild_needed:
            try:
                await store.invalidate(now)
            except REDIS_FAILURES as exc:
                self.breaker.failed(exc)
                return False
            self._rebuild_needed = False
        while self._dirty:
            batch = [self._dirty.pop() for _ in range(min(self.batch_size, len(self._dirty)))]
            try:
                async with self.read_sessions() as session:
                    figures = await period_points(session, batch, now)
                if self.fallback is not None:  # an outage's snapshots stop showing them now
                    self.fallback.relist(
                        (member, None if f.erased else f.listed) for member, f in figures.items()
                    )
                await store.write(figures, now)
            except REDIS_FAILURES as exc:
                self._keep(batch)
                self.breaker.failed(exc)
                return False
            except Exception:
                self._keep(batch)
                log.exception("leaderboards: applying %d members failed", len(batch))
                return False
            except BaseException:  # cancelled: keep them for the next attempt
                self._keep(batch)
                raise
            self.breaker.succeeded()
        return True

    def _keep(self, batch: list[int]) -> None:
        if len(self._dirty) + len(batch) > self.max_dirty:
            self._dirty.clear()
            self._rebuild_needed = True
        else:
            self._dirty.update(batch)

    # ------------------------------------------------------------ background task

    async def start(self) -> None:
        """Start the background writer (no-op without a store, or when started)."""
        if self.store is None or self._task is not None:
            return
        self._stopping = False
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        if self._dirty or self._rebuild_needed:
            self._wake.set()
        self._task = asyncio.create_task(self._run(), name="laurel-leaderboards")

    async def stop(self, *, grace_seconds: float = 2.0) -> None:
        """Stop the background writer, then write what is pending (best effort, bounded)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        for event in (self._wake, self._stop):
            if event is not None:
                event.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, grace_seconds)  # cancelled if it takes longer
        self._wake = self._stop = None
        if self._dirty or self._rebuild_needed:
            try:
                written = await asyncio.wait_for(self.flush(), grace_seconds)
            except Exception:
                written = False
            if not written:
                log.warning("leaderboards: %d members not written at shutdown", len(self._dirty))

    async def _run(self) -> None:
        wake, stop = self._wake, self._stop
        assert wake is not None and stop is not None
        backoff = self.flush_seconds
        while True:
            await wake.wait()
            if self._stopping:
                return
            await asyncio.sleep(self.flush_seconds)  # let a batch gather
            wake.clear()
            try:
                ok = await self.flush()
            except Exception:  # flush handles its own failures; this is a last resort
                log.exception("leaderboards: background writer failed")
                ok = False
            if ok:
                backoff = self.flush_seconds
                continue
            # Pause before the next attempt; `stop` (which sets `wake`) ends the pause.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            wake.set()
            backoff = min(backoff * 2, self.max_backoff_seconds)
