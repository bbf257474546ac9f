"""A database failover under load: PostgreSQL ends every connection of the test database
(`pg_terminate_backend`) while requests come in. No request fails: the API-key lookup, reads,
units of work and the direct purchase path each run once more on a new connection what the
dropped one could not serve, and every purchase and adjustment is credited once."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from models import KeyRole
from schema.ids import encode_id
from services import members
from tests.conftest import PG_URL, Api

PURCHASE = """mutation($input: RecordPurchaseInput!) { recordPurchase(input: $input) {
    transaction { points } userErrors { code message } } }"""
ADJUST = """mutation($input: AdjustPointsInput!) { adjustPoints(input: $input) {
    transaction { points } userErrors { code message } } }"""
MEMBER = "query($id: ID!) { member(id: $id) { displayName balance { available } } }"
ROUNDS, MEMBERS = 4, 8


async def terminate_every_backend() -> int:
    """What a failover does to the test database's connections (this database's only)."""
    admin = await asyncpg.connect(dsn=PG_URL.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        ended: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    return ended


async def test_backends_terminated_under_load_fail_no_request(pg: AsyncEngine, pg_api: Api) -> None:
    api = pg_api
    async with api.sessions.begin() as session:
        ids = [
            encode_id(
                "Member",
                (
                    await members.enroll(
                        session,
                        email=f"m{n}@example.com",
                        display_name=f"M{n}",
                        now=api.clock.now(),
                    )
                ).id,
            )
            for n in range(MEMBERS)
        ]
    # A new key each round: its lookup reaches the database (known keys are cached).
    keys = [await api.key(KeyRole.ADMIN) for _ in range(ROUNDS)]

    async def call(query: str, variables: dict[str, Any], key: str) -> dict[str, Any]:
        response = await api.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        return body

    for round_ in range(ROUNDS):
        # Several pooled connections, then all of them ended by the server.
        await asyncio.gather(*(call(MEMBER, {"id": m}, keys[0]) for m in ids))
        assert await terminate_every_backend() > 0
        key = keys[round_]
        requests = []
        for n, member in enumerate(ids):
            order = {"memberId": member, "orderId": f"o-{round_}-{n}", "amount": 10.0}
            adjustment = {
                "memberId": member,
                "points": 1,
                "reason": "failover",
                "idempotencyKey": f"a-{round_}-{n}",
            }
            requests += [
                call(PURCHASE, {"input": order}, key),
                call(ADJUST, {"input": adjustment}, key),
                call(MEMBER, {"id": member}, key),
            ]
        for body in await asyncio.gather(*requests):
            payload = next(iter(body["data"].values()))
            assert "userErrors" not in payload or payload["userErrors"] == [], payload

    await asyncio.sleep(0.2)  # the test's own pool learns its connections ended
    for member in ids:
        body = await call(MEMBER, {"id": member}, keys[0])
        assert body["data"]["member"]["balance"]["available"] == ROUNDS * (10 + 1)
