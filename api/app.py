"""The ASGI application: lifespan (engine, sessions, sweeper), GraphQL, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import strawberry
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from api.auth import Authenticator
from api.graphql_view import LaurelGraphQL
from api.metrics import Metrics
from api.settings import Settings
from models.engine import create_engine, read_only, read_session_factory, session_factory
from schema.context import Context, Runtime
from schema.limits import QueryLimits
from schema.schema import build_schema
from services.catalog import CatalogCache
from services.clock import Clock, SystemClock
from services.ledger.sweeps import sweep

log = logging.getLogger("laurel")


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    runtime: Runtime
    authenticator: Authenticator
    metrics: Metrics
    schema: strawberry.Schema


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> Starlette:
    settings = settings or Settings()
    clock = clock or SystemClock()
    engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
    sessions = session_factory(engine)
    read_sessions = read_session_factory(engine)
    runtime = Runtime(
        sessions=sessions,
        read_sessions=read_sessions,
        read_engine=read_only(engine),
        catalog=CatalogCache(read_sessions),
        clock=clock,
        jwt_secret=settings.jwt_secret_value,
        member_token_ttl=timedelta(seconds=settings.member_token_ttl_seconds),
    )
    authenticator = Authenticator(
        read_sessions,
        clock,
        jwt_secret=settings.jwt_secret_value,
        jwt_public_key=settings.jwt_public_key,
        key_cache_seconds=settings.api_key_cache_seconds,
    )
    metrics = Metrics()
    schema = build_schema(
        limits=QueryLimits(),
        mask_internal_errors=settings.is_production,
        extra_extensions=[metrics.extension()],
    )
    state = AppState(settings, engine, runtime, authenticator, metrics, schema)

    async def get_context(request: Request | WebSocket, response: Response | None) -> Context:
        if isinstance(request, WebSocket):
            # Subscriptions authenticate in `connection_init` (the live-updates work).
            authorization = None
        else:
            authorization = request.headers.get("authorization")
        viewer = await authenticator.viewer(authorization)
        return Context(request=request, response=response, runtime=runtime, viewer=viewer)

    graphql = LaurelGraphQL[Context](
        schema,
        context_getter=get_context,
        graphiql=settings.graphiql_enabled,
        mask_internal=settings.is_production,
    )

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        checks = {"database": await _database_up(engine)}
        if settings.redis_url:
            checks["redis"] = await _redis_up(settings.redis_url)
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable"}
            | {name: "up" if up else "down" for name, up in checks.items()},
            status_code=200 if ready else 503,
        )

    async def metrics_route(_: Request) -> Response:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        sweeper = None
        if settings.sweep_interval_seconds > 0:
            sweeper = asyncio.create_task(_sweep_forever(state))
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            await engine.dispose()

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_route),
        ],
        lifespan=lifespan,
    )
    app.state.laurel = state
    return app


async def _database_up(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:  # any failure means "not ready", whatever the driver raised
        log.warning("readiness check: database unreachable", exc_info=True)
        return False
    return True


async def _redis_up(url: str) -> bool:
    client = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    except Exception:  # unreachable, refused, auth: all mean "not ready"
        log.warning("readiness check: Redis unreachable")
        return False
    finally:
        await client.aclose()


async def _sweep_forever(state: AppState) -> None:
    """Activate pending points and expire lots on time, whatever members do."""
    while True:
        try:
            await sweep(state.runtime.sessions, state.runtime.clock.now())
        except Exception:  # the sweep is retried next round; a failure must not kill the app
            log.exception("points sweep failed")
        await asyncio.sleep(state.settings.sweep_interval_seconds)
