"""Rate limits: how often one credential (a member token, an API key), or one client address
for anonymous calls, may call Laurel, set per role.

Limits are written and keyed in the `limits` library's notation, and counted in fixed
windows: in this process with the library's fixed-window strategy (over `LocalCounters`), or,
when LAUREL_REDIS_URL is set, in Redis, one count per credential shared by every process under
the same LAUREL_REDIS_PREFIX.

In Redis a process does not ask for every call: it leases a slice of the caller's window (one
INCRBY of a tenth of the limit, and the window's end) and serves calls from it until it is used
up or the window ends. A round trip costs ~100 µs of CPU with redis-py, whatever it carries, so
leases are asked for together: the leases of up to 5 ms of callers share one script call.
A caller's first call in a window is served at once and counted with its lease (it does not
wait those 5 ms): when a member opens an app, nearly every call is a first call, and with
100,000 callers a check fell from ~350 to 25-31 µs of CPU (bench/rate_limits.py). The
caller's later calls wait for a lease when they find none left.
The count in Redis is at least the calls served, a few milliseconds late for a first call: a
window can serve one call over the limit per process (a first call, when other processes used
the whole window; one more each time the process forgot the caller, past 10,000 others).
Units a process leased and did not use are lost when the window ends, so a caller spread over
several processes may be refused a little before the limit (at most a tenth of it per other
process).
`limits` has no leasing; the script is a dozen lines.

A Redis that fails or hangs never fails or stalls a request: each call has a short deadline, and
after a failure this process counts on its own for a few seconds (a circuit breaker) instead
of waiting on Redis again with every request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final, Literal

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter
from redis.asyncio import Redis

from schema.context import Role, Viewer
from services.breaker import SKIPPED, RedisBreaker

log = logging.getLogger("laurel.rate_limits")

# Values of a LAUREL_RATE_LIMIT_* setting that mean "no limit for this role".
UNLIMITED: Final = frozenset({"", "none", "unlimited", "off"})

# Leases of several windows at once: for each key, take ARGV[2i-1] units; a new window lasts
# ARGV[2i] ms. Returns, per key, the count after taking them and the window's time left in ms.
_LEASES: Final = """
local out = {}
for i, key in ipairs(KEYS) do
  local amount, window = tonumber(ARGV[2 * i - 1]), ARGV[2 * i]
  local count = redis.call('INCRBY', key, amount)
  if count == amount then redis.call('PEXPIRE', key, window) end
  local left = redis.call('PTTL', key)
  if left < 0 then redis.call('PEXPIRE', key, window); left = tonumber(window) end
  out[2 * i - 1] = count
  out[2 * i] = left
end
return out
"""
LEASE_SHARE: Final = 10  # a lease is a tenth of the limit (at least one call)
MAX_LEASES: Final = 10_000
FLUSH_SECONDS: Final = 0.005  # first calls' leases wait this long to share a round trip
MAX_BATCH: Final = 64  # leases in one script call (Redis runs a script alone: keep it short)

# A lease asked for: key, limit, units, window (ms), calls it counts that were already served,
# and the answer to come.
_Ask = tuple[str, RateLimitItem, int, int, int, "asyncio.Future[Any]"]


def parse_limit(value: str) -> RateLimitItem | None:
    """A role's limit in the `limits` notation ("600/minute", "100 per second"), or None for
    no limit. Raises ValueError for anything else (a typo must stop the server starting)."""
    if value.strip().lower() in UNLIMITED:
        return None
    return parse(value)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A call over its role's limit: when the window ends, in whole seconds from now."""

    retry_after: int
    limit: RateLimitItem


class LocalCounters(Storage):
    """Fixed-window counters in this process's memory, a storage for `limits`' strategies.

    Not `limits.aio.storage.MemoryStorage`: that one schedules a task that scans every key it
    holds each time the event loop turns, which cost 181 µs of CPU a request with 1,000
    members counted (bench/rate_limits.py). Here ended windows are dropped from the front as new
    ones start (`_sweep`), and at most `max_keys` windows are kept: past that the oldest go (a
    flood of new addresses cannot grow memory; a dropped window starts again from zero).
    """

    STORAGE_SCHEME = None

    def __init__(self, max_keys: int = 100_000) -> None:
        super().__init__()
        self.max_keys = max_keys
        # key -> [count, expires at (monotonic)]; insertion order is the age of a window.
        # An OrderedDict: a plain dict's first key is found by skipping every slot deleted
        # before it, which made each new caller's sweep cost more the longer it ran.
        self._windows: OrderedDict[str, list[float]] = OrderedDict()

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.monotonic()
        window = self._windows.get(key)
        if window is None or window[1] <= now:
            self._windows.pop(key, None)  # re-inserted last: its age starts now
            self._sweep(now)
            self._windows[key] = window = [0, now + expiry]
        window[0] += amount
        return int(window[0])

    async def get(self, key: str) -> int:
        window = self._windows.get(key)
        return int(window[0]) if window is not None and window[1] > time.monotonic() else 0

    async def get_expiry(self, key: str) -> float:
        """When the key's window ends, in POSIX seconds (as `limits` reports it)."""
        window = self._windows.get(key)
        now = time.monotonic()
        left = window[1] - now if window is not None and window[1] > now else 0.0
        return time.time() + left

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        count = len(self._windows)
        self._windows.clear()
        return count

    async def clear(self, key: str) -> None:
        self._windows.pop(key, None)

    def _sweep(self, now: float) -> None:
        """Drop ended windows from the front, and the oldest while there are too many.

        Windows sit in the order they started, so those that ended are at the front (nearly:
        limits of different lengths interleave, and one that ended behind a longer one waits
        its turn), and a sweep costs what it drops, not what is kept: a scan of every window
        cost ~10 ms at 100,000 of them, and once full it ran for every new caller."""
        windows = self._windows
        while windows:
            oldest = next(iter(windows))
            if windows[oldest][1] > now and len(windows) < self.max_keys:
                return
            del windows[oldest]


