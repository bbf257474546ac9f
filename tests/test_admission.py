"""Admission control: past the bound, requests are refused at once with 503, never queued."""

from __future__ import annotations

import asyncio
import time

import httpx
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from api.admission import Admission
from api.app import create_app
from api.settings import Settings
from services.clock import ManualClock


async def test_200_concurrent_requests_past_a_bound_of_8_are_shed_at_once() -> None:
    gate = asyncio.Event()
    entered = 0
    shed = 0
    arrivals = asyncio.Condition()

    async def slow(_: Request) -> Response:
        nonlocal entered
        async with arrivals:
            entered += 1
            arrivals.notify_all()
        await gate.wait()
        return PlainTextResponse("done")

    async def until_entered(count: int) -> None:
        async with arrivals:
            await arrivals.wait_for(lambda: entered >= count)

    def count_shed() -> None:
        nonlocal shed
        shed += 1

    app = Admission(
        Starlette(routes=[Route("/slow", slow), Route("/healthz", slow)]),
        max_in_flight=8,
        on_shed=count_shed,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        held = [asyncio.create_task(client.get("/slow")) for _ in range(8)]
        await until_entered(8)
        started = time.monotonic()
        refused = await asyncio.gather(*(client.get("/slow") for _ in range(192)))
        took = time.monotonic() - started
        health = asyncio.create_task(client.get("/healthz"))  # never shed, even now
        await until_entered(9)
        gate.set()
        answered = await asyncio.gather(*held, health)
        after = await client.get("/slow")

    assert {r.status_code for r in refused} == {503}
    assert all(r.headers["retry-after"] == "1" for r in refused)
    assert refused[0].json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert took < 2  # answered without waiting for the held ones (they never finish before)
    assert shed == 192
    assert [r.status_code for r in answered] == [200] * 9
    assert after.status_code == 200  # room again once they finished
    assert app.in_flight == 0


async def test_the_app_sheds_graphql_but_not_health_checks(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        jwt_secret=SecretStr("test-secret-with-enough-length-for-hs256"),
        sweep_interval_seconds=0,
        max_in_flight=0,
        _env_file=None,  # type: ignore[call-arg]
    )
    app = create_app(settings, clock=clock)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            graphql = await client.post("/graphql", json={"query": "{ __typename }"})
            health = await client.get("/healthz")
            metrics = await client.get("/metrics")
    finally:
        await app.state.laurel.engine.dispose()
    assert graphql.status_code == 503
    assert health.status_code == 200
    assert "laurel_http_requests_shed_total 1.0" in metrics.text
