"""The process's event bus: it rings the subscribers of members whose events were committed.

Hints carry member ids only. A subscriber that is rung reads its member's events after its
cursor from the database (the outbox), so a hint that arrives twice, late, or out of order
changes nothing, and one that is lost is made good by the next one or by a reconnect.

* `LocalBus`: one process (no Redis configured). Commits ring this process's subscribers.
* `RedisBus`: commits also go out over Redis pub/sub, and hints from other processes come in,
  so a subscriber connected to any process hears about commits made by every process. When
  Redis is down, commits are kept (a bounded set of member ids) and published when it is back,
  and local subscribers are still rung at once; nothing ever waits for Redis or fails with it.
  A broadcast (awaited by the request that sends it) waits for Redis at most
  `BROADCAST_TIMEOUT`, and not at all while the breaker is open after a failure
  (`services.breaker`); one that could not be published is kept (a bounded list) and
  published by the background publisher when Redis answers again. Broadcasts must therefore
  be idempotent and be backed by something the other processes can read without Redis (the
  revocations are: see `services.revocations`).

A `Doorbell` is a flag: rings coalesce, so a subscriber that reads slowly costs one flag, never
a growing queue; a future exists only while its subscriber waits (an `asyncio.Event` kept a
deque of ~0.8 KiB per subscriber, 20,000 of them on one process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.breaker import SKIPPED, RedisBreaker

log = logging.getLogger("laurel.bus")

Listener = Callable[[frozenset[int]], None]

EVERYONE = "*"  # a hint that every member may have news (after hints were dropped)
MAX_UNSENT = 100_000  # member ids kept while Redis is down; beyond that, one EVERYONE hint
CHUNK = 2_000  # member ids per published message
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
BROADCAST_TIMEOUT = 0.25  # seconds a broadcast may wait for Redis (a PUBLISH takes < 1 ms)
BROADCAST_BREAKER_SECONDS = 5.0  # after a failure, broadcasts do not try Redis for this long
MAX_UNSENT_BROADCASTS = 1_000  # beyond that the oldest go (the database catch-up covers them)


def hint_channel(prefix: str) -> str:
    """The channel of a deployment's hints (its Redis prefix)."""
    return f"{prefix}member-events"


def broadcast_channel(hints: str) -> str:
    """The channel of broadcasts beside the hints' channel `hints`."""
    return f"{hints}:broadcast"


class Bell(Protocol):
    """What the bus rings for a member: a `Doorbell`, or a subscriber that acts on its own
    (e.g. `api.live_operations.LiveOperation`, which starts its delivery when rung)."""

    def ring(self) -> None: ...


