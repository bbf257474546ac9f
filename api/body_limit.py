"""A cap on request bodies (issue 15: a 1 MB comment or string argument used to be executed).

A pure ASGI wrapper, so it costs one header lookup per request: a declared Content-Length over
the cap is answered 413 before anything is read; a chunked body is read here up to the cap (answered
413 as soon as it passes it) and handed on whole.
WebSocket messages are capped by the server (`ws_max_size`, set from the same setting).
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.refusals import refusal

DEFAULT_MAX_BODY_BYTES: Final = 100 * 1024


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self._refusal = refusal(
            413,
            f"The request body is larger than {max_bytes} bytes.",
            "BAD_USER_INPUT",
            connection="close",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await self._refuse(send)
                    return
                break
        else:
            if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
                await self.app(scope, receive, send)
                return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A body without Content-Length (chunked): read it here, at most the cap, then hand
        it on whole (the application's own reader would turn a refusal into a 500)."""
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # the disconnect, when it comes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        start, body = self._refusal
        await send(start)
        await send(body)
