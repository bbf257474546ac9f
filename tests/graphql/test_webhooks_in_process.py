"""`laurel serve` delivers webhooks in-process (the default): an endpoint created over the API
hears of a purchase recorded over the API, signed with the secret it was given, and the
delivery shows its attempt in `webhookDeliveries`."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from api.app import create_app
from api.settings import Settings
from models import KeyRole
from models.engine import session_factory
from schema.ids import encode_id
from services import access
from services.clock import SystemClock
from tests.conftest import JWT_SECRET
from tests.services.webhook_rows import add_members
from tests.webhook_receiver import WebhookReceiver

CREATE = """mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) {
    endpoint { id } secret userErrors { code message } } }"""
PURCHASE = """mutation($input: RecordPurchaseInput!) { recordPurchase(input: $input) {
    transaction { points } userErrors { code message } } }"""
DELIVERIES = """{ webhookDeliveries { totalCount edges { node { status nextAttemptAt
    attempts { statusCode latencyMs error } event { id type } } } } }"""


def settings(engine: AsyncEngine, **changes: Any) -> Settings:
    return Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        jwt_secret=SecretStr(JWT_SECRET),
        sweep_interval_seconds=0,
        webhooks_allow_private=True,
        _env_file=None,  # type: ignore[call-arg]
        **changes,
    )


async def test_the_server_delivers_a_purchase_to_an_endpoint_created_over_the_api(
    engine: AsyncEngine,
) -> None:
    sessions = session_factory(engine)
    now = SystemClock().now()
    [ann] = await add_members(sessions, now, 1)
    async with sessions.begin() as session:
        admin = (await access.create_api_key(session, role=KeyRole.ADMIN, name="a", now=now)).secret
        service = (
            await access.create_api_key(session, role=KeyRole.SERVICE, name="s", now=now)
        ).secret
    receiver = await WebhookReceiver().start()
    app = create_app(settings(engine))
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
        ):

            async def gql(query: str, token: str, **variables: Any) -> dict[str, Any]:
                answer = await http.post(
                    "/graphql",
                    json={"query": query, "variables": variables},
                    headers={"authorization": f"Bearer {token}"},
                )
                data: dict[str, Any] = answer.json()["data"]
                return data

            created = (
                await gql(
                    CREATE,
                    admin,
                    input={"url": receiver.url(), "eventTypes": ["POINTS_EARNED"]},
                )
            )["createWebhookEndpoint"]
            assert created["userErrors"] == []
            purchase = {"memberId": encode_id("Member", ann), "orderId": "o-1", "amount": 30}
            earned = (await gql(PURCHASE, service, input=purchase))["recordPurchase"]
            assert earned["userErrors"] == []

            await receiver.wait_for(lambda r: len(r.received) == 1, within=5)
            [got] = receiver.received
            payload = Webhook(created["secret"]).verify(got.body, got.headers)
            assert payload["type"] == "points.earned"
            assert payload["data"]["transaction"]["reference"] == "o-1"

            for _ in range(50):  # the attempt is recorded right after the answer
                listed = (await gql(DELIVERIES, admin))["webhookDeliveries"]
                if listed["edges"][0]["node"]["status"] == "SUCCEEDED":
                    break
                await asyncio.sleep(0.05)
            [edge] = listed["edges"]
            assert edge["node"]["status"] == "SUCCEEDED"
            assert edge["node"]["nextAttemptAt"] is None
            assert edge["node"]["event"] == {"id": got.message_id, "type": "POINTS_EARNED"}
            [tried] = edge["node"]["attempts"]
            assert tried["statusCode"] == 204 and tried["error"] is None
            assert tried["latencyMs"] >= 0
    finally:
        await receiver.stop()
    assert app.state.webhooks is not None


async def test_with_webhooks_out_of_process_the_server_runs_no_worker(
    engine: AsyncEngine,
) -> None:
    app = create_app(settings(engine, webhooks_in_process=False))
    async with app.router.lifespan_context(app):
        assert app.state.webhooks is None
