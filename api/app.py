"""The ASGI application: lifespan (engine, sessions, sweeper), GraphQL, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import strawberry
from limits import RateLimitItem
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError

from api import pages
from api.admission import Admission
from api.auth import Authenticator, IdentityProvider
from api.body_limit import BodyLimit
from api.graphql_view import CONNECTION_CLEANUPS, LaurelGraphQL
from api.jwks import KeySet
from api.live_operations import LiveOperations
from api.logs import RequestIds
from api.member_views import MemberViews
from api.metrics import Metrics
from api.persisted import (
    ApqStore,
    MemoryApqStore,
    PersistedDocuments,
    RedisApqStore,
    TrustedDocuments,
)
from api.rate_limits import RateLimits, parse_limit
from api.settings import Settings
from api.tracing import Tracing, otlp_configured
from api.webhooks import webhook_worker
from models.engine import create_engine, read_only, read_session_factory, session_factory
from schema.compiled import OperationObserver
from schema.context import ANONYMOUS, Context, Role, Runtime, Viewer
from schema.exceptions import RateLimited
from schema.limits import QueryLimits
from schema.schema import build_schema
from services.bus import LocalBus, RedisBus, hint_channel
from services.catalog import CatalogCache
from services.clock import Clock, SystemClock
from services.direct.writer import DirectWriter
from services.events import notifying
from services.leaderboards import Leaderboards, LeaderboardStore, connect_redis
from services.ledger.sweeps import sweep
from services.revocations import KEYS_CHANGED, Revocations, member_erased_message
from services.webhooks.urls import UrlRules

log = logging.getLogger("laurel")

# The garbage collector's thresholds while serving (generation 0 allocations, then collections
# of generations 0 and 1), see `lifespan`.
GC_THRESHOLDS = (10_000, 20, 20)


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    runtime: Runtime
    authenticator: Authenticator
    metrics: Metrics
    schema: strawberry.Schema
    member_views: MemberViews


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    tracing: Tracing | None = None,
) -> Starlette:
    """The app; `tracing`: traces go there rather than where the OTEL_* variables say, if
    they say anywhere (`api.tracing`); the app closes it when it stops."""
    settings = settings or Settings()
    clock = clock or SystemClock()
    engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
    redis = connect_redis(settings.redis_url) if settings.redis_url else None
    if tracing is None and otlp_configured():
        tracing = Tracing(slow_resolver_ms=settings.trace_slow_resolver_ms)
    if tracing is not None:
        tracing.instrument(engine, redis)
    bus: LocalBus = LocalBus()
    if settings.redis_url and redis is not None:
        # The subscription waits quietly for messages: no read timeout on its connection.
        listener = Redis.from_url(settings.redis_url, socket_connect_timeout=1.0)
        bus = RedisBus(redis, listener=listener, channel=hint_channel(settings.redis_prefix))
    # Every unit of work tells the bus, after it commits, which members have new events.
    sessions = session_factory(engine, info=notifying(bus.committed))
    read_sessions = read_session_factory(engine)
    direct = DirectWriter.on(engine, bus.committed)
    leaderboards = Leaderboards(
        read_sessions,
        LeaderboardStore(redis, prefix=settings.redis_prefix) if redis is not None else None,
        clock,
        direct=direct,
    )
    bus.on_commit(leaderboards.mark_dirty)  # this process's commits move the boards
    # Erasures and key changes, announced by any process, refused here at once.
    revocations = Revocations()
    bus.on_broadcast(revocations.apply)
    revocations.on_member_erased(lambda member_id: bus.ring([member_id]))  # its streams end

    async def credentials_changed() -> None:
        await bus.broadcast(KEYS_CHANGED)

    async def member_erased(member_id: int) -> None:
        await bus.broadcast(member_erased_message(member_id))

    runtime = Runtime(
        sessions=sessions,
        read_sessions=read_sessions,
        read_engine=read_only(engine),
        catalog=CatalogCache(read_sessions),
        clock=clock,
        jwt_secret=settings.jwt_secret_value,
        member_token_ttl=timedelta(seconds=settings.member_token_ttl_seconds),
        bus=bus,
        leaderboards=leaderboards,
        direct=direct,
        credentials_changed=credentials_changed,
        member_erased=member_erased,
        revocations=revocations,
        webhook_urls=UrlRules(
            production=settings.is_production, allow_private=settings.webhooks_allow_private
        ),
    )
    authenticator = Authenticator(
        read_sessions,
        clock,
        jwt_secret=None,
        jwt_secrets=settings.jwt_verifying_secrets,
        jwt_public_key=settings.jwt_public_key,
        identity_provider=_identity_provider(settings),
        key_cache_seconds=settings.api_key_cache_seconds,
        revocations=revocations,
        write_sessions=sessions,
    )
    metrics = Metrics()
    observe = metrics.observe if tracing is None else _both(metrics.observe, tracing.observe)
    # Webhooks are dispatched and delivered in this process too unless turned off (then
    # `laurel worker` does it); any commit, here or (with Redis) elsewhere, wakes it.
    webhooks = (
        webhook_worker(settings, sessions, read_sessions, clock, metrics.webhooks)
        if settings.webhooks_in_process
        else None
    )
    if webhooks is not None:
        bus.on_ring(lambda _members: webhooks.wake())
    schema = build_schema(
        limits=QueryLimits(),
        mask_internal_errors=settings.is_production,
        observe=observe,
        resolvers_observed=tracing.resolver_ended if tracing is not None else None,
    )
    member_views = MemberViews(bus, clock, observe=observe)
    metrics.watch_member_views(member_views.counters)
    rate_limits = RateLimits(
        _role_limits(settings) if settings.rate_limits else {},
        redis=redis,
        redis_url=settings.redis_url,
        prefix=settings.redis_prefix,
    )

    async def limit_rate(viewer: Viewer, connection: HTTPConnection) -> None:
        """Count a call (or a WebSocket's connection or operation); RateLimited past its
        role's limit."""
        refusal = await rate_limits.check(
            viewer, connection.client.host if connection.client else None
        )
        if refusal is not None:
            metrics.rate_limited.labels(viewer.role.value).inc()
            raise RateLimited(
                f"Too many requests: retry in {refusal.retry_after} s.",
                retryAfter=refusal.retry_after,
            )

    local_documents = MemoryApqStore(max_entries=settings.apq_cache_size)
    apq: ApqStore = (
        RedisApqStore(
            redis,
            prefix=settings.redis_prefix,
            ttl_seconds=settings.apq_ttl_seconds,
            local=local_documents,
        )
        if redis is not None
        else local_documents
    )
    persisted = PersistedDocuments(
        apq,
        TrustedDocuments(read_sessions, miss_seconds=settings.api_key_cache_seconds),
        trusted_only=settings.trusted_documents,
    )
    state = AppState(settings, engine, runtime, authenticator, metrics, schema, member_views)

    async def get_context(request: Request | WebSocket, response: Response | None) -> Context:
        if isinstance(request, WebSocket):
            # A WebSocket authenticates in its `connection_init` payload (see `on_connect`).
            return Context(request=request, response=response, runtime=runtime, viewer=ANONYMOUS)
        viewer = await authenticator.viewer(request.headers.get("authorization"))
        await limit_rate(viewer, request)
        return Context(request=request, response=response, runtime=runtime, viewer=viewer)

    expiries: set[_Expiry | asyncio.Task[None]] = set()

    async def on_connect(context: Context) -> None:
        """Only a valid credential gets a connection (4403 otherwise), and a member's ends
        when its token expires."""
        params = context.connection_params or {}
        # Read once: neither the payload nor its credential is kept while the socket is open.
        context.connection_params = None
        authorization = params.get("authorization", params.get("Authorization"))
        viewer = (
            await authenticator.viewer(authorization)
            if isinstance(authorization, str)
            else ANONYMOUS
        )
        # Every attempt counts, refused ones by address (RateLimited closes with 4429).
        await limit_rate(viewer, context.request)
        if not isinstance(authorization, str):
            raise ConnectionRejectionError({"message": "connection_init needs `authorization`"})
        if viewer.role is Role.ANONYMOUS:
            raise ConnectionRejectionError({"message": viewer.credential_problem or "refused"})
        context.viewer = viewer
        if viewer.expires_at is not None and isinstance(context.request, WebSocket):
            delay = max(0.0, (viewer.expires_at - clock.now()).total_seconds())
            expiry = _Expiry(context.request, delay, expiries)
            # Cancelled when the socket closes first (LaurelGraphQL runs these cleanups).
            state = context.request.scope.setdefault("state", {})
            state.setdefault(CONNECTION_CLEANUPS, []).append(expiry.cancel)

    compiled = getattr(schema, "compiled", None)
    # Planned `pointsUpdated` subscriptions skip strawberry's per-subscription machinery;
    # with tracing on, strawberry runs them (its spans see each operation).
    live = (
        LiveOperations(compiled, runtime)
        if settings.live_plans and tracing is None and compiled is not None
        else None
    )
    metrics.watch_live(lambda: (bus.subscribers, len(live) if live is not None else 0))
    graphql = LaurelGraphQL[Context](
        schema,
        context_getter=get_context,
        graphiql=settings.graphiql_enabled,
        mask_internal=settings.is_production,
        allowed_origins=settings.allowed_origins,
        connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        on_connect=on_connect,
        cached_execution=member_views.execute,
        on_ws_operation=lambda context: limit_rate(context.viewer, context.request),
        persisted=persisted,
        # Trusted mode limits the credentials of apps in members' hands (and no credential);
        # API keys live on servers.
        restricted=lambda context: context.viewer.role in (Role.MEMBER, Role.ANONYMOUS),
        tracing=tracing,
        live=live,
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
        # What exists now (modules, the schema, SQLAlchemy's tables, the settings) lives as
        # long as the server: out of the collector's sight, it is not scanned again by every
        # full collection (under load, the collector took 10-20% of a dashboard's CPU, most
        # of it walking these objects). Given back to the collector when the server stops.
        gc.collect()
        gc.freeze()
        # Requests leave little cyclic garbage but allocate much: at the default threshold
        # (700) the young generation was collected several times a request (~7% of an
        # earn's CPU under load). Full collections, which walk every live object (1 s with
        # 5,000 WebSockets open), become rarer too.
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        sweeper = None
        if settings.sweep_interval_seconds > 0:
            sweeper = asyncio.create_task(_sweep_forever(state))
        async with read_sessions() as session:
            await revocations.catch_up(session)  # every erasure so far
        missed = asyncio.Event()  # set when Redis broadcasts may have been missed
        bus.on_reconnect(missed.set)
        watcher = asyncio.create_task(_watch_revocations(state, missed))
        await bus.start()
        if webhooks is not None:
            await webhooks.start()
        await leaderboards.start()
        try:
            yield
        finally:
            for task in (sweeper, watcher):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            for expiry in list(expiries):
                expiry.cancel()
            await leaderboards.stop()
            await authenticator.close()
            if webhooks is not None:
                await webhooks.stop()  # a few seconds at most; leases of the rest expire
            await bus.stop()
            await rate_limits.settle()  # the leases of calls already served, counted
            if redis is not None:
                await redis.aclose()
            if isinstance(bus, RedisBus):
                await bus.listener.aclose()
            await engine.dispose()
            if tracing is not None:
                tracing.close()
            gc.set_threshold(*thresholds)
            gc.unfreeze()

    app = _App(
        # Past the HTTP middleware, which lets WebSockets pass (OpenTelemetry's traces them).
        graphql_websockets=graphql if tracing is None else None,
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_route),
            *pages.routes(settings),  # GraphiQL's files, /member and /admin when enabled
        ],
        lifespan=lifespan,
        middleware=[
            # Outermost: every response, the refusals below included, carries the id.
            Middleware(RequestIds, access_log=settings.access_log),
            *([tracing.middleware()] if tracing is not None else []),
            Middleware(Admission, max_in_flight=settings.max_in_flight, on_shed=metrics.shed.inc),
            Middleware(BodyLimit, max_bytes=settings.max_body_bytes),
        ],
    )
    app.state.laurel = state
    app.state.webhooks = webhooks
    app.state.rate_limits = rate_limits
    app.state.tracing = tracing
    app.state.token_expiries = expiries  # the open sockets' expiry timers (and closings)
    return app


