"""OpenTelemetry traces, exported over OTLP/HTTP when an endpoint is configured (issue 15, item 5).

Off unless the OpenTelemetry convention says where to send them: `OTEL_EXPORTER_OTLP_ENDPOINT`
or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set (and neither `OTEL_SDK_DISABLED=true` nor
`OTEL_TRACES_EXPORTER=none`). Off, Laurel imports and creates nothing of OpenTelemetry (no
provider, span or instrumentation; redis-py 8 imports the metrics SDK on its own when it is
installed, and uses it only if told to), and a request costs what it cost before (the view
checks one attribute, `tracing is None`).

On, a trace per HTTP request:

* the server span of OpenTelemetry's ASGI middleware (it continues an incoming
  `traceparent`), without its spans per ASGI message;
* under it, one span per GraphQL operation, on the planned fast path and strawberry's path
  alike, named as the semantic conventions say (`query Dashboard`, or `query` without a
  name) once the operation is known, with `graphql.operation.type`/`.name` and the request
  id; the credential check, the rate limit, the persisted document lookup and the operation
  all run under it;
* under that, a span per database statement: asyncpg's instrumentation on PostgreSQL (it sees
  SQLAlchemy's statements and the direct paths' raw asyncpg ones alike, one span each) and
  SQLAlchemy's on SQLite; and a span per Redis command of the app's client.

A span per resolver only where it was slow: every resolver function is timed (two clock reads,
`schema.resolver_timing`) and one that took `slow_resolver_ms` (LAUREL_TRACE_SLOW_RESOLVER_MS,
default 10) or longer gets a span under the operation, `resolve Member.transactions`, with its
path; a span for every field would cost more than the rest of a small operation.

The instrumentation of asyncpg patches its classes for the whole process, so `Tracing.close`
(at shutdown) takes it off again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from api.logs import current_request_id

if TYPE_CHECKING:
    from graphql import GraphQLResolveInfo
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine
    from starlette.middleware import Middleware

__all__ = ["Tracing", "otlp_configured"]

SERVICE_NAME: Final = "laurel"
# The operation span's name until the operation is known (a cached answer, a refusal).
OPERATION_SPAN: Final = "graphql.request"


def otlp_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces over OTLP (the OpenTelemetry variables)."""
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


class Tracing:
    """A tracer provider of this app's own (never installed as the global one), and what
    instruments the app's engine and Redis client with it."""

    def __init__(
        self,
        exporter: SpanExporter | None = None,
        *,
        batch: bool = True,
        slow_resolver_ms: float = 10.0,
    ) -> None:
        """`exporter`: where spans go (default: OTLP over HTTP, configured by the OTEL_*
        variables); `batch`: exported in the background (False: as each span ends, for
        tests); `slow_resolver_ms`: a resolver that takes this long gets a span."""
        self.slow_resolver_ns = int(slow_resolver_ms * 1_000_000)
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        # OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES name the service, else "laurel".
        resource = Resource.create()
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
        self.provider: TracerProvider = TracerProvider(resource=resource)
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(processor)
        self.tracer: Tracer = self.provider.get_tracer("laurel")
        self._current_span = trace.get_current_span
        self._asyncpg: Any = None
        self._sqlalchemy: Any = None

    def instrument(self, engine: AsyncEngine, redis: Redis | None) -> None:
        """Spans for the engine's statements and the Redis client's commands."""
        if engine.dialect.name == "postgresql":
            from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

            instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
            if not instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.instrument(tracer_provider=self.provider)
                self._asyncpg = instrumentor
        else:
            from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

            instrumentor = SQLAlchemyInstrumentor()
            if not instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.instrument(engine=engine.sync_engine, tracer_provider=self.provider)
                self._sqlalchemy = instrumentor
        if redis is not None:
            from opentelemetry.instrumentation.redis import RedisInstrumentor

            RedisInstrumentor.instrument_client(redis, tracer_provider=self.provider)

    def middleware(self) -> Middleware:
        """OpenTelemetry's ASGI middleware: the server span, and the incoming trace context."""
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from starlette.middleware import Middleware

        return Middleware(
            OpenTelemetryMiddleware,
            tracer_provider=self.provider,
            exclude_spans=["receive", "send"],
        )

    def operation(self) -> Any:
        """The span of one GraphQL request, current while it runs (a context manager)."""
        span_attributes: dict[str, str] = {}
        request_id = current_request_id()
        if request_id is not None:
            span_attributes["laurel.request_id"] = request_id
        return self.tracer.start_as_current_span(OPERATION_SPAN, attributes=span_attributes)

    def observe(self, operation: str | None, kind: str, failed: bool, seconds: float) -> None:
        """Names the current operation span once its operation is known (called as each
        operation ends, like the metrics: `schema.compiled.OperationObserver`)."""
        span = self._current_span()
        if not span.is_recording():
            return
        span.update_name(f"{kind} {operation}" if operation else kind)
        span.set_attribute("graphql.operation.type", kind)
        if operation:
            span.set_attribute("graphql.operation.name", operation)
        if failed:
            span.set_attribute("laurel.graphql.errors", True)

    def resolver_ended(
        self, coordinate: str, info: GraphQLResolveInfo[Any], started: int, ended: int
    ) -> None:
        """A span for a resolver call that was slow (`schema.resolver_timing.ResolverObserver`),
        under the current (operation) span, with the times it really took."""
        if ended - started < self.slow_resolver_ns:
            return
        path = ".".join(str(key) for key in info.path.as_list())
        span = self.tracer.start_span(
            f"resolve {coordinate}",
            start_time=started,
            attributes={"graphql.field.coordinate": coordinate, "graphql.field.path": path},
        )
        span.end(end_time=ended)

    def close(self) -> None:
        """Export what is left and take the process-wide instrumentation off."""
        if self._asyncpg is not None:
            self._asyncpg.uninstrument()
            self._asyncpg = None
        if self._sqlalchemy is not None:
            self._sqlalchemy.uninstrument()
            self._sqlalchemy = None
        self.provider.shutdown()
