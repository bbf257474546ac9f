"""The referral welcome over HTTP: set by updateProgram (checked, an explicit null clears the
reward), paid on enrol with another member's referral code, refused with one's own."""

from __future__ import annotations

from typing import Any, cast

from models import KeyRole
from tests.conftest import Api
from tests.graphql.test_mutations import ENROLL, enroll, ok, user_error
from tests.graphql.test_rewards_api import new_reward

SETTINGS = """mutation($input: UpdateProgramInput!) { updateProgram(input: $input) {
    program { referralWelcomePoints referralWelcomeRewardId }
    userErrors { field code message } } }"""
REDEMPTIONS = """query($id: ID!) { member(id: $id) { balance { available }
    redemptions(first: 5) { edges { node { points status reward { id } } } } } }"""


async def gql(
    api: Api, document: str, variables: dict[str, Any] | None = None, *, token: str
) -> dict[str, Any]:
    return cast(dict[str, Any], await api.gql(document, variables, token=token))


async def test_the_welcome_is_set_by_admins_and_paid_to_a_referred_member(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    coffee = await new_reward(api, admin)
    body = await gql(
        api, SETTINGS, {"input": {"referralWelcomeRewardId": "UmV3YXJkOjk5OQ"}}, token=admin
    )
    assert user_error(body, "updateProgram")["code"] == "NOT_FOUND"
    body = await gql(api, SETTINGS, {"input": {"referralWelcomePoints": -1}}, token=admin)
    assert user_error(body, "updateProgram")["field"] == ["input", "referralWelcomePoints"]
    settings = {"referralWelcomePoints": 40, "referralWelcomeRewardId": coffee["id"]}
    program = ok(await gql(api, SETTINGS, {"input": settings}, token=admin), "updateProgram")
    assert program["program"] == settings

    ann = await enroll(api, service, "ann@example.com")
    bob = await enroll(api, service, "bob@example.com", referralCode=ann["referralCode"])
    own = await gql(
        api,
        ENROLL,
        {
            "input": {
                "email": "ann+2@example.com",
                "displayName": "Ann again",
                "referralCode": ann["referralCode"],
            }
        },
        token=service,
    )

    assert bob["balance"]["available"] == 40
    seen = (await gql(api, REDEMPTIONS, {"id": bob["id"]}, token=service))["data"]["member"]
    assert [e["node"] for e in seen["redemptions"]["edges"]] == [
        {"points": 0, "status": "ISSUED", "reward": {"id": coffee["id"]}}
    ]
    assert user_error(own, "enroll")["field"] == ["input", "referralCode"]

    cleared = {"referralWelcomeRewardId": None}
    program = ok(await gql(api, SETTINGS, {"input": cleared}, token=admin), "updateProgram")
    assert program["program"] == {"referralWelcomePoints": 40, "referralWelcomeRewardId": None}
