"""`laurel worker` (webhook dispatch and delivery, and the points sweep, outside the API
processes) and `laurel webhooks receive` (a receiver for local development); registered by
`api.cli`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

import uvicorn
import uvloop
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.cli import (
    CliError,
    _database,
    _err,
    _require_migrated,
    _run,
    _settings,
    _shown_url,
    _sqlite_path,
)
from api.metrics import Metrics
from api.settings import Settings
from api.webhooks import Receiver, webhook_worker
from models import WebhookEndpoint, WebhookEventType
from models.engine import read_session_factory, session_factory
from models.migrations import is_up_to_date
from schema.ids import encode_id
from services import audit
from services.bus import LocalBus, RedisBus, hint_channel
from services.clock import SystemClock
from services.events import notifying
from services.leaderboards import connect_redis
from services.ledger.sweeps import sweep
from services.webhooks.endpoints import AUDITED_FIELDS, create_endpoint, update_endpoint
from services.webhooks.urls import UrlRules

log = logging.getLogger("laurel.worker")
WORKER_POOL_SIZE = 4
SECRET_ENV = "LAUREL_WEBHOOK_SECRET"  # noqa: S105 (the variable's name)
# The receiver is on this machine, registered by its operator: its own address is allowed.
LOCAL = UrlRules(production=False, allow_private=True)


def add_webhook_commands(commands: Any) -> None:
    """Add `worker` and `webhooks receive` to the `laurel` command's subcommands."""
    worker = commands.add_parser(
        "worker",
        help="deliver webhooks and run the points sweep until stopped (SIGTERM or Ctrl-C)",
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve the worker's Prometheus metrics on 127.0.0.1:PORT/metrics",
    )
    worker.set_defaults(handler=cmd_worker)

    webhooks = commands.add_parser("webhooks", help="webhooks")
    actions = webhooks.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    receive = actions.add_parser(
        "receive",
        help="a local receiver: prints each webhook's type and id, and whether it verifies",
    )
    receive.add_argument("--host", default="127.0.0.1")
    receive.add_argument("--port", type=int, default=9000)
    receive.add_argument(
        "--secret",
        metavar="whsec_...",
        help=f"the endpoint's signing secret (default: ${SECRET_ENV}); without it, the "
        "configured database's endpoint for this address (registered if there is none)",
    )
    receive.add_argument(
        "--no-register",
        action="store_true",
        help="without --secret, do not register an endpoint in the configured database",
    )
    receive.set_defaults(handler=cmd_webhooks_receive)


# ---------------------------------------------------------------- laurel worker


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for chatty in ("httpx", "httpcore"):  # a line per request otherwise (and the URLs)
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # uvloop, as `laurel serve` runs: 10-25% more deliveries a second than asyncio's loop.
    uvloop.run(_work(settings, args.metrics_port))
    return 0