class _App(Starlette):
    """Starlette, handing GraphQL WebSockets straight to the view when `graphql_websockets`
    is set: every layer between (middleware, router) is a coroutine frame that a connection
    keeps as long as it is open (~3.5 KiB of a subscriber's memory)."""

    def __init__(self, *, graphql_websockets: ASGIApp | None, **options: Any) -> None:
        super().__init__(**options)
        self.graphql_websockets = graphql_websockets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.graphql_websockets is not None:
            path, root = scope["path"], scope.get("root_path", "")
            if (path[len(root) :] if root and path.startswith(root) else path) == "/graphql":
                scope["app"] = self
                await self.graphql_websockets(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _both(first: OperationObserver, second: OperationObserver) -> OperationObserver:
    def observe(operation: str | None, kind: str, failed: bool, seconds: float) -> None:
        first(operation, kind, failed, seconds)
        second(operation, kind, failed, seconds)

    return observe


def _role_limits(settings: Settings) -> dict[Role, RateLimitItem | None]:
    return {
        Role.MEMBER: parse_limit(settings.rate_limit_member),
        Role.PARTNER: parse_limit(settings.rate_limit_partner),
        Role.SERVICE: parse_limit(settings.rate_limit_service),
        Role.ADMIN: parse_limit(settings.rate_limit_admin),
        Role.ANONYMOUS: parse_limit(settings.rate_limit_anonymous),
    }


def _identity_provider(settings: Settings) -> IdentityProvider | None:
    if settings.jwks_url is None or not settings.jwt_issuer or not settings.jwt_audience:
        return None  # (Settings refuses a JWKS URL without an issuer and an audience)
    keys = KeySet(
        settings.jwks_url,
        timeout=settings.jwks_timeout_seconds,
        min_refresh_seconds=settings.jwks_min_refresh_seconds,
        max_age_seconds=settings.jwks_cache_seconds,
    )
    return IdentityProvider(
        keys,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        member_claim=settings.jwt_member_claim,
    )


class _Expiry:
    """A member socket's token expiry: a timer (not a sleeping task: ~1 KiB less a socket),
    and once it fires, the task that closes the socket. Kept in `expiries` meanwhile."""

    __slots__ = ("_expiries", "_timer", "_websocket")

    def __init__(
        self, websocket: WebSocket, delay: float, expiries: set[_Expiry | asyncio.Task[None]]
    ) -> None:
        self._websocket = websocket
        self._expiries = expiries
        self._timer = asyncio.get_running_loop().call_later(delay, self._expire)
        expiries.add(self)

    def _expire(self) -> None:
        self._expiries.discard(self)
        task = asyncio.create_task(_close_expired(self._websocket), name="laurel-token-expiry")
        self._expiries.add(task)
        task.add_done_callback(self._expiries.discard)

    def cancel(self) -> None:
        self._timer.cancel()
        self._expiries.discard(self)


async def _close_expired(websocket: WebSocket) -> None:
    """Close a connection whose member token expired (4403: a new token is needed)."""
    with contextlib.suppress(RuntimeError, OSError):
        await websocket.close(code=4403, reason="Token expired")


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


async def _watch_revocations(state: AppState, missed: asyncio.Event) -> None:
    """Catch up with erasures and key changes that no broadcast told this process about:
    every `api_key_cache_seconds`, and at once after Redis comes back."""
    runtime = state.runtime
    while True:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # arrives as the event is set, and shutdown would wait on this loop forever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(state.settings.api_key_cache_seconds):
                await missed.wait()
        missed.clear()
        try:
            async with runtime.read_sessions() as session:
                await runtime.revocations.catch_up(session)
        except Exception:  # tried again next round; must not kill the app
            log.exception("looking for revocations failed")
