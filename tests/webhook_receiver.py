"""A real HTTP receiver on loopback for the webhook tests: an asyncio HTTP/1.1 server (keep-alive,
Content-Length bodies) that records every request and answers as its script says: a status
code, or HANG (never answers, as a dead endpoint that accepts connections)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

HANG = -1


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]


# Given the request and how many requests came before it on this path: the status to answer.
Script = Callable[[Received, int], int]


@dataclass
class WebhookReceiver:
    script: Script = lambda _request, _count: 204
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _counts: dict[str, int] = field(default_factory=dict)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def start(self) -> WebhookReceiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()

    async def wait_for(self, done: Callable[[WebhookReceiver], bool], within: float = 20.0) -> None:
        """Until `done(self)` holds, or fail after `within` seconds."""
        async with asyncio.timeout(within):
            while not done(self):
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await self._arrived.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                _method, path, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Received(path, headers, body, time.monotonic())
                count = self._counts.get(path, 0)
                self._counts[path] = count + 1
                self.received.append(request)
                self._arrived.set()
                status = self.script(request, count)
                if status == HANG:
                    await asyncio.sleep(3600)
                    return
                text = b"" if status in (204, 304) else b"ok"  # 204 and 304 have no body
                answer = f"HTTP/1.1 {status} Scripted\r\ncontent-length: {len(text)}\r\n\r\n"
                writer.write(answer.encode() + text)
                await writer.drain()
        except ConnectionError:
            return
        finally:
            self._handlers.discard(task)
            writer.close()