async def _work(settings: Settings, metrics_port: int | None) -> None:
    async with _database(settings.database_url) as engine:
        await _require_migrated(engine)
        # With Redis, this process hears of commits made anywhere (and tells the API
        # processes about the sweep's); without, it polls every second.
        redis = connect_redis(settings.redis_url) if settings.redis_url else None
        bus: LocalBus = LocalBus()
        if settings.redis_url and redis is not None:
            listener = Redis.from_url(settings.redis_url, socket_connect_timeout=1.0)
            bus = RedisBus(redis, listener=listener, channel=hint_channel(settings.redis_prefix))
        sessions = session_factory(engine, info=notifying(bus.committed))
        metrics = Metrics()
        clock = SystemClock()
        worker = webhook_worker(
            settings, sessions, read_session_factory(engine), clock, metrics.webhooks
        )
        bus.on_ring(lambda _members: worker.wake())
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr="127.0.0.1", registry=metrics.registry)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await bus.start()
        await worker.start()
        sweeper = None
        if settings.sweep_interval_seconds > 0:
            sweeper = asyncio.create_task(_sweep_forever(sessions, clock, settings))
        print(
            f"laurel worker: delivering webhooks from {_shown_url(settings.database_url)} "
            f"(pid {os.getpid()}); SIGTERM or Ctrl-C stops",
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            await worker.stop()
            await bus.stop()
            if isinstance(bus, RedisBus):
                await bus.listener.aclose()
            if redis is not None:
                await redis.aclose()
        print("laurel worker: stopped", flush=True)


async def _sweep_forever(
    sessions: async_sessionmaker[AsyncSession], clock: SystemClock, settings: Settings
) -> None:
    """As `laurel serve` does: activate pending points and expire lots on time."""
    while True:
        try:
            await sweep(sessions, clock.now())
        except Exception:  # retried next round; a failure must not stop the worker
            log.exception("points sweep failed")
        await asyncio.sleep(settings.sweep_interval_seconds)


# ---------------------------------------------------------------- laurel webhooks receive


def cmd_webhooks_receive(args: argparse.Namespace) -> int:
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{args.port}/"
    secret = args.secret or os.environ.get(SECRET_ENV) or None
    if secret is None and not args.no_register:
        found = _run(_own_endpoint(url))
        if found is not None:
            secret, where = found
            _err(f"laurel: {where}: it receives every event type, signed with its secret")
    try:
        receiver = Receiver(secret)
    except Exception as exc:  # bad base64 (binascii.Error), an empty key
        raise CliError(f"--secret is not a whsec_... signing secret ({exc})", code=2) from exc
    print(
        f"laurel: receiving webhooks at {url} "
        f"({'verifying signatures' if secret else 'signatures are not checked'}); Ctrl-C stops",
        flush=True,
    )
    if not secret:
        _err("laurel: note: give the endpoint's secret (--secret whsec_...) to verify each call")
    uvicorn.run(
        receiver,
        host=args.host,
        port=args.port,
        lifespan="off",
        log_level="warning",
        access_log=False,
    )
    return 0


async def _own_endpoint(url: str) -> tuple[str, str] | None:
    """The secret of the configured database's endpoint for `url` (enabled again if it was
    disabled), created for every event type if there is none; None without a migrated
    database (nothing to register with)."""
    settings = _settings()
    path = _sqlite_path(settings.database_url)
    if path is not None and not path.is_file():
        return None
    async with _database(settings.database_url) as engine:
        if not await is_up_to_date(engine):
            return None
        now = SystemClock().now()
        async with session_factory(engine).begin() as session:
            endpoint = await session.scalar(
                select(WebhookEndpoint)
                .where(
                    WebhookEndpoint.url == url,
                    WebhookEndpoint.partner_id.is_(None),
                    WebhookEndpoint.deleted_at.is_(None),
                )
                .order_by(WebhookEndpoint.id.desc())
                .limit(1)
            )
            before = None
            if endpoint is not None:
                before = audit.fields(endpoint, AUDITED_FIELDS)
                if not endpoint.enabled:
                    await update_endpoint(
                        session, endpoint, {"enabled": True}, rules=LOCAL, now=now
                    )
            else:
                endpoint = (
                    await create_endpoint(
                        session,
                        url=url,
                        event_types=list(WebhookEventType),
                        description="laurel webhooks receive",
                        partner_id=None,
                        rules=LOCAL,
                        now=now,
                    )
                ).endpoint
            after = audit.fields(endpoint, AUDITED_FIELDS)
            if before != after:
                audit.record(
                    session,
                    actor=audit.COMMAND_LINE,
                    operation="webhooks receive",
                    target_id=encode_id("WebhookEndpoint", endpoint.id),
                    before=before,
                    after=after,
                    now=now,
                )
            what = "registered" if before is None else "using"
            return endpoint.secret, (
                f"{what} webhook endpoint {endpoint.id} for {url} in "
                f"{_shown_url(settings.database_url)}"
            )
