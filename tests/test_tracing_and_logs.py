"""Traces and logs on the real app (issue 15, item 5): an operation span named after the
operation, with database (and Redis) spans under it, on the planned path and strawberry's;
nothing of OpenTelemetry when tracing is off; a request id in every response and in the JSON
log line of its request; credentials never in a log."""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, ClassVar

import asyncpg
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from api.app import create_app
from api.graphql_view import LaurelGraphQL
from api.logs import REDACTED, json_handler
from api.settings import Settings
from api.tracing import Tracing, otlp_configured
from bench.workloads import DASHBOARD_QUERY
from models import KeyRole
from models.engine import session_factory
from services.clock import ManualClock
from tests.conftest import JWT_SECRET, Api, ApiFactory
from tests.graphql.test_rewards_api import new_member
from tests.live.conftest import REDIS_URL

_OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
)


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the machine's environment says, each test decides."""
    for name in _OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@dataclass
class Traced:
    api: Api
    spans: InMemorySpanExporter


def _settings(engine: AsyncEngine, **overrides: Any) -> Settings:
    return Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        jwt_secret=SecretStr(JWT_SECRET),
        sweep_interval_seconds=0,
        _env_file=None,  # type: ignore[call-arg]
        **overrides,
    )


@pytest.fixture
async def apps() -> AsyncIterator[list[Starlette]]:
    """Apps a test made: their tracing closed (asyncpg's instrumentation is process-wide)
    and their engines disposed."""
    made: list[Starlette] = []
    yield made
    for app in made:
        if app.state.tracing is not None:
            app.state.tracing.close()
        await app.state.rate_limits.settle()  # the leases of calls served, sent
        boards = app.state.laurel.runtime.leaderboards
        if boards.store is not None:
            await boards.store.redis.aclose()  # the app's client (no lifespan ran)
        await app.state.laurel.engine.dispose()


async def _traced(
    engine: AsyncEngine,
    clock: ManualClock,
    apps: list[Starlette],
    slow_resolver_ms: float = 10.0,
    **settings: Any,
):
    spans = InMemorySpanExporter()
    # each span exported as it ends
    tracing = Tracing(spans, batch=False, slow_resolver_ms=slow_resolver_ms)
    app = create_app(_settings(engine, **settings), clock=clock, tracing=tracing)
    apps.append(app)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return Traced(Api(client, session_factory(engine), clock, app), spans)


def _view(app: Starlette) -> LaurelGraphQL[Any]:
    for route in app.routes:
        endpoint = getattr(route, "endpoint", None)
        if isinstance(endpoint, LaurelGraphQL):
            return endpoint
    raise AssertionError("no GraphQL view")


def _children(spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> list[ReadableSpan]:
    parent_id = parent.context.span_id
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent_id]