class Doorbell:
    """Rung by commits, waited on by one subscriber (its stream's task)."""

    __slots__ = ("_rung", "_waiter")

    def __init__(self) -> None:
        self._rung = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def rung(self) -> bool:
        """Rung since the last `wait` returned."""
        return self._rung

    def ring(self) -> None:
        self._rung = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until rung (at once if it was since the last wait); then not rung again."""
        if not self._rung:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        self._rung = False


class LocalBus:
    """Subscribers of this process, rung by this process's commits."""

    def __init__(self) -> None:
        # A member's one bell, or a set when it has several (a set is ~0.2 KiB: most
        # members have one subscriber, and a process may hold 20,000).
        self._by_member: dict[int, Bell | set[Bell]] = {}
        self._everything: set[Bell] = set()
        self._commit_listeners: list[Listener] = []
        self._ring_listeners: list[Callable[[Iterable[int] | None], None]] = []
        self._broadcast_listeners: list[Callable[[str], None]] = []
        self._reconnect_listeners: list[Callable[[], None]] = []

    @property
    def subscribers(self) -> int:
        held = self._by_member.values()
        return sum(len(h) if isinstance(h, set) else 1 for h in held) + len(self._everything)

    def subscribe(self, member_id: int | None) -> Doorbell:
        """A doorbell rung when `member_id` (None: any member) has newly committed events."""
        bell = Doorbell()
        self.attach(member_id, bell)
        return bell

    def attach(self, member_id: int | None, bell: Bell) -> None:
        """Ring `bell` when `member_id` (None: any member) has newly committed events, until
        `unsubscribe`."""
        if member_id is None:
            self._everything.add(bell)
            return
        held = self._by_member.get(member_id)
        if held is None:
            self._by_member[member_id] = bell
        elif isinstance(held, set):
            held.add(bell)
        else:
            self._by_member[member_id] = {held, bell}

    def unsubscribe(self, member_id: int | None, bell: Bell) -> bool:
        """Ring `bell` no more; False if it was not subscribed."""
        if member_id is None:
            if bell not in self._everything:
                return False
            self._everything.discard(bell)
            return True
        held = self._by_member.get(member_id)
        if held is bell:
            del self._by_member[member_id]
            return True
        if isinstance(held, set) and bell in held:
            held.discard(bell)
            if not held:
                del self._by_member[member_id]
            return True
        return False

    def on_commit(self, listener: Listener) -> None:
        """Call `listener` with the members of every commit made by this process."""
        self._commit_listeners.append(listener)

    def on_ring(self, listener: Callable[[Iterable[int] | None], None]) -> None:
        """Call `listener` with the members of every ring (None: everyone may have news),
        synchronously, before any doorbell is rung."""
        self._ring_listeners.append(listener)

    def committed(self, member_ids: frozenset[int]) -> None:
        """A unit of work of this process committed events of these members."""
        self.ring(member_ids)
        for listener in self._commit_listeners:
            try:
                listener(member_ids)
            except Exception:  # a listener's bug must not reach the committing request
                log.exception("commit listener failed")

    def ring(self, member_ids: Iterable[int]) -> None:
        member_ids = list(member_ids)
        for listener in self._ring_listeners:
            listener(member_ids)
        for member_id in member_ids:
            held = self._by_member.get(member_id)
            if isinstance(held, set):
                for bell in held:
                    bell.ring()
            elif held is not None:
                held.ring()
        for bell in self._everything:
            bell.ring()

    def ring_everyone(self) -> None:
        for listener in self._ring_listeners:
            listener(None)
        for held in list(self._by_member.values()):  # a bell may unsubscribe when rung
            if isinstance(held, set):
                for bell in list(held):
                    bell.ring()
            else:
                held.ring()
        for bell in self._everything:
            bell.ring()

    def on_broadcast(self, listener: Callable[[str], None]) -> None:
        """Call `listener` with every broadcast, this process's own included."""
        self._broadcast_listeners.append(listener)

    def on_reconnect(self, listener: Callable[[], None]) -> None:
        """Call `listener` when broadcasts from other processes may have been missed."""
        self._reconnect_listeners.append(listener)

    async def broadcast(self, message: str) -> None:
        """Tell every process (here: this one) `message`; returns once it is told."""
        self._deliver(message)

    def _deliver(self, message: str) -> None:
        for listener in self._broadcast_listeners:
            try:
                listener(message)
            except Exception:  # one listener's bug must not keep the message from the others
                log.exception("broadcast listener failed")

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class RedisBus(LocalBus):
    """`LocalBus` plus Redis pub/sub between processes (one channel, hints of member ids)."""

    def __init__(
        self, redis: Redis, *, listener: Redis | None = None, channel: str = "laurel:member-events"
    ) -> None:
        """`redis` publishes (short timeouts suit it); `listener` (default: `redis`) holds the
        subscription, so it must not time out reads while the channel is quiet."""
        super().__init__()
        self._redis = redis
        self.listener = listener or redis
        self._channel = channel
        # Broadcasts (rare, and awaited by whoever sends one) go on a channel of their own.
        self._broadcast_channel = broadcast_channel(channel)
        self._origin = uuid.uuid4().hex  # our own hints come back: skip them
        self._unsent: set[int] = set()
        self._everyone_unsent = False
        self._unsent_broadcasts: deque[str] = deque(maxlen=MAX_UNSENT_BROADCASTS)
        self.breaker = RedisBreaker(
            "bus",
            open_seconds=BROADCAST_BREAKER_SECONDS,
            fallback="broadcasts are kept and sent later; other processes catch up meanwhile",
            timeout=BROADCAST_TIMEOUT,
            log=log,
        )
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()  # set while subscribed to the channel

    def on_ring(self, listener: Callable[[Iterable[int] | None], None]) -> None:
        """Call `listener` with the members of every ring (None: everyone may have news),
        synchronously, before any doorbell is rung."""
        self._ring_listeners.append(listener)

    def committed(self, member_ids: frozenset[int]) -> None:
        super().committed(member_ids)
        if len(self._unsent) + len(member_ids) > MAX_UNSENT:
            self._unsent.clear()
            self._everyone_unsent = True
        else:
            self._unsent.update(member_ids)
        self._wake.set()

    async def broadcast(self, message: str) -> None:
        """Tell this process at once, and every other one through Redis: PUBLISH returns once
        Redis has handed the message to every subscribed process. A Redis that is down or
        frozen costs this call `BROADCAST_TIMEOUT` at most, or nothing while the breaker is
        open: the message is kept and published when Redis answers again, and it is logged,
        not raised (the others catch up from the database meanwhile)."""
        self._deliver(message)
        published = await self.breaker.call(
            lambda: self._redis.publish(self._broadcast_channel, f"{self._origin}:{message}")
        )
        if published is SKIPPED:
            log.warning("broadcast of %r not published yet; kept, sent when Redis answers", message)
            self._unsent_broadcasts.append(message)
            self._wake.set()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._publish_forever(), name="laurel-bus-publisher"),
            asyncio.create_task(self._listen_forever(), name="laurel-bus-listener"),
        ]

    async def stop(self) -> None:
        with contextlib.suppress(RedisError, OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self._publish_unsent(), timeout=1.0)  # best effort
        for task in self._tasks:
            task.cancel()
        # Their CancelledErrors come back as results; a cancellation of stop() itself is not
        # swallowed.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _publish_unsent(self) -> None:
        while self._unsent_broadcasts:
            message = self._unsent_broadcasts[0]
            await self._redis.publish(self._broadcast_channel, f"{self._origin}:{message}")
            self._unsent_broadcasts.popleft()
            if not self._unsent_broadcasts:
                self.breaker.succeeded()  # requests' broadcasts try Redis again at once
        if self._everyone_unsent:
            await self._redis.publish(self._channel, f"{self._origin}:{EVERYONE}")
            self._everyone_unsent = False
        while self._unsent:
            batch = [self._unsent.pop() for _ in range(min(CHUNK, len(self._unsent)))]
            try:
                await self._redis.publish(
                    self._channel, f"{self._origin}:{','.join(map(str, batch))}"
                )
            except BaseException:
                self._unsent.update(batch)  # kept for the next attempt
                raise

    async def _publish_forever(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._publish_unsent()
                if failures:
                    log.warning("Redis is back: published the hints kept meanwhile")
                failures = 0
            except (RedisError, OSError) as error:
                _unless_cancelled()
                if failures == 0:
                    log.warning("Redis publish failed (%s); hints are kept and retried", error)
                await asyncio.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
                failures += 1
                self._wake.set()

    async def _listen_forever(self) -> None:
        failures = 0
        while True:
            pubsub = self.listener.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel, self._broadcast_channel)
                self.connected.set()
                if failures:
                    log.warning("Redis is back: listening for other processes' hints again")
                    # Hints may have been missed meanwhile: everyone looks for news once.
                    self.ring_everyone()
                    for listener in self._reconnect_listeners:
                        listener()
                failures = 0
                async for message in pubsub.listen():
                    if _channel_of(message) == self._broadcast_channel:
                        self._receive_broadcast(message.get("data"))
                    else:
                        self._receive(message.get("data"))
            except (RedisError, OSError) as error:
                _unless_cancelled()
                self.connected.clear()
                if failures == 0:
                    log.warning("Redis subscription lost (%s); retrying", error)
                await asyncio.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
                failures += 1
            finally:
                self.connected.clear()
                with contextlib.suppress(RedisError, OSError, RuntimeError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _receive_broadcast(self, data: object) -> None:
        if isinstance(data, bytes):
            data = data.decode(errors="replace")
        if isinstance(data, str):
            origin, _, message = data.partition(":")
            if origin != self._origin:
                self._deliver(message)

    def _receive(self, data: object) -> None:
        if isinstance(data, bytes):
            data = data.decode(errors="replace")
        if not isinstance(data, str):
            return
        origin, _, ids = data.partition(":")
        if origin == self._origin:
            return
        if ids == EVERYONE:
            self.ring_everyone()
            return
        try:
            members = [int(i) for i in ids.split(",") if i]
        except ValueError:
            log.warning("ignored a malformed hint on %s", self._channel)
            return
        self.ring(members)


def _channel_of(message: dict[str, object]) -> str | None:
    channel = message.get("channel")
    if isinstance(channel, bytes):
        return channel.decode(errors="replace")
    return channel if isinstance(channel, str) else None


def _unless_cancelled() -> None:
    """Re-raise a cancellation that redis-py reported as a connection error (it closes the
    connection when a command is cancelled): the loop must end, not retry."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
