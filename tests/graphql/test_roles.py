"""Who may call what, over HTTP: the role table of the contract ("Who is calling").

Every in-scope query and mutation is tried as each role: the allowed roles get data and no
errors; the others get a GraphQL error with `extensions.code` UNAUTHENTICATED (no usable
credential) or FORBIDDEN (a valid credential of the wrong role), and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select

import models
from models import KeyRole
from schema.ids import encode_id
from services import members
from services.clock import ManualClock
from services.ledger import purchases
from services.program import list_tiers
from tests.conftest import Api

ANONYMOUS, MEMBER, SERVICE, PARTNER, ADMIN = "anonymous", "member", "service", "partner", "admin"
ROLES = (ANONYMOUS, MEMBER, SERVICE, PARTNER, ADMIN)
EVERYONE = frozenset(ROLES)
STAFF = frozenset({SERVICE, ADMIN})


@dataclass(frozen=True)
class World:
    """Two members with a purchase each, and the entry tier."""

    ann: int
    bob: int
    ann_transaction: str
    bob_transaction: str
    entry_tier: str

    @property
    def ann_id(self) -> str:
        return encode_id("Member", self.ann)

    @property
    def bob_id(self) -> str:
        return encode_id("Member", self.bob)


async def build_world(api: Api) -> World:
    now = api.clock.now()
    async with api.sessions.begin() as session:
        ann = await members.enroll(
            session, email="ann@example.com", display_name="Ann", external_id="ext-ann", now=now
        )
        bob = await members.enroll(session, email="bob@example.com", display_name="Bob", now=now)
        entry_tier = (await list_tiers(session))[0].id
    async with api.sessions.begin() as session:
        ann_buys = await purchases.record_purchase(
            session, member_id=ann.id, order_id="order-ann", amount=50, now=now
        )
        bob_buys = await purchases.record_purchase(
            session, member_id=bob.id, order_id="order-bob", amount=30, now=now
        )
    return World(
        ann=ann.id,
        bob=bob.id,
        ann_transaction=encode_id("PointsTransaction", ann_buys.entry.id),
        bob_transaction=encode_id("PointsTransaction", bob_buys.entry.id),
        entry_tier=encode_id("Tier", entry_tier),
    )


async def credential(api: Api, world: World, role: str) -> str | None:
    """A credential of `role`; the member is Ann."""
    if role == ANONYMOUS:
        return None
    if role == MEMBER:
        return api.member_token(world.ann)
    if role == PARTNER:
        return await api.key(KeyRole.PARTNER, partner_slug="acme")
    return await api.key(KeyRole.SERVICE if role == SERVICE else KeyRole.ADMIN)


async def snapshot(api: Api) -> tuple[Any, ...]:
    """What a refused mutation must leave as it was."""
    async with api.sessions() as session:
        counts = [
            await session.scalar(select(func.count()).select_from(table))
            for table in (
                models.Member,
                models.LedgerEntry,
                models.Purchase,
                models.Refund,
                models.Tier,
                models.Promotion,
                models.IdempotencyRecord,
            )
        ]
        program = await session.get(models.Program, models.PROGRAM_ID)
        assert program is not None
        return (*counts, program.name, program.review_points)


@dataclass(frozen=True)
class Operation:
    name: str
    field: str
    document: str
    allowed: frozenset[str]
    variables: Callable[[World], dict[str, object]] = lambda _: {}

    @property
    def is_mutation(self) -> bool:
        return self.document.lstrip().startswith("mutation")


OPERATIONS = [
    Operation("program", "program", "{ program { name currency } }", EVERYONE),
    Operation("promotions", "promotions", "{ promotions { id name } }", EVERYONE),
    Operation("tiers", "tiers", "{ tiers { id rank threshold } }", EVERYONE),
    Operation(
        "previewPurchase",
        "previewPurchase",
        "{ previewPurchase(amount: 12.5) { points breakdown { label points } } }",
        EVERYONE,
    ),
    Operation(
        "previewPurchase(memberId)",
        "previewPurchase",
        "query($id: ID!) { previewPurchase(amount: 12.5, memberId: $id) { points } }",
        frozenset({MEMBER, SERVICE, ADMIN}),
        lambda w: {"id": w.ann_id},
    ),
    Operation(
        "node(tier)",
        "node",
        "query($id: ID!) { node(id: $id) { id ... on Tier { name } } }",
        EVERYONE,
        lambda w: {"id": w.entry_tier},
    ),
    Operation("me", "me", "{ me { id email balance { available } } }", frozenset({MEMBER})),
    Operation(
        "member(id)",
        "member",
        "query($id: ID!) { member(id: $id) { id email } }",
        STAFF,
        lambda w: {"id": w.ann_id},
    ),
    Operation(
        "member(externalId)",
        "member",
        '{ member(externalId: "ext-ann") { id email } }',
        STAFF,
    ),
    Operation(
        "enroll",
        "enroll",
        """mutation { enroll(input: {email: "new@example.com", displayName: "New"}) {
            member { id email } userErrors { code message } } }""",
        frozenset({ANONYMOUS, SERVICE, ADMIN}),
    ),
    Operation(
        "recordPurchase",
        "recordPurchase",
        """mutation($id: ID!) {
            recordPurchase(input: {memberId: $id, orderId: "order-new", amount: 20}) {
                transaction { id points } userErrors { code message } } }""",
        STAFF,
        lambda w: {"id": w.ann_id},
    ),
    Operation(
        "refundPurchase",
        "refundPurchase",
        """mutation { refundPurchase(input: {orderId: "order-ann", refundId: "refund-1"}) {
            transaction { id points } userErrors { code message } } }""",
        STAFF,
    ),
    Operation(
        "recordActivity",
        "recordActivity",
        """mutation($id: ID!) {
            recordActivity(input: {memberId: $id, kind: REVIEW, reference: "review-1"}) {
                transaction { id kind } userErrors { code message } } }""",
        STAFF,
        lambda w: {"id": w.ann_id},
    ),
    Operation(
        "adjustPoints",
        "adjustPoints",
        """mutation($id: ID!) {
            adjustPoints(input: {memberId: $id, points: 10, reason: "goodwill",
                                 idempotencyKey: "adjust-1"}) {
                transaction { id points } userErrors { code message } } }""",
        frozenset({ADMIN}),
        lambda w: {"id": w.ann_id},
    ),
    Operation(
        "updateProgram",
        "updateProgram",
        """mutation { updateProgram(input: {name: "Renamed", reviewPoints: 5}) {
            program { name reviewPoints } userErrors { code message } } }""",
        frozenset({ADMIN}),
    ),
    Operation(
        "createTier",
        "createTier",
        """mutation { createTier(input: {name: "Gold", threshold: 1000, multiplier: 1.5}) {
            tier { id rank } userErrors { code message } } }""",
        frozenset({ADMIN}),
    ),
    Operation(
        "createPromotion",
        "createPromotion",
        """mutation { createPromotion(input: {name: "Double", multiplier: 2,
            startsAt: "2026-01-01T00:00:00Z", endsAt: "2026-02-01T00:00:00Z"}) {
            promotion { id } userErrors { code message } } }""",
        frozenset({ADMIN}),
    ),
]
BY_NAME = {operation.name: operation for operation in OPERATIONS}


def error_code(body: dict[str, Any]) -> str:
    errors = body.get("errors")
    assert errors, f"expected a GraphQL error, got {body}"
    codes = {str(error["extensions"]["code"]) for error in errors}
    assert len(codes) == 1, body
    return codes.pop()


def no_data(body: dict[str, Any], field: str) -> bool:
    """No value for `field`: null data (non-null field) or a null field (nullable one)."""
    data = body.get("data")
    return data is None or data[field] is None


async def check(api: Api, operation: Operation, role: str) -> None:
    """Call `operation` as `role` and check the outcome the role table gives."""
    world = await build_world(api)
    token = await credential(api, world, role)
    before = await snapshot(api)
    body = await api.gql(operation.document, operation.variables(world), token=token)

    if role in operation.allowed:
        assert "errors" not in body, body
        data = body["data"]
        assert isinstance(data, dict)
        result = data[operation.field]
        assert result is not None, body
        if operation.is_mutation:
            assert result["userErrors"] == [], body
        return

    expected = "UNAUTHENTICATED" if role == ANONYMOUS else "FORBIDDEN"
    assert error_code(body) == expected, body
    assert no_data(body, operation.field)
    assert await snapshot(api) == before, "a refused operation wrote something"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda o: o.name)
async def test_each_role_may_call_exactly_what_the_role_table_allows(
    pg_api: Api, operation: Operation, role: str
) -> None:
    await check(pg_api, operation, role)


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("me", MEMBER),
        ("me", ANONYMOUS),
        ("member(id)", MEMBER),
        ("enroll", PARTNER),
        ("recordPurchase", SERVICE),
        ("recordPurchase", PARTNER),
        ("adjustPoints", SERVICE),
        ("updateProgram", ADMIN),
    ],
)
async def test_the_role_table_holds_on_both_backends(api: Api, name: str, role: str) -> None:
    await check(api, BY_NAME[name], role)


ME = "{ me { id } }"
NODE = "query($id: ID!) { node(id: $id) { id } }"


async def test_given_an_expired_member_token_when_asking_for_me_then_unauthenticated(
    api: Api, clock: ManualClock
) -> None:
    world = await build_world(api)
    token = api.member_token(world.ann, ttl=timedelta(minutes=5))
    assert (await api.gql(ME, token=token))["data"] == {"me": {"id": world.ann_id}}

    clock.advance(timedelta(minutes=5, seconds=1))

    body = await api.gql(ME, token=token)
    assert error_code(body) == "UNAUTHENTICATED"
    assert no_data(body, "me")


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-jwt",
        "Bearer ",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl",
        "Bearer lrl_service_deadbeef_not-a-real-key",
        "Basic YWRtaW46YWRtaW4=",
        "garbage",
    ],
)
async def test_given_a_malformed_credential_when_asking_for_me_then_unauthenticated(
    pg_api: Api, authorization: str
) -> None:
    response = await pg_api.client.post(
        "/graphql", json={"query": ME}, headers={"authorization": authorization}
    )
    body = response.json()
    assert error_code(body) == "UNAUTHENTICATED"
    assert no_data(body, "me")


async def test_given_a_token_signed_with_another_secret_then_unauthenticated(
    pg_api: Api,
) -> None:
    world = await build_world(pg_api)
    forged = jwt.encode(
        {"sub": world.ann_id, "exp": int(pg_api.clock.now().timestamp()) + 600},
        "another-secret-of-sufficient-length-for-hs256",
        algorithm="HS256",
    )
    assert error_code(await pg_api.gql(ME, token=forged)) == "UNAUTHENTICATED"


async def test_given_a_member_token_when_reading_another_member_by_node_then_null(
    api: Api,
) -> None:
    world = await build_world(api)
    token = api.member_token(world.ann)

    for other in (world.bob_id, world.bob_transaction):
        body = await api.gql(NODE, {"id": other}, token=token)
        assert body == {"data": {"node": None}}, other
    # The member's own objects are visible to it.
    for own in (world.ann_id, world.ann_transaction):
        body = await api.gql(NODE, {"id": own}, token=token)
        assert body == {"data": {"node": {"id": own}}}, own


@pytest.mark.parametrize(
    ("role", "visible"),
    [(ANONYMOUS, False), (MEMBER, True), (SERVICE, True), (PARTNER, False), (ADMIN, True)],
)
async def test_a_member_and_its_transactions_are_visible_by_node_only_to_itself_and_staff(
    pg_api: Api, role: str, visible: bool
) -> None:
    world = await build_world(pg_api)
    token = await credential(pg_api, world, role)
    for own in (world.ann_id, world.ann_transaction):
        body = await pg_api.gql(NODE, {"id": own}, token=token)
        assert body == {"data": {"node": {"id": own} if visible else None}}, (role, own)


async def test_given_a_member_token_when_previewing_for_another_member_then_forbidden(
    api: Api,
) -> None:
    world = await build_world(api)
    body = await api.gql(
        "query($id: ID!) { previewPurchase(amount: 10, memberId: $id) { points } }",
        {"id": world.bob_id},
        token=api.member_token(world.ann),
    )
    assert error_code(body) == "FORBIDDEN"


async def test_given_a_member_token_when_looking_up_a_member_then_forbidden(api: Api) -> None:
    world = await build_world(api)
    token = api.member_token(world.ann)
    for member_id in (world.ann_id, world.bob_id):
        body = await api.gql(
            "query($id: ID!) { member(id: $id) { id email } }", {"id": member_id}, token=token
        )
        assert error_code(body) == "FORBIDDEN"


ENROLL = """mutation($input: EnrollInput!) {
    enroll(input: $input) { member { id email } token userErrors { code } } }"""


@pytest.mark.parametrize("role", [MEMBER, PARTNER])
async def test_given_a_member_or_partner_when_enrolling_then_forbidden(
    pg_api: Api, role: str
) -> None:
    world = await build_world(pg_api)
    before = await snapshot(pg_api)
    body = await pg_api.gql(
        ENROLL,
        {"input": {"email": "eve@example.com", "displayName": "Eve"}},
        token=await credential(pg_api, world, role),
    )
    assert error_code(body) == "FORBIDDEN"
    assert await snapshot(pg_api) == before


async def test_given_no_credential_when_enrolling_then_the_member_is_created_without_a_token(
    api: Api,
) -> None:
    body = await api.gql(ENROLL, {"input": {"email": "eve@example.com", "displayName": "Eve"}})
    assert "errors" not in body, body
    payload = body["data"]["enroll"]  # type: ignore[index]
    assert payload["userErrors"] == []
    assert payload["member"]["email"] == "eve@example.com"
    assert payload["token"] is None


async def test_given_a_service_key_when_enrolling_then_the_token_returned_signs_in_as_the_member(
    api: Api,
) -> None:
    service = await api.key(KeyRole.SERVICE)
    body = await api.gql(
        ENROLL, {"input": {"email": "eve@example.com", "displayName": "Eve"}}, token=service
    )
    payload = body["data"]["enroll"]  # type: ignore[index]
    assert payload["userErrors"] == [], body
    assert isinstance(payload["token"], str)

    me = await api.gql("{ me { id email } }", token=payload["token"])

    assert me == {"data": {"me": {"id": payload["member"]["id"], "email": "eve@example.com"}}}
