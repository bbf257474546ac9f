"""The WebSocket protocol `laurel serve` gives uvicorn: its sans-I/O `websockets` one
(``--ws websockets-sansio``), keeping less per connection.

A process holds tens of thousands of idle subscribers, so what one connection keeps is what
the process needs. Measured with tracemalloc between 1,000 and 2,000 open subscribers
(`bench.live`): uvicorn's legacy ``websockets`` protocol kept ~28 KiB a connection (three
tasks, stream buffers, the handshake), the sans-I/O one ~18 KiB, and of that:

* the receive queue, an `asyncio.Queue`: three deques of 64 slots, ~2.3 KiB. `_Inbox` is a
  list and, while the app waits, one future (one reader: the app's `receive`);
* the write gate, an `asyncio.Event`: a deque, ~0.8 KiB. `_Gate` makes a list of waiters only
  while the transport is paused;
* the handshake's request and response (their headers as `websockets` objects, ~3 KiB),
  dropped once the handshake is answered: the ASGI scope keeps the headers the app reads.

Everything else (the handshake, pings, closing, back-pressure) is uvicorn's own code.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["LaurelWebSocketProtocol"]


class _Inbox:
    """What `asyncio.Queue` does for the protocol (one consumer), without its three deques."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[ASGIReceiveEvent] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: ASGIReceiveEvent) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> ASGIReceiveEvent:
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class _Gate:
    """What `asyncio.Event` does for the protocol's write gate: open but while the transport
    asks to pause; waiters (and their list) exist only then."""

    __slots__ = ("_open", "_waiters")

    def __init__(self) -> None:
        self._open = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def set(self) -> None:
        self._open = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._open = False

    def is_set(self) -> bool:
        return self._open

    async def wait(self) -> None:
        if self._open:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class LaurelWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with a leaner inbox, write gate and handshake
    (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Gate()  # type: ignore[assignment]

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if self.handshake_complete:
            # Answered: nothing reads the handshake's request and response again. The
            # request's headers are emptied too: the parser's frame keeps the request.
            state = vars(self)
            request = state.pop("request", None)
            if request is not None:
                request.headers.clear()
            state.pop("response", None)
