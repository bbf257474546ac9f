"""The circuit breaker in front of every Redis call that has a way to do without Redis:
leaderboards (the database answers), rate limits (counted in process), persisted queries
(kept in process) and the bus's broadcasts (caught up from the database).

A Redis that is down fails fast, but a frozen one (SIGSTOP, a stalled network) answers
nothing until a timeout. After a failure the breaker is open: for `open_seconds` calls do
without Redis at once; then one call (the probe) tries it again while the others still do
without, and the first success closes the breaker. So a Redis that stays frozen costs one
timeout every `open_seconds`, not one per request. An outage is logged once, when it
starts, and once when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Final, Literal, TypeVar

from redis.exceptions import RedisError

T = TypeVar("T")

# What an outage looks like: redis-py's errors (its ConnectionError and TimeoutError), the
# socket's own, and a deadline passed (TimeoutError is an OSError).
REDIS_FAILURES: Final[tuple[type[BaseException], ...]] = (RedisError, OSError)


class Skipped(Enum):
    """What `RedisBreaker.call` gives instead of an answer: Redis failed, or is let be."""

    SKIPPED = "skipped"


SKIPPED: Final = Skipped.SKIPPED


class RedisBreaker:
    """One breaker per use of Redis (their outages are seen apart, and so are their logs).
    Call from the event loop."""

    def __init__(
        self,
        name: str,
        *,
        open_seconds: float,
        fallback: str,
        timeout: float | None = None,
        failures: tuple[type[BaseException], ...] = REDIS_FAILURES,
        log: logging.Logger | None = None,
    ) -> None:
        """`name` and `fallback` ("answering from the database") make the log lines;
        `timeout`: a deadline for each call, on top of the client's socket timeouts;
        `failures`: the exceptions that mean Redis failed (others are raised)."""
        self.name = name
        self.open_seconds = open_seconds
        self.fallback = fallback
        self.timeout = timeout
        self.failures = failures
        self._log = log or logging.getLogger(f"laurel.{name}")
        self._down_since: float | None = None  # monotonic time of the outage's first failure
        self._skip_until = 0.0
        self._probing = False  # a call is trying a failing Redis again

    @property
    def failing(self) -> bool:
        """Redis failed and has not answered since."""
        return self._down_since is not None

    @property
    def open(self) -> bool:
        """Calls do without Redis now (it failed a moment ago, or a probe is out)."""
        return self.failing and (self._probing or time.monotonic() < self._skip_until)

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T | Literal[Skipped.SKIPPED]:
        """`attempt()`'s answer, or SKIPPED at once while the breaker is open, or SKIPPED
        after a failure (which opens it)."""
        probe = self._down_since is not None
        if probe:
            if self._probing or time.monotonic() < self._skip_until:
                return SKIPPED
            self._probing = True
        try:
            if self.timeout is None:
                result = await attempt()
            else:
                async with asyncio.timeout(self.timeout):
                    result = await attempt()
        except self.failures as error:
            self.failed(error)
            return SKIPPED
        finally:
            if probe:
                self._probing = False
        self.succeeded()
        return result

    def failed(self, error: BaseException) -> None:
        """Redis failed (in `call`, or in work that does not go through it, such as a
        background writer that retries on its own): calls do without it for a while."""
        now = time.monotonic()
        self._skip_until = now + self.open_seconds
        if self._down_since is None:
            self._down_since = now
            self._log.warning(
                "%s: Redis unavailable (%s: %s); %s, trying it again every %.0f s",
                self.name,
                type(error).__name__,
                error,
                self.fallback,
                self.open_seconds,
            )

    def succeeded(self) -> None:
        if self._down_since is not None:
            self._log.warning(
                "%s: Redis back after %.1f s", self.name, time.monotonic() - self._down_since
            )
            self._down_since = None
        self._skip_until = 0.0
