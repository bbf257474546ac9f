"""Webhook endpoints over HTTP: who may do what, the secret shown once, URLs refused, rotation,
deletion, deliveries and resending; every change audited."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import select

import models
from models import DeliveryStatus, KeyRole
from schema.ids import encode_id, expect_id
from services.webhooks.dispatch import dispatch
from tests.conftest import Api, ApiFactory
from tests.graphql.test_mutations import enroll, graphql_error_code, ok, pk, user_error

ENDPOINT = "id url description eventTypes enabled disabledReason partner { slug } createdAt"
CREATE = f"""mutation($input: CreateWebhookEndpointInput!) {{
    createWebhookEndpoint(input: $input) {{ endpoint {{ {ENDPOINT} }} secret
    userErrors {{ field code message }} }} }}"""
UPDATE = f"""mutation($input: UpdateWebhookEndpointInput!) {{
    updateWebhookEndpoint(input: $input) {{ endpoint {{ {ENDPOINT} }}
    userErrors {{ field code message }} }} }}"""
ROTATE = """mutation($input: RotateWebhookSecretInput!) { rotateWebhookSecret(input: $input) {
    endpoint { id } secret userErrors { field code message } } }"""
DELETE = """mutation($input: DeleteWebhookEndpointInput!) { deleteWebhookEndpoint(input: $input) {
    deletedEndpointId userErrors { field code message } } }"""
RESEND = """mutation($input: ResendWebhookEventInput!) { resendWebhookEvent(input: $input) {
    delivery { id status event { id type payload } endpoint { id } attempts { at } }
    userErrors { field code message } } }"""
ENDPOINTS = f"{{ webhookEndpoints {{ {ENDPOINT} }} }}"
DELIVERIES = """query($endpoint: ID, $status: WebhookDeliveryStatus, $first: Int, $after: String) {
    webhookDeliveries(endpointId: $endpoint, status: $status, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { id status nextAttemptAt attempts { at statusCode latencyMs error }
    event { id type occurredAt payload } endpoint { id url } } } } }"""
PUBLIC = "https://93.184.216.34/hooks/laurel"  # a literal public address: no DNS needed


async def gql(
    api: Api, document: str, variables: dict[str, Any] | None = None, *, token: str
) -> dict[str, Any]:
    return cast(dict[str, Any], await api.gql(document, variables, token=token))


async def create(api: Api, token: str, **input: Any) -> dict[str, Any]:
    return ok(
        await gql(
            api,
            CREATE,
            {"input": {"url": PUBLIC, "eventTypes": ["POINTS_EARNED"], **input}},
            token=token,
        ),
        "createWebhookEndpoint",
    )


async def run_dispatch(api: Api) -> None:
    while True:
        async with api.sessions.begin() as session:
            if await dispatch(session, api.clock.now()) == 0:
                return


async def test_an_admin_creates_an_endpoint_and_sees_its_secret_once(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    made = await create(
        api, admin, description="Klaviyo", eventTypes=["POINTS_EARNED", "TIER_CHANGED"]
    )
    assert made["secret"].startswith("whsec_") and len(made["secret"]) > 30
    endpoint = made["endpoint"]
    assert endpoint["url"] == PUBLIC and endpoint["enabled"] is True
    assert endpoint["eventTypes"] == ["POINTS_EARNED", "TIER_CHANGED"]
    listed = (await gql(api, ENDPOINTS, token=admin))["data"]["webhookEndpoints"]
    assert listed == [endpoint]
    assert made["secret"] not in str(await gql(api, ENDPOINTS, token=admin))
    trail = await gql(
        api,
        "query($t: ID) { auditLog(targetId: $t) { edges { node { operation before after } } } }",
        {"t": endpoint["id"]},
        token=admin,
    )
    (entry,) = trail["data"]["auditLog"]["edges"]
    assert entry["node"]["operation"] == "createWebhookEndpoint"
    assert "secret" not in str(entry) and made["secret"] not in str(entry)


async def test_private_loopback_and_metadata_urls_are_refused(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    for url in (
        "http://127.0.0.1:9000/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[fd00:ec2::254]/",
        "ftp://93.184.216.34/hook",
        "https://user:pw@93.184.216.34/hook",
        "not a url",
    ):
        body = await gql(
            api, CREATE, {"input": {"url": url, "eventTypes": ["POINTS_EARNED"]}}, token=admin
        )
        error = user_error(body, "createWebhookEndpoint")
        assert (error["code"], error["field"]) == ("URL_NOT_ALLOWED", ["input", "url"]), url
    endpoint = (await create(api, admin))["endpoint"]
    body = await gql(
        api, UPDATE, {"input": {"id": endpoint["id"], "url": "https://10.0.0.1/"}}, token=admin
    )
    assert user_error(body, "updateWebhookEndpoint")["code"] == "URL_NOT_ALLOWED"


async def test_plain_http_is_refused_in_production(engine: Any, make_api: ApiFactory) -> None:
    api = await make_api(engine, production=True)
    admin = await api.key(KeyRole.ADMIN)
    body = await gql(
        api,
        CREATE,
        {"input": {"url": "http://93.184.216.34/hook", "eventTypes": ["POINTS_EARNED"]}},
        token=admin,
    )
    assert user_error(body, "createWebhookEndpoint")["code"] == "URL_NOT_ALLOWED"
    assert (await create(api, admin))["endpoint"]["url"] == PUBLIC


async def test_a_partner_manages_its_own_endpoints_for_its_redemptions_only(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    for slug in ("bakery", "other"):
        await gql(
            api,
            """mutation($s: String!) {
            createPartner(input: {name: $s, slug: $s}) { userErrors { code } } }""",
            {"s": slug},
            token=admin,
        )
    bakery = await api.key(KeyRole.PARTNER, partner_slug="bakery")
    other = await api.key(KeyRole.PARTNER, partner_slug="other")
    body = await gql(
        api,
        CREATE,
        {"input": {"url": PUBLIC, "eventTypes": ["REWARD_REDEEMED", "POINTS_EARNED"]}},
        token=bakery,
    )
    error = user_error(body, "createWebhookEndpoint")
    assert (error["code"], error["field"]) == ("FORBIDDEN", ["input", "eventTypes"])
    mine = (await create(api, bakery, eventTypes=["REWARD_REDEEMED", "REDEMPTION_USED"]))[
        "endpoint"
    ]
    assert mine["partner"] == {"slug": "bakery"}
    await create(api, admin)

    assert [
        e["id"] for e in (await gql(api, ENDPOINTS, token=bakery))["data"]["webhookEndpoints"]
    ] == [mine["id"]]
    assert (await gql(api, ENDPOINTS, token=other))["data"]["webhookEndpoints"] == []
    assert len((await gql(api, ENDPOINTS, token=admin))["data"]["webhookEndpoints"]) == 2
    for document, input in (
        (UPDATE, {"id": mine["id"], "enabled": False}),
        (ROTATE, {"id": mine["id"]}),
        (DELETE, {"id": mine["id"]}),
    ):
        body = await gql(api, document, {"input": input}, token=other)
        field = next(iter(body["data"]))
        assert user_error(body, field)["code"] == "NOT_FOUND"
    service = await api.key(KeyRole.SERVICE)
    assert graphql_error_code(await gql(api, ENDPOINTS, token=service)) == "FORBIDDEN"
    member = await enroll(api, service, "ann@example.com")
    token = api.member_token(pk(member["id"]))
    assert graphql_error_code(await gql(api, ENDPOINTS, token=token)) == "FORBIDDEN"


async def test_update_rotate_and_delete(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    made = await create(api, admin)
    endpoint = made["endpoint"]
    updated = ok(
        await gql(
            api,
            UPDATE,
            {
                "input": {
                    "id": endpoint["id"],
                    "eventTypes": ["TIER_CHANGED"],
                    "enabled": False,
                    "description": "CRM",
                }
            },
            token=admin,
        ),
        "updateWebhookEndpoint",
    )["endpoint"]
    assert (updated["eventTypes"], updated["enabled"], updated["description"]) == (
        ["TIER_CHANGED"],
        False,
        "CRM",
    )
    assert updated["url"] == PUBLIC
    rotated = ok(
        await gql(api, ROTATE, {"input": {"id": endpoint["id"]}}, token=admin),
        "rotateWebhookSecret",
    )
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != made["secret"]
    async with api.sessions() as session:
        row = await session.get(
            models.WebhookEndpoint, expect_id(endpoint["id"], "WebhookEndpoint", [])
        )
        assert row is not None
        assert row.previous_secret == made["secret"] and row.secret == rotated["secret"]
        assert row.previous_secret_until is not None
    deleted = ok(
        await gql(api, DELETE, {"input": {"id": endpoint["id"]}}, token=admin),
        "deleteWebhookEndpoint",
    )
    assert deleted["deletedEndpointId"] == endpoint["id"]
    assert (await gql(api, ENDPOINTS, token=admin))["data"]["webhookEndpoints"] == []
    for document in (UPDATE, ROTATE, DELETE):
        body = await gql(api, document, {"input": {"id": endpoint["id"]}}, token=admin)
        assert user_error(body, next(iter(body["data"])))["code"] == "NOT_FOUND"
    body = await gql(api, UPDATE, {"input": {"id": "nonsense"}}, token=admin)
    assert user_error(body, "updateWebhookEndpoint")["code"] == "INVALID"


async def test_deliveries_are_listed_newest_first_and_an_event_can_be_sent_again(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    service = await api.key(KeyRole.SERVICE)
    endpoint = (await create(api, admin, eventTypes=["MEMBER_ENROLLED"]))["endpoint"]
    for n in range(3):
        await enroll(api, service, f"m{n}@example.com")
    await run_dispatch(api)

    page = (await gql(api, DELIVERIES, {"first": 2}, token=admin))["data"]["webhookDeliveries"]
    assert page["totalCount"] == 3 and page["pageInfo"]["hasNextPage"]
    first = page["edges"][0]["node"]
    assert first["status"] == "PENDING" and first["attempts"] == [] and first["nextAttemptAt"]
    assert first["event"]["type"] == "MEMBER_ENROLLED"
    assert first["event"]["payload"]["id"] == first["event"]["id"]
    assert first["event"]["payload"]["data"]["member"]["email"] == "m2@example.com"
    rest = (
        await gql(
            api, DELIVERIES, {"first": 2, "after": page["pageInfo"]["endCursor"]}, token=admin
        )
    )["data"]["webhookDeliveries"]
    assert len(rest["edges"]) == 1
    pending = (await gql(api, DELIVERIES, {"status": "SUCCEEDED"}, token=admin))["data"][
        "webhookDeliveries"
    ]
    assert pending["totalCount"] == 0

    # mark one delivered, then send its event again: a new delivery, the same event id
    async with api.sessions.begin() as session:
        row = await session.scalar(
            select(models.WebhookDelivery).order_by(models.WebhookDelivery.id)
        )
        assert row is not None
        row.status = DeliveryStatus.SUCCEEDED
        event_gid = encode_id("WebhookEvent", row.event_id)
    again = ok(
        await gql(
            api,
            RESEND,
            {"input": {"eventId": event_gid, "endpointId": endpoint["id"]}},
            token=admin,
        ),
        "resendWebhookEvent",
    )["delivery"]
    assert again["status"] == "PENDING" and again["event"]["id"] == event_gid
    body = await gql(
        api,
        RESEND,
        {"input": {"eventId": encode_id("WebhookEvent", 999), "endpointId": endpoint["id"]}},
        token=admin,
    )
    assert user_error(body, "resendWebhookEvent")["code"] == "NOT_FOUND"
    assert (
        graphql_error_code(await gql(api, DELIVERIES, {"endpoint": "nope"}, token=admin))
        == "BAD_USER_INPUT"
    )


async def test_node_finds_running_the_programs_objects_for_admins_only(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    service = await api.key(KeyRole.SERVICE)
    endpoint = (await create(api, admin))["endpoint"]
    document = "query($id: ID!) { node(id: $id) { id ... on WebhookEndpoint { url } } }"
    found = await gql(api, document, {"id": endpoint["id"]}, token=admin)
    assert found["data"]["node"] == {"id": endpoint["id"], "url": PUBLIC}
    assert (await gql(api, document, {"id": endpoint["id"]}, token=service))["data"]["node"] is None
    keys = await gql(api, "{ apiKeys { edges { node { id } } } }", token=admin)
    key_id = keys["data"]["apiKeys"]["edges"][0]["node"]["id"]
    document = "query($id: ID!) { node(id: $id) { ... on ApiKey { name } } }"
    assert (await gql(api, document, {"id": key_id}, token=admin))["data"]["node"]["name"]