def _operation_span(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def _is_statement(span: ReadableSpan) -> bool:
    return any(key.startswith("db.") for key in span.attributes or {})


async def _member_token(api: Api) -> str:
    admin = await api.key(KeyRole.ADMIN)
    return (await new_member(api, admin, f"m{uuid.uuid4().hex[:8]}", points=50)).token


@pytest.mark.parametrize("path", ["planned", "general"])
async def test_an_operation_span_named_after_the_operation_holds_the_statements(
    engine: AsyncEngine, clock: ManualClock, apps: list[Starlette], path: str
) -> None:
    traced = await _traced(engine, clock, apps)
    api = traced.api
    token = await _member_token(api)
    view = _view(api.app)
    if path == "general":
        view.compiled = None  # strawberry's own execution, no plan looked for
    else:
        assert view.compiled is not None and view.compiled.find(DASHBOARD_QUERY, None) is not None
    traced.spans.clear()

    body = await api.gql(DASHBOARD_QUERY, token=token)

    assert "errors" not in body, body
    assert body["data"]["me"]["balance"]["available"] == 50
    spans = traced.spans.get_finished_spans()
    operation = _operation_span(spans, "query Dashboard")
    assert operation.attributes is not None
    assert operation.attributes["graphql.operation.name"] == "Dashboard"
    assert operation.attributes["graphql.operation.type"] == "query"
    statements = [s for s in _children(spans, operation) if _is_statement(s)]
    assert statements, [(s.name, s.attributes) for s in spans]
    # Under the HTTP server span of OpenTelemetry's ASGI middleware, in one trace.
    server = [s for s in spans if s.name == "POST /graphql"]
    assert len(server) == 1 and operation.parent is not None
    assert operation.parent.span_id == server[0].context.span_id
    assert {s.context.trace_id for s in spans} == {operation.context.trace_id}


@pytest.mark.parametrize("path", ["planned", "general"])
async def test_a_slow_resolver_gets_a_span_of_its_own_under_the_operation(
    engine: AsyncEngine, clock: ManualClock, apps: list[Starlette], path: str
) -> None:
    # Every resolver function is "slow" at a threshold of 0; attribute reads are never timed.
    traced = await _traced(engine, clock, apps, slow_resolver_ms=0)
    api = traced.api
    token = await _member_token(api)
    if path == "general":
        _view(api.app).compiled = None
    traced.spans.clear()

    body = await api.gql(DASHBOARD_QUERY, token=token)

    assert "errors" not in body, body
    spans = traced.spans.get_finished_spans()
    operation = _operation_span(spans, "query Dashboard")
    resolvers = {s.name: s for s in _children(spans, operation) if s.name.startswith("resolve ")}
    assert set(resolvers) == {
        "resolve Query.me",
        "resolve Member.tier",
        "resolve Member.tierProgress",
        "resolve Member.transactions",
    }
    page = resolvers["resolve Member.transactions"]
    assert page.attributes is not None
    assert page.attributes["graphql.field.path"] == "me.transactions"
    assert page.attributes["graphql.field.coordinate"] == "Member.transactions"
    assert page.start_time is not None and page.end_time is not None
    assert operation.start_time is not None and operation.end_time is not None
    assert operation.start_time <= page.start_time <= page.end_time <= operation.end_time


async def test_resolvers_faster_than_the_threshold_get_no_span(
    engine: AsyncEngine, clock: ManualClock, apps: list[Starlette]
) -> None:
    traced = await _traced(engine, clock, apps, slow_resolver_ms=60_000)
    api = traced.api
    token = await _member_token(api)
    traced.spans.clear()

    body = await api.gql(DASHBOARD_QUERY, token=token)

    assert "errors" not in body, body
    assert not [s for s in traced.spans.get_finished_spans() if s.name.startswith("resolve ")]


async def test_an_incoming_traceparent_is_continued(
    engine: AsyncEngine, clock: ManualClock, apps: list[Starlette]
) -> None:
    traced = await _traced(engine, clock, apps)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await traced.api.client.post(
        "/graphql",
        json={"query": "query Version { program { name } }"},
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    assert response.status_code == 200, response.text
    operation = _operation_span(traced.spans.get_finished_spans(), "query Version")
    assert operation.context.trace_id == int(trace_id, 16)


async def test_redis_commands_are_spans_of_the_operation(
    pg: AsyncEngine, clock: ManualClock, apps: list[Starlette]
) -> None:
    traced = await _traced(
        pg, clock, apps, redis_url=REDIS_URL, redis_prefix=f"t-{uuid.uuid4().hex[:8]}:"
    )
    query = "query Named { program { name } }"
    extensions = {
        "persistedQuery": {"version": 1, "sha256Hash": sha256(query.encode()).hexdigest()}
    }
    sent = await traced.api.client.post("/graphql", json={"query": query, "extensions": extensions})
    assert sent.status_code == 200 and "errors" not in sent.json(), sent.text
    spans = traced.spans.get_finished_spans()
    operation = _operation_span(spans, "query Named")
    commands = [
        s for s in _children(spans, operation) if (s.attributes or {}).get("db.system") == "redis"
    ]
    assert commands, [(s.name, s.attributes) for s in spans]


async def test_tracing_off_creates_nothing_of_opentelemetry(
    engine: AsyncEngine, clock: ManualClock, apps: list[Starlette]
) -> None:
    # A traced app made and closed first: closing takes asyncpg's instrumentation off again.
    traced = await _traced(engine, clock, apps)
    assert (
        await traced.api.client.post("/graphql", json={"query": "{ program { name } }"})
    ).is_success
    traced.api.app.state.tracing.close()
    traced.api.app.state.tracing = None
    traced.spans.clear()

    app = create_app(_settings(engine), clock=clock)
    apps.append(app)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    response = await client.post("/graphql", json={"query": "query Off { program { name } }"})

    assert response.status_code == 200, response.text
    assert app.state.tracing is None
    assert _view(app).tracing is None
    # No tracer provider installed: the API's placeholder, which makes no-op spans only.
    assert not hasattr(trace.get_tracer_provider(), "add_span_processor")
    assert not trace.get_current_span().is_recording()
    assert not hasattr(asyncpg.connection.Connection.fetch, "__wrapped__")
    middleware = {m.cls.__name__ for m in app.user_middleware}  # type: ignore[attr-defined]
    assert "OpenTelemetryMiddleware" not in middleware
    assert traced.spans.get_finished_spans() == ()  # closed: the second app added nothing


async def test_an_otlp_endpoint_in_the_environment_turns_tracing_on(
    engine: AsyncEngine, clock: ManualClock, apps: list[Starlette], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not otlp_configured({})
    assert otlp_configured(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}
    )
    assert not otlp_configured(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}
    )
    assert not otlp_configured(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}
    )
    # (Nothing is sent: the app serves no request.)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    app = create_app(_settings(engine), clock=clock)
    apps.append(app)
    assert app.state.tracing is not None
    assert _view(app).tracing is app.state.tracing
    tracing = app.state.tracing
    assert isinstance(tracing, Tracing)
    assert tracing.provider.resource.attributes["service.name"] == "laurel"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop-loyalty")
    renamed = Tracing(InMemorySpanExporter())
    assert renamed.provider.resource.attributes["service.name"] == "shop-loyalty"
    renamed.close()


