"""Health, readiness and metrics routes; RS256 member tokens."""

from __future__ import annotations

import gc
from datetime import timedelta

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import GC_THRESHOLDS, create_app
from api.settings import Settings
from models import KeyRole
from models.engine import session_factory
from schema.ids import encode_id
from services.clock import ManualClock
from tests.conftest import Api, ApiFactory
from tests.services.helpers import new_member


def _settings(engine: AsyncEngine, **overrides: object) -> Settings:
    return Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        sweep_interval_seconds=0,
        _env_file=None,  # type: ignore[call-arg]
        **overrides,  # type: ignore[arg-type]
    )


async def test_health_and_readiness_answer(api: Api) -> None:
    assert (await api.client.get("/healthz")).status_code == 200
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "up"}


async def test_readiness_fails_when_configured_redis_is_unreachable(pg: AsyncEngine) -> None:
    # port 9 (discard) on loopback: nothing listens there
    app = create_app(_settings(pg, redis_url="redis://127.0.0.1:9/0"))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "unavailable", "database": "up", "redis": "down"}
    finally:
        await app.state.laurel.engine.dispose()


async def test_metrics_count_operations_by_name(api: Api) -> None:
    await api.client.post("/graphql", json={"query": "query ProgramName { program { name } }"})
    text = (await api.client.get("/metrics")).text
    assert 'laurel_graphql_operations_total{operation="ProgramName",outcome="ok",type="query"}' in (
        text
    )
    assert "laurel_graphql_operation_seconds_bucket" in text


async def test_rs256_member_tokens_are_accepted_with_the_public_key(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    member_id = await new_member(session_factory(pg), clock)
    claims = {
        "sub": encode_id("Member", member_id),
        "exp": int((clock.now() + timedelta(hours=1)).timestamp()),
    }
    token = jwt.encode(claims, key, algorithm="RS256")
    forged = jwt.encode(claims, "not-the-key-but-long-enough-for-hs256", algorithm="HS256")
    app = create_app(
        _settings(pg, jwt_public_key=public_pem, jwt_secret=SecretStr("x" * 40)), clock=clock
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            ok = await client.post(
                "/graphql",
                json={"query": "{ me { id } }"},
                headers={"authorization": f"Bearer {token}"},
            )
            refused = await client.post(
                "/graphql",
                json={"query": "{ me { id } }"},
                headers={"authorization": f"Bearer {forged}"},
            )
        assert ok.json() == {"data": {"me": {"id": encode_id("Member", member_id)}}}
        assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    finally:
        await app.state.laurel.engine.dispose()


async def test_a_tier_created_through_another_process_shows_at_once(
    pg: AsyncEngine, make_api: ApiFactory, clock: ManualClock
) -> None:
    # given two API processes on one database, the second with its catalog cached
    first, second = await make_api(pg), await make_api(pg)
    member_id = await new_member(session_factory(pg), clock)
    assert await second.gql("{ tiers { name } }") == {"data": {"tiers": [{"name": "Member"}]}}

    # when the first creates a tier the member already qualifies for
    admin = await first.key(KeyRole.ADMIN)
    await first.gql(
        'mutation { createTier(input: {name: "Gold", threshold: 1}) { userErrors { code } } }',
        token=admin,
    )
    await first.gql(
        """mutation($id: ID!) { recordPurchase(input: {memberId: $id, orderId: "o", amount: 5})
           { userErrors { code } } }""",
        {"id": encode_id("Member", member_id)},
        token=await first.key(KeyRole.SERVICE),
    )

    # then the second shows the member's new tier, without waiting for its cache to expire
    answer = await second.gql(
        "{ me { tier { name } tierProgress { current { name } } } }",
        token=second.member_token(member_id),
    )
    assert answer == {
        "data": {"me": {"tier": {"name": "Gold"}, "tierProgress": {"current": {"name": "Gold"}}}}
    }


async def test_while_serving_the_collector_runs_at_laurels_thresholds_and_after_as_before(
    pg: AsyncEngine,
) -> None:
    before = gc.get_threshold()
    app = create_app(_settings(pg))
    async with app.router.lifespan_context(app):
        assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_threshold() == before
