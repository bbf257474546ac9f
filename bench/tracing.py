"""What tracing and the request log cost: CPU per request with tracing off and on, in one run.

    .venv/bin/python -m bench.tracing [--members 50 --requests 2000 --rounds 3]

The whole app in process (`create_app`, production settings, an SQLite file migrated here,
its lifespan running as when served; no sockets; `compare`, which `bench.internet` shares),
the JSON log handler of `laurel serve` at INFO writing to /dev/null. Members
enrolled through the API, then their `Dashboard` query (the bench's read: a few statements,
each a span when tracing is on) and `{ __typename }` (no statement: the tracing's fixed share
as large as it gets), as random members with their tokens, in each configuration:

* `off, no access log`: tracing off and `LAUREL_ACCESS_LOG=false` (what a request cost before
  item 5, plus the request id header);
* `off`: tracing off (the default), one access line per request;
* `on, OTLP-encoded`: tracing on as in production (`BatchSpanProcessor`, whose thread's CPU
  counts too), to an exporter that encodes each batch as the OTLP/HTTP exporter does
  (protobuf) and drops the bytes instead of sending them (one traced app a process: the
  SQLAlchemy instrumentation is process-wide).

Configurations alternate, round after round; the medians per request, and each as a ratio to
`off`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import httpx
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from pydantic import SecretStr

from api.app import create_app
from api.database import prepare_database
from api.logs import json_handler
from api.settings import Settings
from api.tracing import Tracing
from bench.workloads import DASHBOARD_QUERY
from models import KeyRole
from models.engine import create_engine, session_factory
from services import access
from services.clock import SystemClock
from services.program import ensure_program

ENROLL = "mutation($input: EnrollInput!) { enroll(input: $input) { token userErrors { code } } }"
SECRET = "bench-tracing-secret-with-enough-length"


class EncodingExporter(SpanExporter):
    """Encodes spans as the OTLP/HTTP exporter does, and drops the bytes."""

    def __init__(self) -> None:
        self.spans = 0
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bytes += len(encode_spans(spans).SerializeToString())
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


async def cpu_per_request(
    client: httpx.AsyncClient, body: dict[str, Any], tokens: list[str], n: int
) -> float:
    """µs of CPU per request (every thread of the process: the span processor's too)."""
    concurrency = 8

    async def worker(count: int) -> None:
        for _ in range(count):
            token = tokens[random.randrange(len(tokens))]
            response = await client.post(
                "/graphql", json=body, headers={"authorization": f"Bearer {token}"}
            )
            assert response.status_code == 200 and "errors" not in response.json(), response.text

    started = time.process_time()
    await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / (n // concurrency * concurrency) * 1e6


Configurations = dict[str, tuple[dict[str, Any], Tracing | None]]
"""Name -> (Settings overrides, the tracing to give `create_app`, or None)."""


async def compare(
    configs: Configurations, args: argparse.Namespace
) -> dict[str, dict[str, list[float]]]:
    """Each configuration as an app in process (production settings, one SQLite file, the
    JSON log to /dev/null, each app's lifespan running as when served), the same members
    enrolled through the first, and each body in `BODIES` sent as those members: CPU per
    request, configuration after configuration, rotating the order round after round.
    Returns body label -> configuration -> µs of each round."""
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        os.environ.pop(name, None)  # each configuration says for itself
    laurel = logging.getLogger("laurel")
    # (Opening /dev/null blocks nobody.)
    with open(os.devnull, "w") as devnull, tempfile.TemporaryDirectory() as folder:  # noqa: ASYNC230
        handler = json_handler(devnull)
        laurel.addHandler(handler)
        laurel.setLevel(logging.INFO)
        url = f"sqlite+aiosqlite:///{folder}/laurel.db"
        engine = create_engine(url)
        await prepare_database(engine)
        async with session_factory(engine).begin() as session:
            await ensure_program(session)
            admin = await access.create_api_key(
                session, role=KeyRole.ADMIN, name="bench", now=SystemClock().now()
            )
        await engine.dispose()

        clients: dict[str, httpx.AsyncClient] = {}
        lifespans = contextlib.AsyncExitStack()
        try:
            for name, (overrides, tracing) in configs.items():
                settings = Settings(
                    env="production",
                    database_url=url,
                    jwt_secret=SecretStr(SECRET),
                    sweep_interval_seconds=0,
                    webhooks_in_process=False,
                    _env_file=None,  # type: ignore[call-arg]
                    **overrides,
                )
                app = create_app(settings, tracing=tracing)
                # Started as served (the bus subscribed, caches on): with Redis configured
                # the member views cache only while the bus listens.
                await lifespans.enter_async_context(app.router.lifespan_context(app))
                clients[name] = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://bench"
                )
            tokens = await _enrol(next(iter(clients.values())), admin.secret, args.members)
            results: dict[str, dict[str, list[float]]] = {}
            for label, body in BODIES.items():
                rounds: dict[str, list[float]] = {name: [] for name in configs}
                for client in clients.values():  # warm-up: plans, caches, connections
                    await cpu_per_request(client, body, tokens, 200)
                names = list(configs)
                for round_ in range(args.rounds):
                    for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                        rounds[name].append(
                            await cpu_per_request(clients[name], body, tokens, args.requests)
                        )
                results[label] = rounds
            return results
        finally:
            for client in clients.values():
                await client.aclose()
            await lifespans.aclose()  # engines disposed, tracing closed
            laurel.removeHandler(handler)


BODIES: dict[str, dict[str, Any]] = {
    "Dashboard": {"query": DASHBOARD_QUERY},
    "{ __typename }": {"query": "{ __typename }"},
}


async def _enrol(client: httpx.AsyncClient, admin_key: str, members: int) -> list[str]:
    tokens = []
    for i in range(members):
        enrolled = await client.post(
            "/graphql",
            json={
                "query": ENROLL,
                "variables": {"input": {"email": f"b{i}@example.com", "displayName": f"B{i}"}},
            },
            headers={"authorization": f"Bearer {admin_key}"},
        )
        tokens.append(enrolled.json()["data"]["enroll"]["token"])
    return tokens


async def main(args: argparse.Namespace) -> None:
    encoded = EncodingExporter()
    results = await compare(
        {
            "off, no access log": ({"access_log": False, "rate_limits": False}, None),
            "off": ({"rate_limits": False}, None),
            "on, OTLP-encoded": ({"rate_limits": False}, Tracing(encoded, batch=True)),
        },
        args,
    )
    for label, rounds in results.items():
        base = statistics.median(rounds["off"])
        print(f"{label}: CPU per request (median of {args.rounds} rounds), ratio to off")
        for name, figures in rounds.items():
            median = statistics.median(figures)
            print(f"   {name:<20} {median:>7.0f} µs  {median / base:>5.2f}x")
    size = encoded.bytes / max(1, encoded.spans)
    print(f"(OTLP-encoded: {encoded.spans:,} spans, {size:.0f} B each)")


def arguments(doc: str) -> argparse.Namespace:
    """The options `compare` takes (members, requests a round, rounds), from the command line."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(arguments(__doc__)))
