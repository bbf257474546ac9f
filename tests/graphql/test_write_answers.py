"""What `recordPurchase` and `redeemReward` answer is what reading the same objects back
gives, field for field: on PostgreSQL their answers are built from the direct paths' rows
(`services/direct`), on SQLite from the ORM's."""

from __future__ import annotations

from typing import Any

from models import KeyRole
from tests.conftest import Api
from tests.graphql.test_rewards_api import call, new_member, new_reward, ok, query

TRANSACTION = """id kind status points description reference createdAt availableAt expiresAt
    breakdown { label points }"""
MEMBER = """id externalId email displayName birthday joinedAt referralCode
    balance { available pending lifetimeEarned redeemed expired }
    tier { id name } tierProgress { qualifyingPoints pointsToNext next { name } }"""
REDEMPTION = """id points status code receiptNumber value createdAt usedAt cancelledAt
    reward { id name }"""

PURCHASE = f"""mutation($input: RecordPurchaseInput!) {{ recordPurchase(input: $input) {{
    transaction {{ {TRANSACTION} }} member {{ {MEMBER} }} userErrors {{ code }} }} }}"""
REDEEM = f"""mutation($input: RedeemRewardInput!) {{ redeemReward(input: $input) {{
    redemption {{ {REDEMPTION} }} member {{ {MEMBER} }} userErrors {{ code }} }} }}"""


def read_back_document(fragment: str) -> str:
    return f"""query($member: ID!, $node: ID!) {{
        member(id: $member) {{ {MEMBER} }} node(id: $node) {{ {fragment} }} }}"""


READ_TRANSACTION = read_back_document(f"... on PointsTransaction {{ {TRANSACTION} }}")
READ_REDEMPTION = read_back_document(f"... on Redemption {{ {REDEMPTION} }}")
CREATE_TIER = """mutation($input: CreateTierInput!) { createTier(input: $input) {
    tier { id } userErrors { code } } }"""


async def read_back(api: Api, document: str, token: str, member_id: str, node_id: str) -> Any:
    return await query(api, document, token, member=member_id, node=node_id)


async def test_a_purchase_answers_what_is_then_read(api: Api) -> None:
    service, admin = await api.key(KeyRole.SERVICE), await api.key(KeyRole.ADMIN)
    ok(await call(api, CREATE_TIER, admin, name="Silver", threshold=50), "createTier")
    ann = await new_member(api, admin, "ann")
    for order, amount in (("o-1", 12.34), ("o-2", 60.0)):  # the second one moves ann up a tier
        payload = ok(
            await call(api, PURCHASE, service, memberId=ann.id, orderId=order, amount=amount),
            "recordPurchase",
        )
        after = await read_back(api, READ_TRANSACTION, admin, ann.id, payload["transaction"]["id"])
        assert payload["transaction"] == after["node"]
        assert payload["member"] == after["member"]
    assert payload["member"]["tier"]["name"] == "Silver"


async def test_a_redemption_answers_what_is_then_read(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    ann = await new_member(api, admin, "ann", points=500)
    for terms in ({"stock": 3, "value": 2.5}, {"kind": "DONATION", "value": 1}):
        reward = await new_reward(api, admin, cost=120, **terms)
        body = await call(api, REDEEM, ann.token, rewardId=reward["id"], idempotencyKey=str(terms))
        payload = ok(body, "redeemReward")
        assert payload["redemption"]["reward"]["id"] == reward["id"]
        after = await read_back(api, READ_REDEMPTION, admin, ann.id, payload["redemption"]["id"])
        assert payload["redemption"] == after["node"]
        assert payload["member"] == after["member"]
