"""Webhooks at the edge: the worker as the settings configure it (in `laurel serve` and
`laurel worker`), and a tiny receiver for local development (`laurel webhooks receive`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from api.metrics import WebhookMetrics
from api.settings import Settings
from services.clock import Clock
from services.webhooks.delivery import DeliveryRules
from services.webhooks.urls import UrlRules
from services.webhooks.worker import WebhookWorker

MAX_RECEIVED_BYTES = 1_000_000


def delivery_rules(settings: Settings) -> DeliveryRules:
    return DeliveryRules(
        urls=UrlRules(
            production=settings.is_production, allow_private=settings.webhooks_allow_private
        ),
        timeout=settings.webhooks_timeout_seconds,
    )


def webhook_worker(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    read_sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    metrics: WebhookMetrics | None,
) -> WebhookWorker:
    return WebhookWorker(
        sessions, read_sessions, clock, rules=delivery_rules(settings), metrics=metrics
    )


# ---------------------------------------------------------------- the receiver

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class Receiver:
    """An ASGI app that takes any POST as a webhook: verifies it with the `standardwebhooks`
    library when it has the secret, prints one line, and answers 204 (401 when the signature
    does not verify)."""

    def __init__(self, secret: str | None, out: TextIO = sys.stdout) -> None:
        self.verifier = Webhook(secret) if secret else None
        self.out = out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # served with lifespan off
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body") or len(body) > MAX_RECEIVED_BYTES:
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status = self.take(scope["method"], body, headers)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def take(self, method: str, body: bytes, headers: dict[str, str]) -> int:
        if method != "POST":
            return 405
        message_id = headers.get("webhook-id", "?")
        try:
            payload = orjson.loads(body)
            kind = str(payload.get("type", "?")) if isinstance(payload, dict) else "?"
        except orjson.JSONDecodeError:
            kind = "(not JSON)"
        status = 204
        if self.verifier is None:
            verdict = "not verified (no --secret)"
        else:
            try:
                self.verifier.verify(body, headers, json_parse=False)
                verdict = "signature ok"
            except WebhookVerificationError as exc:
                verdict, status = f"SIGNATURE DOES NOT VERIFY ({exc})", 401
        print(f"{kind:<24} {message_id}  {verdict}", file=self.out, flush=True)
        return status