class RateLimits:
    """The limits of one API process: `check` before a call is served."""

    def __init__(
        self,
        limits: dict[Role, RateLimitItem | None],
        *,
        redis: Redis | None = None,
        redis_url: str | None = None,
        prefix: str = "laurel:",
        timeout: float = 0.1,
        breaker_seconds: float = 5.0,
    ) -> None:
        self.limits = limits
        self.local = FixedWindowRateLimiter(LocalCounters())
        self.redis = redis if redis_url is not None else None
        self.prefix = f"{prefix}ratelimit/"
        # Leases being asked for: key -> the answer to come; and the requests not sent yet,
        # sent together within FLUSH_SECONDS (`_ask_lease`).
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._batch: list[_Ask] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flush_scheduled = False
        self._flushing: set[asyncio.Future[None]] = set()
        self._lease_script = self.redis.register_script(_LEASES) if self.redis else None
        # Slices of callers' windows this process holds: key -> [calls left, window end].
        self._leases: OrderedDict[str, list[float]] = OrderedDict()  # oldest first, as above
        # Each call has a short deadline; after a failure this process counts alone for
        # `breaker_seconds` (services.breaker). Any exception counts: never fail a request.
        self.breaker = RedisBreaker(
            "rate limits",
            open_seconds=breaker_seconds,
            fallback="counting in this process",
            timeout=timeout,
            failures=(Exception,),
            log=log,
        )
        # Keys refused in their current window: refused again without asking Redis (a fixed
        # window's count only grows until it ends). key -> window end (monotonic).
        self._refused: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        return any(limit is not None for limit in self.limits.values())

    @property
    def redis_skipped(self) -> bool:
        """True while the breaker is open: Redis failed a moment ago, this process counts alone."""
        return self.breaker.open

    async def check(self, viewer: Viewer, address: str | None) -> Refusal | None:
        """Count a call by `viewer` (or, anonymous, from `address`); a Refusal if it is over
        its role's limit, None to serve it."""
        limit = self.limits.get(viewer.role)
        if limit is None:
            return None
        # A member token or API key is one caller wherever it comes from; anonymous callers
        # (and credentials that were refused) are told apart by their address only.
        who = viewer.actor if viewer.role is not Role.ANONYMOUS else f"address:{address}"
        return await self.hit(limit, who)

    async def hit(self, limit: RateLimitItem, who: str) -> Refusal | None:
        key = limit.key_for(who)
        served = self._from_lease(key, limit)
        if served is not False:
            return served
        if self.redis is None:
            return await self._locally(limit, key)
        size = max(1, limit.amount // LEASE_SHARE)
        window_ms = limit.get_expiry() * 1000
        if self.breaker.failing:
            # Redis failed lately: one call at a time tries it (the breaker lets one probe
            # through, the rest count here at once), never a batch that waits.
            answer = await self.breaker.call(lambda: self._lease_one(key, size, window_ms))
            if answer is SKIPPED:
                return await self._locally(limit, key)
            self._install(key, limit, size, answer, served=0)
        else:
            pending = self._pending.get(key)
            if pending is None:
                lease = self._leases.get(key)
                if lease is None or lease[1] <= time.monotonic():
                    # The caller's first call in this window here: served now, counted with
                    # the lease asked for it (`_flush`).
                    self._pending[key] = self._ask_lease(key, limit, size, window_ms, served=1)
                    return None
                # Its lease is used up: this call waits for the next (and so do the caller's
                # other calls meanwhile).
                pending = self._pending[key] = self._ask_lease(
                    key, limit, size, window_ms, served=0
                )
            else:
                self._flush_soon()  # someone waits on it now
            if await asyncio.shield(pending) is SKIPPED:
                return await self._locally(limit, key)
        served = self._from_lease(key, limit)
        if served is not False:
            return served
        return await self.hit(limit, who)  # others took the new lease already: another one

    def _from_lease(self, key: str, limit: RateLimitItem) -> Refusal | Literal[False] | None:
        """Served from this process's lease of the window (None), refused in it (a Refusal),
        or False: no lease with units left."""
        now = time.monotonic()
        refused_until = self._refused.get(key)
        if refused_until is not None:
            if now < refused_until:
                return Refusal(math.ceil(refused_until - now), limit)
            del self._refused[key]
        lease = self._leases.get(key)
        if lease is not None and lease[1] > now and lease[0] >= 1:
            lease[0] -= 1
            return None
        return False

    def _install(self, key: str, limit: RateLimitItem, size: int, answer: Any, served: int) -> None:
        """Keep the lease Redis answered (count after taking `size`, ms left), less the
        `served` calls it counts that were served before it came; or, when the window has
        nothing left, the refusal until it ends."""
        count, left_ms = answer
        ends = time.monotonic() + int(left_ms) / 1000
        # The units of this lease still under the limit (others may have taken the rest).
        granted = min(size, limit.amount - (int(count) - size))
        if granted >= 1:
            if len(self._leases) >= MAX_LEASES:  # bounded: drop the oldest
                del self._leases[next(iter(self._leases))]
            # Kept even when the calls served took it all: the caller's next call in this
            # window waits for a lease instead of being served first.
            self._leases[key] = [max(granted - served, 0), ends]
        else:
            self._refuse(key, limit, time.time() + (ends - time.monotonic()))

    async def _locally(self, limit: RateLimitItem, key: str) -> Refusal | None:
        """No Redis, or the breaker is open: counted in this process. (The fixed-window
        strategy's `hit`, given the key `hit` made: the library would make it again.)"""
        storage = self.local.storage
        if await storage.incr(key, limit.get_expiry()) <= limit.amount:
            return None
        return self._refuse(key, limit, await storage.get_expiry(key))

    async def _lease_one(self, key: str, size: int, window_ms: int) -> Any:
        return (await self._leases_of([self.prefix + key], [size, window_ms]))[0:2]

    async def _leases_of(self, keys: list[str], args: list[int]) -> list[Any]:
        """One script call: per key, the count after its lease and its window's ms left."""
        assert self._lease_script is not None
        answers: list[Any] = await self._lease_script(keys=keys, args=args)
        return answers

    def _ask_lease(
        self, key: str, limit: RateLimitItem, size: int, window_ms: int, *, served: int
    ) -> asyncio.Future[Any]:
        """A lease of `size` units of `key`'s window, `served` of them taken by calls already
        served, asked for with the others of the next few milliseconds in one script call:
        a round trip's CPU is mostly redis-py's, whatever it carries. A lease someone waits
        for goes with the next turn of the event loop. Resolves once the lease (or the
        refusal) is kept, to Redis's answer, or SKIPPED."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._batch.append((key, limit, size, window_ms, served, future))
        if not served or len(self._batch) >= MAX_BATCH:
            self._flush_soon()
        elif self._timer is None and not self._flush_scheduled:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._flush_soon)
        return future

    async def settle(self) -> None:
        """Send the leases asked for and wait for every answer: the calls already served are
        counted in Redis (at shutdown, before the client closes)."""
        self._flush_soon()
        while self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)

    def _flush_soon(self) -> None:
        """Send the leases asked for so far at the next turn of the event loop."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flush_scheduled or not self._batch:
            return
        self._flush_scheduled = True
        flush = asyncio.ensure_future(self._flush())
        self._flushing.add(flush)
        flush.add_done_callback(self._flushing.discard)

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let this turn's other calls join the batch
        self._flush_scheduled = False
        if self._timer is not None:  # this call takes the timer's leases
            self._timer.cancel()
            self._timer = None
        batch, self._batch = self._batch, []
        try:
            for start in range(0, len(batch), MAX_BATCH):
                await self._send(batch[start : start + MAX_BATCH])
        finally:
            # Cancelled with the process: nobody waits in vain.
            for key, *_, future in batch:
                if not future.done():
                    self._pending.pop(key, None)
                    future.cancel()

    async def _send(self, batch: list[_Ask]) -> None:
        """One script call for these leases, each kept (or its refusal) and its future settled
        before anyone waiting resumes: a caller finds the lease kept (or the window refused)
        and no request pending for its key."""
        keys: list[str] = []
        args: list[int] = []
        for key, _, size, window_ms, _, _ in batch:
            keys.append(self.prefix + key)
            args += (size, window_ms)
        answers = await self.breaker.call(lambda: self._leases_of(keys, args))
        for index, (key, limit, size, _, served, future) in enumerate(batch):
            self._pending.pop(key, None)
            if future.done():
                continue
            if answers is SKIPPED:
                if served:  # counted here instead, as calls are while Redis is away
                    await self._locally(limit, key)
                future.set_result(SKIPPED)
            else:
                answer = answers[2 * index : 2 * index + 2]
                self._install(key, limit, size, answer, served)
                future.set_result(answer)

    def _refuse(self, key: str, limit: RateLimitItem, ends: float) -> Refusal:
        left = max(0.0, ends - time.time())
        if len(self._refused) >= 10_000:  # bounded: many refused callers at once
            self._refused.clear()
        self._refused[key] = time.monotonic() + left
        return Refusal(max(1, math.ceil(left)), limit)
