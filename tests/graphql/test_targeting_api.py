"""Targeting over HTTP (on PostgreSQL recordPurchase takes the direct path, on SQLite the
general one): a segment promotion pays and shows only to its members, membership following an
attribute change at the next write; targeted rewards and challenges do not exist for others;
VIP early access; offers, most valuable first; deleteSegment refused while something targets
the segment."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import select

import models
from models import KeyRole
from schema.ids import encode_id
from tests.conftest import Api
from tests.graphql.test_member_admin import UPDATE_MEMBER
from tests.graphql.test_mutations import PREVIEW, PURCHASE, enroll, ok, pk, update_program
from tests.graphql.test_rewards_api import ADJUST, CREATE_TIER, REDEEM

ERRORS = "userErrors { field code message }"
CREATE_SEGMENT = f"""mutation($input: CreateSegmentInput!) {{ createSegment(input: $input) {{
    segment {{ id }} {ERRORS} }} }}"""
CREATE_PROMOTION = f"""mutation($input: CreatePromotionInput!) {{ createPromotion(input: $input) {{
    promotion {{ id name multiplier segment {{ name }} }} {ERRORS} }} }}"""
REWARD = """id name earlyAccessStartsAt earlyAccessTier { name } earlyAccessSegment { name }
    segment { name }"""
CREATE_REWARD = f"""mutation($input: CreateRewardInput!) {{ createReward(input: $input) {{
    reward {{ {REWARD} }} {ERRORS} }} }}"""
CREATE_CHALLENGE = f"""mutation($input: CreateChallengeInput!) {{ createChallenge(input: $input) {{
    challenge {{ id name segment {{ name }} }} {ERRORS} }} }}"""
DELETE_SEGMENT = f"""mutation($input: DeleteSegmentInput!) {{ deleteSegment(input: $input) {{
    deletedSegmentId usedBy {{ __typename id }} {ERRORS} }} }}"""
NODE = "query($id: ID!) { node(id: $id) { id } }"
LISTS = """{ promotions { name } rewards(first: 50) { totalCount edges { node { name } } }
    challenges { name } }"""
OFFERS = """{ me { offers { promotions { name } rewards { name } challenges { name } }
    recommendedRewards(first: 10) { name } } }"""
COFFEE = {"all": [{"attribute": {"key": "club", "equals": "coffee"}}]}


async def gql(
    api: Api, document: str, variables: dict[str, Any] | None = None, *, token: str | None
) -> dict[str, Any]:
    return cast(dict[str, Any], await api.gql(document, variables, token=token))


async def create(api: Api, admin: str, document: str, field: str, **input: Any) -> dict[str, Any]:
    payload = ok(await gql(api, document, {"input": input}, token=admin), field)
    return cast(dict[str, Any], next(v for k, v in payload.items() if k != "userErrors"))


async def buy(api: Api, service: str, member: dict[str, Any], order: str, amount: float) -> int:
    body = await gql(
        api,
        PURCHASE,
        {"input": {"memberId": member["id"], "orderId": order, "amount": amount}},
        token=service,
    )
    return int(ok(body, "recordPurchase")["transaction"]["points"])


async def join_coffee_club(api: Api, admin: str, member: dict[str, Any]) -> None:
    body = await gql(
        api,
        UPDATE_MEMBER,
        {"input": {"id": member["id"], "attributes": {"club": "coffee"}}},
        token=admin,
    )
    ok(body, "updateMember")


async def redeem(api: Api, token: str, reward_id: str, key: str) -> dict[str, Any]:
    body = await gql(
        api, REDEEM, {"input": {"rewardId": reward_id, "idempotencyKey": key}}, token=token
    )
    assert "errors" not in body, body
    return cast(dict[str, Any], body["data"]["redeemReward"])


def window(api: Api) -> dict[str, str]:
    now = api.clock.now()
    return {
        "startsAt": (now - timedelta(hours=1)).isoformat(),
        "endsAt": (now + timedelta(days=7)).isoformat(),
    }


async def test_a_segment_promotion_pays_and_shows_only_to_its_members(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    await update_program(api, admin, pointsPerCurrencyUnit=1, pendingDays=0)
    ann = await enroll(api, service, "ann@example.com")
    bob = await enroll(api, service, "bob@example.com")
    coffee = await create(api, admin, CREATE_SEGMENT, "createSegment", name="Coffee", rule=COFFEE)
    promotion = await create(
        api,
        admin,
        CREATE_PROMOTION,
        "createPromotion",
        name="Coffee x3",
        multiplier=3,
        segmentId=coffee["id"],
        **window(api),
    )
    assert promotion["segment"] == {"name": "Coffee"}

    assert await buy(api, service, ann, "ann-1", 10) == 10  # not in the club yet
    await join_coffee_club(api, admin, ann)
    # Membership is decided at the write: the attribute change counts from the next purchase.
    assert await buy(api, service, ann, "ann-2", 10) == 30
    assert await buy(api, service, bob, "bob-1", 10) == 10

    ann_token, bob_token = api.member_token(pk(ann["id"])), api.member_token(pk(bob["id"]))
    for token, points in ((ann_token, 30), (bob_token, 10)):
        preview = await gql(api, PREVIEW, {"amount": 10}, token=token)
        assert preview["data"]["previewPurchase"]["points"] == points

    seen = {}
    callers: list[tuple[str, str | None]] = [
        ("ann", ann_token),
        ("bob", bob_token),
        ("admin", admin),
        ("anon", None),
    ]
    for who, caller in callers:
        body = await gql(api, "{ promotions { name } }", token=caller)
        seen[who] = [p["name"] for p in body["data"]["promotions"]]
        found = await gql(api, NODE, {"id": promotion["id"]}, token=caller)
        assert (found["data"]["node"] is not None) == (who in ("ann", "admin")), who
    assert seen == {"ann": ["Coffee x3"], "bob": [], "admin": ["Coffee x3"], "anon": []}


async def test_targeted_rewards_and_challenges_do_not_exist_outside_the_segment(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    ann = await enroll(api, service, "ann@example.com")
    bob = await enroll(api, service, "bob@example.com")
    for member in (ann, bob):
        body = await gql(
            api,
            ADJUST,
            {
                "input": {
                    "memberId": member["id"],
                    "points": 500,
                    "reason": "welcome",
                    "idempotencyKey": f"fund-{member['id']}",
                }
            },
            token=admin,
        )
        ok(body, "adjustPoints")
    await join_coffee_club(api, admin, ann)
    coffee = await create(api, admin, CREATE_SEGMENT, "createSegment", name="Coffee", rule=COFFEE)
    common = {"kind": "FREE_PRODUCT", "cost": 50}
    await create(api, admin, CREATE_REWARD, "createReward", name="Mug", **common)
    beans = await create(
        api, admin, CREATE_REWARD, "createReward", name="Beans", segmentId=coffee["id"], **common
    )
    assert beans["segment"] == {"name": "Coffee"}
    await create(
        api,
        admin,
        CREATE_CHALLENGE,
        "createChallenge",
        name="Coffee run",
        metric="PURCHASE_COUNT",
        goal=3,
        rewardPoints=30,
        startsAt=window(api)["startsAt"],
        segmentId=coffee["id"],
    )

    ann_token, bob_token = api.member_token(pk(ann["id"])), api.member_token(pk(bob["id"]))
    views = {}
    for who, token in (("ann", ann_token), ("bob", bob_token), ("admin", admin), ("anon", None)):
        data = (await gql(api, LISTS, token=token))["data"]
        views[who] = (
            sorted(e["node"]["name"] for e in data["rewards"]["edges"]),
            data["rewards"]["totalCount"],
            [c["name"] for c in data["challenges"]],
        )
    assert views["ann"] == views["admin"] == (["Beans", "Mug"], 2, ["Coffee run"])
    assert views["bob"] == views["anon"] == (["Mug"], 1, [])
    found = await gql(api, NODE, {"id": beans["id"]}, token=bob_token)
    assert found["data"]["node"] is None

    refused = await redeem(api, bob_token, beans["id"], "bob-beans")
    assert [e["code"] for e in refused["userErrors"]] == ["NOT_FOUND"]
    assert refused["redemption"] is None
    assert not (await redeem(api, ann_token, beans["id"], "ann-beans"))["userErrors"]

    recommended = await gql(api, OFFERS, token=bob_token)
    assert [r["name"] for r in recommended["data"]["me"]["recommendedRewards"]] == ["Mug"]
    mine = (await gql(api, OFFERS, token=ann_token))["data"]["me"]
    assert sorted(r["name"] for r in mine["recommendedRewards"]) == ["Beans", "Mug"]
    assert mine["offers"]["rewards"] == [{"name": "Beans"}]


async def test_early_access_opens_a_reward_to_gold_members_before_its_public_start(
    api: Api,
) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    await update_program(api, admin, pointsPerCurrencyUnit=1, pendingDays=0)
    gold = ok(
        await gql(api, CREATE_TIER, {"input": {"name": "Gold", "threshold": 100}}, token=admin),
        "createTier",
    )["tier"]
    ann = await enroll(api, service, "ann@example.com")
    bob = await enroll(api, service, "bob@example.com")
    await buy(api, service, ann, "ann-1", 200)  # Gold
    await buy(api, service, bob, "bob-1", 60)  # still the entry tier
    now = api.clock.now()
    reward = await create(
        api,
        admin,
        CREATE_REWARD,
        "createReward",
        name="Preview tasting",
        kind="EXPERIENCE",
        cost=50,
        startsAt=(now + timedelta(days=2)).isoformat(),
        earlyAccessStartsAt=(now - timedelta(hours=1)).isoformat(),
        earlyAccessTierId=gold["id"],
    )
    assert reward["earlyAccessTier"] == {"name": "Gold"}

    ann_token, bob_token = api.member_token(pk(ann["id"])), api.member_token(pk(bob["id"]))
    ann_view = (await gql(api, OFFERS, token=ann_token))["data"]["me"]
    assert [r["name"] for r in ann_view["offers"]["rewards"]] == ["Preview tasting"]
    assert [r["name"] for r in ann_view["recommendedRewards"]] == ["Preview tasting"]
    bob_view = (await gql(api, OFFERS, token=bob_token))["data"]["me"]
    assert bob_view["offers"]["rewards"] == bob_view["recommendedRewards"] == []
    bob_rewards = await gql(api, LISTS, token=bob_token)
    assert bob_rewards["data"]["rewards"]["totalCount"] == 0  # not his yet
    ann_rewards = await gql(api, LISTS, token=ann_token)
    assert ann_rewards["data"]["rewards"]["totalCount"] == 1

    assert not (await redeem(api, ann_token, reward["id"], "ann-early"))["userErrors"]
    refused = await redeem(api, bob_token, reward["id"], "bob-early")
    assert [e["code"] for e in refused["userErrors"]] == ["NOT_ELIGIBLE"]

    api.clock.advance(timedelta(days=2))
    bob_token = api.member_token(pk(bob["id"]))  # the old one has expired
    public = await gql(api, LISTS, token=bob_token)
    assert public["data"]["rewards"]["totalCount"] == 1
    assert not (await redeem(api, bob_token, reward["id"], "bob-public"))["userErrors"]


async def test_bad_targeting_input_is_refused_naming_the_field(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    now = api.clock.now()
    unknown = encode_id("Segment", 987654)
    base = {"name": "Gift", "kind": "FREE_PRODUCT", "cost": 10}
    cases: list[tuple[str, str, dict[str, Any], list[str], str]] = [
        (
            CREATE_REWARD,
            "createReward",
            {**base, "segmentId": unknown},
            ["input", "segmentId"],
            "NOT_FOUND",
        ),
        (
            CREATE_REWARD,
            "createReward",
            {**base, "earlyAccessStartsAt": now.isoformat(), "earlyAccessSegmentId": unknown},
            ["input", "earlyAccessStartsAt"],
            "INVALID",
        ),
        (
            CREATE_REWARD,
            "createReward",
            {
                **base,
                "startsAt": (now + timedelta(days=1)).isoformat(),
                "earlyAccessStartsAt": now.isoformat(),
            },
            ["input", "earlyAccessStartsAt"],
            "INVALID",
        ),
        (
            CREATE_REWARD,
            "createReward",
            {
                **base,
                "startsAt": now.isoformat(),
                "earlyAccessStartsAt": (now + timedelta(days=1)).isoformat(),
                "earlyAccessSegmentId": unknown,
            },
            ["input", "earlyAccessStartsAt"],
            "INVALID",
        ),
        (
            CREATE_PROMOTION,
            "createPromotion",
            {"name": "x2", "multiplier": 2, "segmentId": unknown, **window(api)},
            ["input", "segmentId"],
            "NOT_FOUND",
        ),
    ]
    for document, field, input, path, code in cases:
        body = await gql(api, document, {"input": input}, token=admin)
        errors = body["data"][field]["userErrors"]
        assert [(e["field"], e["code"]) for e in errors] == [(path, code)], input


async def test_offers_come_most_valuable_first_and_delete_segment_lists_what_uses_it(
    api: Api,
) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    ann = await enroll(api, service, "ann@example.com")
    await join_coffee_club(api, admin, ann)
    coffee = await create(api, admin, CREATE_SEGMENT, "createSegment", name="Coffee", rule=COFFEE)
    target = {"segmentId": coffee["id"]}
    used = []
    for name, multiplier in (("x2", 2), ("x4", 4), ("x3", 3)):
        promotion = await create(
            api,
            admin,
            CREATE_PROMOTION,
            "createPromotion",
            name=name,
            multiplier=multiplier,
            **target,
            **window(api),
        )
        used.append(("Promotion", promotion["id"]))
    await create(
        api, admin, CREATE_PROMOTION, "createPromotion", name="all x5", multiplier=5, **window(api)
    )
    for name, value, cost in (("Cup", 5, 10), ("Grinder", 80, 500), ("Sample", None, 20)):
        reward = await create(
            api,
            admin,
            CREATE_REWARD,
            "createReward",
            name=name,
            kind="FREE_PRODUCT",
            cost=cost,
            value=value,
            **target,
        )
        used.append(("Reward", reward["id"]))
    for name, points in (("Small", 10), ("Big", 100)):
        challenge = await create(
            api,
            admin,
            CREATE_CHALLENGE,
            "createChallenge",
            name=name,
            metric="PURCHASE_COUNT",
            goal=2,
            rewardPoints=points,
            startsAt=window(api)["startsAt"],
            **target,
        )
        used.append(("Challenge", challenge["id"]))

    offers = (await gql(api, OFFERS, token=api.member_token(pk(ann["id"]))))["data"]["me"]["offers"]
    assert [p["name"] for p in offers["promotions"]] == [
        "x4",
        "x3",
        "x2",
    ]  # untargeted: not an offer
    assert [r["name"] for r in offers["rewards"]] == ["Grinder", "Cup", "Sample"]
    assert [c["name"] for c in offers["challenges"]] == ["Big", "Small"]

    refused = (await gql(api, DELETE_SEGMENT, {"input": {"id": coffee["id"]}}, token=admin))[
        "data"
    ]["deleteSegment"]
    assert [e["code"] for e in refused["userErrors"]] == ["IN_USE"]
    assert refused["deletedSegmentId"] is None
    assert sorted((u["__typename"], u["id"]) for u in refused["usedBy"]) == sorted(used)


UPDATE_PROMOTION = f"""mutation($input: UpdatePromotionInput!) {{ updatePromotion(input: $input) {{
    promotion {{ name segment {{ name }} }} {ERRORS} }} }}"""
UPDATE_REWARD = f"""mutation($input: UpdateRewardInput!) {{ updateReward(input: $input) {{
    reward {{ name segment {{ name }} }} {ERRORS} }} }}"""


async def test_updates_retarget_and_an_explicit_null_targets_everyone_again(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    await update_program(api, admin, pointsPerCurrencyUnit=1, pendingDays=0)
    bob = await enroll(api, service, "bob@example.com")
    coffee = await create(api, admin, CREATE_SEGMENT, "createSegment", name="Coffee", rule=COFFEE)
    promotion = await create(
        api,
        admin,
        CREATE_PROMOTION,
        "createPromotion",
        name="x2",
        multiplier=2,
        segmentId=coffee["id"],
        **window(api),
    )
    reward = await create(
        api, admin, CREATE_REWARD, "createReward", name="Mug", kind="FREE_PRODUCT", cost=5
    )
    assert await buy(api, service, bob, "bob-1", 10) == 10

    cleared = await gql(
        api, UPDATE_PROMOTION, {"input": {"id": promotion["id"], "segmentId": None}}, token=admin
    )
    assert ok(cleared, "updatePromotion")["promotion"] == {"name": "x2", "segment": None}
    assert await buy(api, service, bob, "bob-2", 10) == 20  # everyone's promotion now

    body = await gql(
        api, UPDATE_REWARD, {"input": {"id": reward["id"], "segmentId": coffee["id"]}}, token=admin
    )
    assert ok(body, "updateReward")["reward"]["segment"] == {"name": "Coffee"}
    listed = await gql(api, LISTS, token=api.member_token(pk(bob["id"])))
    assert listed["data"]["rewards"]["totalCount"] == 0
    unknown = await gql(
        api,
        UPDATE_REWARD,
        {"input": {"id": reward["id"], "segmentId": encode_id("Segment", 987654)}},
        token=admin,
    )
    errors = unknown["data"]["updateReward"]["userErrors"]
    assert [(e["field"], e["code"]) for e in errors] == [(["input", "segmentId"], "NOT_FOUND")]


async def test_concurrent_purchases_each_see_exactly_the_purchases_before_them(
    pg_api: Api,
) -> None:
    """Ten purchases of one member at once, a promotion for members with 3 purchases in the
    last 30 days: whatever the interleaving (direct path, its retries, the general path's
    lock), each purchase is priced with the purchases committed before it."""
    api = pg_api
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    await update_program(api, admin, pointsPerCurrencyUnit=1, pendingDays=0)
    ann = await enroll(api, service, "ann@example.com")
    regulars = {"all": [{"purchaseCount": {"lastDays": 30, "min": 3}}]}
    segment = await create(
        api, admin, CREATE_SEGMENT, "createSegment", name="Regulars", rule=regulars
    )
    await create(
        api,
        admin,
        CREATE_PROMOTION,
        "createPromotion",
        name="Regulars x3",
        multiplier=3,
        segmentId=segment["id"],
        **window(api),
    )
    points = await asyncio.gather(*(buy(api, service, ann, f"o-{n}", 10) for n in range(10)))
    assert sorted(points) == [10, 10, 10] + [30] * 7
    async with api.sessions() as session:
        entries = await session.scalars(
            select(models.LedgerEntry.points)
            .where(models.LedgerEntry.kind == models.EntryKind.PURCHASE)
            .order_by(models.LedgerEntry.id)
        )
        assert list(entries) == [10, 10, 10] + [30] * 7  # in the order they were written
