"""Revocations across processes: a key revoked on one `laurel serve` process is refused by
another on the very next request, and an erased member's token and live subscriptions end
everywhere, over real HTTP and a real WebSocket (gql)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from gql import Client, gql
from gql.transport.exceptions import TransportClosed, TransportQueryError
from sqlalchemy.ext.asyncio import AsyncEngine

from models import KeyRole
from models.engine import session_factory
from schema.ids import encode_id
from services import access, members
from tests.conftest import JWT_SECRET, _empty
from tests.live.conftest import Server
from tests.live.test_subscriptions import transport

LOOKUP = "query($id: ID!) { member(id: $id) { id status } }"


async def post(server: Server, query: str, token: str, **variables: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as client:
        response = await client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {token}"},
        )
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def credentials(pg: AsyncEngine) -> AsyncIterator[dict[str, Any]]:
    now = datetime.now(UTC)  # the servers run on the real clock
    async with session_factory(pg).begin() as session:
        admin = await access.create_api_key(session, role=KeyRole.ADMIN, name="ops", now=now)
        shop = await access.create_api_key(session, role=KeyRole.SERVICE, name="shop", now=now)
        ann = await members.enroll(session, email="ann@example.com", display_name="Ann", now=now)
    token = access.issue_member_token(
        subject=encode_id("Member", ann.id), secret=JWT_SECRET, now=now
    )
    yield {
        "admin": admin.secret,
        "shop": shop.secret,
        "shop_id": encode_id("ApiKey", shop.key.id),
        "ann": encode_id("Member", ann.id),
        "ann_token": token,
    }
    # The next module's servers read every erasure when they start, and the test database
    # gives ids out again after each test's truncation: leave no erased member behind.
    await _empty(pg)


async def test_a_key_revoked_on_one_process_is_refused_by_another_on_the_next_request(
    two_servers: tuple[Server, Server], credentials: dict[str, Any]
) -> None:
    a, b = two_servers
    # B has looked the key up, and would keep it cached for a while
    for _ in range(3):
        body = await post(b, LOOKUP, credentials["shop"], id=credentials["ann"])
        assert body["data"]["member"]["status"] == "ACTIVE", body
    revoked = await post(
        a,
        "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { apiKey { revokedAt } } }",
        credentials["admin"],
        id=credentials["shop_id"],
    )
    assert revoked["data"]["revokeApiKey"]["apiKey"]["revokedAt"], revoked
    body = await post(b, LOOKUP, credentials["shop"], id=credentials["ann"])
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body


async def test_erasure_on_one_process_ends_the_members_subscription_and_token_on_another(
    two_servers: tuple[Server, Server], credentials: dict[str, Any]
) -> None:
    a, b = two_servers
    subscription = gql("subscription { pointsUpdated { balance { available } } }")
    ended = asyncio.Event()
    received: list[Any] = []

    async def listen() -> None:
        try:
            async with Client(transport=transport(b, credentials["ann_token"])) as session:
                async for result in session.subscribe(subscription):
                    received.append(result)
        except (TransportClosed, TransportQueryError):
            pass
        finally:
            ended.set()

    task = asyncio.create_task(listen())
    try:
        # live once a purchase made on A reaches it
        for n in range(50):
            await post(
                a,
                """mutation($id: ID!, $order: String!) { recordPurchase(input:
                {memberId: $id, orderId: $order, amount: 10}) { userErrors { code } } }""",
                credentials["shop"],
                id=credentials["ann"],
                order=f"probe-{n}",
            )
            await asyncio.sleep(0.2)
            if received:
                break
        assert received, "the subscription never went live"
        erased = await post(
            a,
            "mutation($id: ID!) { eraseMember(input: {memberId: $id}) { userErrors { code } } }",
            credentials["admin"],
            id=credentials["ann"],
        )
        assert erased["data"]["eraseMember"]["userErrors"] == [], erased
        await asyncio.wait_for(ended.wait(), timeout=5)  # B ended it
        body = await post(b, "{ me { id } }", credentials["ann_token"])
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
