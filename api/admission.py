"""Admission control: a bounded number of HTTP requests in flight per process.

Without it, 200 connections at one process were all queued (p99 3-9 s) and nothing was shed.
Past the bound a request is answered at once with 503 and `Retry-After`, before it reads its
body or touches the database, so a load balancer or client retries elsewhere or later instead
of waiting behind the queue. Health checks and metrics are never shed (an overloaded process
is alive, and says so); WebSockets are bounded per connection elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from api.refusals import refusal

DEFAULT_MAX_IN_FLIGHT: Final = 128
NEVER_SHED: Final = frozenset({"/healthz", "/readyz", "/metrics"})


class Admission:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        retry_after: int = 1,
        on_shed: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.on_shed = on_shed
        self._refusal = refusal(
            503,
            "The server is busy; retry shortly.",
            "SERVICE_UNAVAILABLE",
            retry_after=str(retry_after),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in NEVER_SHED:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            if self.on_shed is not None:
                self.on_shed()
            start, body = self._refusal
            await send(start)
            await send(body)
            return
        self.in_flight += 1  # one event loop: no lock needed between the check and this
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