class _Collector(http.server.BaseHTTPRequestHandler):
    """A local OTLP/HTTP collector: keeps what is posted to /v1/traces."""

    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.path == "/v1/traces":
            self.received.append(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def test_traces_reach_an_otlp_collector(
    engine: AsyncEngine, clock: ManualClock, apps: list[Starlette], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production configuration end to end: the OTEL_ variables, the batching processor,
    the OTLP/HTTP exporter, a collector on the loopback address."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Collector.received.clear()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        app = create_app(_settings(engine), clock=clock)
        apps.append(app)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        response = await client.post(
            "/graphql", json={"query": "query Collected { program { name } }"}
        )
        assert response.status_code == 200, response.text
        await asyncio.to_thread(app.state.tracing.close)  # exports what is pending, then stops
        app.state.tracing = None
    finally:
        server.shutdown()
        server.server_close()
    names: set[str] = set()
    for body in _Collector.received:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                names.update(span.name for span in scope_spans.spans)
    assert {"POST /graphql", "query Collected"} <= names, names


# -- logs -------------------------------------------------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the app logs, through the JSON handler `laurel serve` installs."""
    stream = io.StringIO()
    handler = json_handler(stream)
    logger = logging.getLogger("laurel")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


async def test_the_request_id_is_in_the_response_and_in_the_log_line_of_the_request(
    engine: AsyncEngine,
    make_api: ApiFactory,
    log_lines: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAUREL_ACCESS_LOG", "true")  # off by default
    api = await make_api(engine)
    sent = "req-7f3a.1:2/3+4="
    answered = await api.client.post(
        "/graphql", json={"query": "{ program { name } }"}, headers={"x-request-id": sent}
    )
    generated = await api.client.post("/graphql", json={"query": "{ program { name } }"})
    malformed = await api.client.get("/healthz", headers={"x-request-id": "a" * 129})

    assert answered.headers["x-request-id"] == sent
    new_id = generated.headers["x-request-id"]
    assert len(new_id) == 32 and int(new_id, 16) >= 0
    assert malformed.headers["x-request-id"] not in ("a" * 129, new_id)
    lines = _lines(log_lines)
    by_id = {line["request_id"]: line for line in lines if line["logger"] == "laurel.access"}
    assert by_id[sent]["message"] == "POST /graphql 200"
    assert by_id[sent]["level"] == "INFO" and by_id[sent]["duration_ms"] >= 0
    assert by_id[new_id]["message"] == "POST /graphql 200"
    assert by_id[malformed.headers["x-request-id"]]["message"] == "GET /healthz 200"


async def test_refusals_before_the_app_carry_a_request_id_too(api: Api) -> None:
    too_big = await api.client.post(
        "/graphql",
        content=b"{" + b" " * 200_000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert too_big.status_code == 413
    assert len(too_big.headers["x-request-id"]) == 32


async def test_credentials_never_reach_the_logs(
    engine: AsyncEngine,
    make_api: ApiFactory,
    log_lines: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAUREL_ACCESS_LOG", "true")  # its lines too
    api = await make_api(engine)
    admin = await api.key(KeyRole.ADMIN)
    token = await _member_token(api)
    for credential in (token, admin, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.forged", "s3cr3t-v4lue"):
        response = await api.client.post(
            "/graphql",
            json={"query": "{ program { name } }"},
            headers={"authorization": f"Bearer {credential}"},
        )
        assert response.status_code in (200, 401)
    # A line that quotes credentials, whoever writes it, is redacted as a whole.
    log = logging.getLogger("laurel.test")
    try:
        raise RuntimeError(f"refused Authorization: Bearer {token}")
    except RuntimeError:
        log.exception("while checking %s (key %s)", f"Bearer {token}", admin)

    written = log_lines.getvalue()
    assert written.count("\n") >= 5  # the four requests' lines, and the quoted one
    for credential in (token, admin, "eyJhbGciOiJIUzI1NiJ9", "s3cr3t-v4lue"):
        assert credential not in written
    assert REDACTED in written
    quoted = [line for line in _lines(log_lines) if line["logger"] == "laurel.test"]
    assert quoted and "RuntimeError" in quoted[0]["exception"]
