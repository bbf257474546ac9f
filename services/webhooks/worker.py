"""The webhook worker: dispatches committed member events into deliveries and attempts the due
ones, in any number of processes at once (`laurel serve` in-process, `laurel worker`).

Three loops share one asyncio loop:
* dispatch: woken by this process's commits (`wake()`) and every `poll` seconds, it runs the
  dispatcher until nothing is left, and tells the delivery loop;
* delivery: claims what is due (services.webhooks.delivery) within its quotas, starts one task
  an attempt, and sleeps until the next delivery comes due (at most `poll`), a commit, or a
  recorded attempt (which may let a member's next event go);
* recording: writes finished attempts in batches and frees their quota.
Shutting down waits a few seconds for attempts in flight; leases of the rest simply expire and
another worker attempts them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Protocol

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.clock import Clock
from services.webhooks.delivery import (
    USER_AGENT,
    Attempt,
    DeliveryRules,
    Recorded,
    Target,
    attempt,
    backlog,
    claim,
    look_ahead,
    record,
)
from services.webhooks.dispatch import dispatch as dispatch_events

log = logging.getLogger("laurel.webhooks")

Dispatcher = Callable[[AsyncSession, datetime], Awaitable[int]]
DISPATCH_LIMIT = 500
BACKLOG_EVERY = 5.0  # seconds between two looks at the backlog's age
RETRY_AFTER_ERROR = 1.0
COALESCE_SECONDS = 0.003
POOL_CONNECTIONS = 8


class DeliveryMetrics(Protocol):
    """Where the worker reports (api.metrics.WebhookMetrics)."""

    def attempted(self, seconds: float) -> None: ...

    def recorded(self, succeeded: int, retried: int, failed: int) -> None: ...

    def backlog(self, oldest_pending: float, oldest_undispatched: float) -> None: ...


class WebhookWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        read_sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        rules: DeliveryRules | None = None,
        metrics: DeliveryMetrics | None = None,
        poll: float = 1.0,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.sessions = sessions
        self.read_sessions = read_sessions
        self.clock = clock
        self.rules = rules or DeliveryRules()
        self.metrics = metrics
        self.poll = poll
        self._dispatch: Dispatcher = dispatcher or _dispatch_all
        # Connection pools per endpoint: a dead endpoint's hanging connections stay in its
        # own, and each pool stays small (httpx slows down past ~10 requests a pool: 1,900
        # POSTs/s at 8, 930/s at 24 on this machine).
        self._pools: dict[int, _Pools] = {}
        self._dispatch_bell = asyncio.Event()
        self._deliver_bell = asyncio.Event()
        self._record_bell = asyncio.Event()
        self._busy: dict[int, int] = {}  # endpoint id -> attempts claimed, not yet recorded
        self._attempts: set[asyncio.Task[None]] = set()
        self._finished: list[tuple[Target, Attempt]] = []
        self._loops: list[asyncio.Task[None]] = []
        self._recorder: asyncio.Task[None] | None = None
        self._claimed_last = False  # the last claim found work: claim again without looking
        self._running = False

    @property
    def in_flight(self) -> int:
        return sum(self._busy.values())

    def wake(self) -> None:
        """Something committed: dispatch (and deliver) now rather than at the next poll."""
        self._dispatch_bell.set()

    async def start(self) -> None:
        self._running = True
        self._dispatch_bell.set()  # what was committed before the start goes at once
        self._loops = [
            asyncio.create_task(self._dispatch_forever(), name="laurel-webhooks-dispatch"),
            asyncio.create_task(self._deliver_forever(), name="laurel-webhooks-deliver"),
        ]
        self._recorder = asyncio.create_task(self._record_forever(), name="laurel-webhooks-record")

    async def stop(self, grace: float = 3.0) -> None:
        """Stop claiming; give attempts in flight up to `grace` seconds and record them; the
        leases of the others expire (another worker attempts them again)."""
        # The loops end on cancellation, or at their next turn should a cancellation be lost;
        # either way the shutdown does not wait past `grace`.
        self._running = False
        for task in self._loops:
            task.cancel()
        await asyncio.wait(self._loops, timeout=grace)
        if self._attempts:
            _, late = await asyncio.wait(set(self._attempts), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._recorder is not None:
            self._recorder.cancel()
            await asyncio.wait({self._recorder}, timeout=grace)
        if self._finished:
            with contextlib.suppress(Exception):  # the leases expire; nothing is lost
                await asyncio.wait_for(self._record_finished(), timeout=grace)
        pools, self._pools = self._pools, {}
        await asyncio.gather(*(p.aclose() for p in pools.values()), return_exceptions=True)

    # ------------------------------------------------------------ dispatch

    async def _dispatch_forever(self) -> None:
        last_backlog = 0.0
        while self._running:
            await _wait(self._dispatch_bell, self.poll)
            self._dispatch_bell.clear()
            try:
                while await self.dispatch_once() >= DISPATCH_LIMIT:
                    pass
                if self.metrics is not None and time.monotonic() - last_backlog >= BACKLOG_EVERY:
                    last_backlog = time.monotonic()
                    await self.measure_backlog()
            except Exception:  # tried again at the next wake or poll; must not stop the worker
                log.exception("dispatching webhook events failed")
                await asyncio.sleep(RETRY_AFTER_ERROR)

    async def dispatch_once(self) -> int:
        async with self.sessions.begin() as session:
            handled = await self._dispatch(session, self.clock.now())
        if handled:
            self._deliver_bell.set()
        return handled

    async def measure_backlog(self) -> None:
        async with self.read_sessions() as session:
            found = await backlog(session)
        if self.metrics is not None:
            now = self.clock.now()
            self.metrics.backlog(
                _age(found.oldest_pending, now), _age(found.oldest_undispatched, now)
            )

    # ------------------------------------------------------------ delivery

    async def _deliver_forever(self) -> None:
        while self._running:
            self._deliver_bell.clear()
            sleep = self.poll
            try:
                sleep = await self.deliver_once()
            except Exception:  # tried again soon; must not stop the worker
                log.exception("claiming webhook deliveries failed")
            await _wait(self._deliver_bell, sleep)

    async def deliver_once(self) -> float:
        """Claim and start what is due and fits the quotas; how long to sleep at most."""
        room = self.rules.in_flight - self.in_flight
        if room <= 0:
            return self.poll  # a recorded attempt rings sooner
        if self._claimed_last and await self._claim(room):
            return self.poll  # a recorded attempt rings sooner
        # Idle: a cheap read says whether to claim, and how long to sleep.
        async with self.read_sessions() as session:
            due, upcoming = await look_ahead(session, self.clock.now())
        if due:
            await self._claim(room)
        if upcoming is None:
            return self.poll
        return max(0.0, min(self.poll, (upcoming - self.clock.now()).total_seconds()))

    async def _claim(self, room: int) -> int:
        async with self.sessions.begin() as session:
            targets = await claim(session, self.clock.now(), self.rules, busy=self._busy, room=room)
        for target in targets:
            self._start(target)
        self._claimed_last = bool(targets)
        return len(targets)

    def _start(self, target: Target) -> None:
        self._busy[target.endpoint_id] = self._busy.get(target.endpoint_id, 0) + 1
        task = asyncio.create_task(self._attempt(target), name="laurel-webhook-attempt")
        self._attempts.add(task)
        task.add_done_callback(self._attempts.discard)

    async def _attempt(self, target: Target) -> None:
        pools = self._pools.get(target.endpoint_id)
        if pools is None:
            pools = self._pools[target.endpoint_id] = _Pools(self.rules)
        async with pools.client() as client:
            tried = await attempt(client, target, self.clock.now(), self.rules)
        if self.metrics is not None:
            self.metrics.attempted(tried.latency_ms / 1000)
        self._finished.append((target, tried))
        self._record_bell.set()

    # ------------------------------------------------------------ recording

    async def _record_forever(self) -> None:
        while self._running:
            await self._record_bell.wait()
            if self._attempts:
                # Others are about to finish: one transaction for them all (and then one
                # claim for all the room they leave) costs less than one each.
                await asyncio.sleep(COALESCE_SECONDS)
            self._record_bell.clear()
            try:
                await self._record_finished()
            except Exception:  # kept, and tried again: the fences keep a late write harmless
                log.exception("recording webhook attempts failed")
                await asyncio.sleep(RETRY_AFTER_ERROR)
                self._record_bell.set()

    async def _record_finished(self) -> Recorded | None:
        batch, self._finished = self._finished, []
        if not batch:
            return None
        try:
            async with self.sessions.begin() as session:
                done = await record(session, batch, self.clock.now(), self.rules)
        except BaseException:
            self._finished[:0] = batch
            raise
        for target, _ in batch:
            left = self._busy[target.endpoint_id] - 1
            if left:
                self._busy[target.endpoint_id] = left
            else:
                del self._busy[target.endpoint_id]
        if self.metrics is not None:
            self.metrics.recorded(done.succeeded, done.retried, done.failed)
        for endpoint_id in done.disabled_endpoints:
            log.warning("webhook endpoint %s disabled (see its disabledReason)", endpoint_id)
        self._deliver_bell.set()  # room, and perhaps a member's next event, to deliver
        return done


class _Pools:
    """An endpoint's connections: its quota, in pools of at most POOL_CONNECTIONS; each
    attempt takes the least busy."""

    def __init__(self, rules: DeliveryRules) -> None:
        count = -(-rules.per_endpoint // POOL_CONNECTIONS)
        self.clients = [new_client(rules, POOL_CONNECTIONS) for _ in range(count)]
        self.busy = [0] * count

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        chosen = self.busy.index(min(self.busy))
        self.busy[chosen] += 1
        try:
            yield self.clients[chosen]
        finally:
            self.busy[chosen] -= 1

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


def new_client(rules: DeliveryRules, connections: int = POOL_CONNECTIONS) -> httpx.AsyncClient:
    """A pool of connections; redirects are not followed (a 3xx is retried)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(rules.timeout),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers={"user-agent": USER_AGENT},
    )


async def _dispatch_all(session: AsyncSession, now: datetime) -> int:
    return await dispatch_events(session, now, limit=DISPATCH_LIMIT)


async def _wait(bell: asyncio.Event, seconds: float) -> None:
    # Not asyncio.wait_for: on Python 3.11 it drops a cancellation that arrives as the bell
    # rings (and the loop would never stop).
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await bell.wait()


def _age(since: datetime | None, now: datetime) -> float:
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())
