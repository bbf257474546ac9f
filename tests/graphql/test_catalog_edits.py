"""Editing the catalog over HTTP on the real app: updateTier, deleteTier, updatePromotion,
endPromotion, updateChallenge, endChallenge, updateBadge, updatePartner, deactivatePartner.

Each mutation's effect and its refusals (typed userErrors, nothing written), members moved off
a deleted tier with TierChanged events whose history still reads, and the audit trail of every
admin change of the catalog. Both backends unless a test takes `pg_api` (PostgreSQL only).
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

import models
from models import KeyRole
from schema.ids import decode_id, encode_cursor, encode_id
from services.clock import ManualClock
from tests.conftest import START, Api
from tests.graphql.test_limits_and_errors import WebSocketSession

# -- documents ----------------------------------------------------------------------------

ERRORS = "userErrors { field code message }"
TIER = "id name rank threshold multiplier benefits"
PROMOTION = "id name multiplier startsAt endsAt"
CHALLENGE = "id name description goal rewardPoints startsAt endsAt"
BADGE = "id name description imageUrl"
PARTNER = "id name slug active"


def mutation(field: str, returns: str) -> str:
    input_type = field[0].upper() + field[1:] + "Input"
    return f"""mutation($input: {input_type}!) {{ {field}(input: $input) {{
        {returns} {ERRORS} }} }}"""


CREATE_TIER = mutation("createTier", f"tier {{ {TIER} }}")
UPDATE_TIER = mutation("updateTier", f"tier {{ {TIER} }}")
DELETE_TIER = mutation("deleteTier", "deletedTierId")
CREATE_PROMOTION = mutation("createPromotion", f"promotion {{ {PROMOTION} }}")
UPDATE_PROMOTION = mutation("updatePromotion", f"promotion {{ {PROMOTION} }}")
END_PROMOTION = mutation("endPromotion", f"promotion {{ {PROMOTION} }}")
CREATE_CHALLENGE = mutation("createChallenge", f"challenge {{ {CHALLENGE} }}")
UPDATE_CHALLENGE = mutation("updateChallenge", f"challenge {{ {CHALLENGE} }}")
END_CHALLENGE = mutation("endChallenge", f"challenge {{ {CHALLENGE} }}")
CREATE_BADGE = mutation("createBadge", f"badge {{ {BADGE} }}")
UPDATE_BADGE = mutation("updateBadge", f"badge {{ {BADGE} }}")
CREATE_PARTNER = mutation("createPartner", f"partner {{ {PARTNER} }} apiKey")
UPDATE_PARTNER = mutation("updatePartner", f"partner {{ {PARTNER} }}")
DEACTIVATE_PARTNER = mutation("deactivatePartner", f"partner {{ {PARTNER} }}")
CREATE_REWARD = mutation("createReward", "reward { id name minimumTier { name } }")
UPDATE_REWARD = mutation("updateReward", "reward { id cost }")
UPDATE_PROGRAM = mutation("updateProgram", "program { name reviewPoints }")
ENROLL = mutation("enroll", "member { id } token")
PURCHASE = mutation("recordPurchase", "transaction { points }")
ADJUST = mutation("adjustPoints", "member { id }")
REDEEM = mutation("redeemReward", "redemption { id points }")
MEMBER = "query($id: ID!) { member(id: $id) { tier { name } } }"
TIERS = "{ tiers { name rank threshold } }"
REWARDS = """query($slug: String) { rewards(partnerSlug: $slug) { totalCount
    edges { node { name } } } }"""
PARTNER_VIEW = """query($id: ID!, $from: DateTime!, $to: DateTime!) { node(id: $id) {
    ... on Partner { slug active rewards { totalCount }
        settlement(from: $from, to: $to) { redemptions pointsRedeemed amountOwed } } } }"""
PARTNER_REWARDS = """query($id: ID!) { node(id: $id) {
    ... on Partner { rewards { totalCount } } } }"""
EVENTS = """subscription($after: String) { memberEvents(after: $after) { cursor payload {
    __typename ... on TierChanged { from { id name } to { id name } } } } }"""

_unique = itertools.count(1)
# A refused input and its (code, field).
Case = tuple[dict[str, object], tuple[str, list[str]]]


# -- helpers ------------------------------------------------------------------------------


def ok(body: dict[str, Any], field: str | None = None) -> Any:
    """The payload of a mutation that succeeded (`field`, or the only one asked for)."""
    assert "errors" not in body, body
    payload = body["data"][field] if field else next(iter(body["data"].values()))
    assert payload["userErrors"] == [], payload
    return payload


def refusal(body: dict[str, Any], field: str) -> tuple[str, list[str]]:
    """The code and field of the one userError of a refused mutation (its objects null)."""
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"][field]
    assert len(payload["userErrors"]) == 1, payload
    assert all(value is None for name, value in payload.items() if name != "userErrors"), payload
    error = payload["userErrors"][0]
    return error["code"], error["field"]


def at(**delta: float) -> str:
    return (START + timedelta(**delta)).isoformat()


def pk(global_id: str) -> int:
    decoded = decode_id(global_id)
    assert decoded is not None, global_id
    return decoded[1]


async def call(api: Api, document: str, token: str | None, **input: object) -> dict[str, Any]:
    return await api.gql(document, {"input": input}, token=token)


async def query(api: Api, document: str, token: str | None = None, **variables: object) -> Any:
    body = await api.gql(document, variables, token=token)
    assert "errors" not in body, body
    return body["data"]


async def new_tier(api: Api, admin: str, name: str, threshold: int, **more: object) -> Any:
    body = await call(api, CREATE_TIER, admin, name=name, threshold=threshold, **more)
    return ok(body, "createTier")["tier"]


async def enroll(api: Api, service: str, name: str) -> tuple[str, str]:
    """A new member's id and token."""
    body = await call(api, ENROLL, service, email=f"{name}@example.com", displayName=name)
    payload = ok(body, "enroll")
    return payload["member"]["id"], payload["token"]


async def buy(api: Api, service: str, member_id: str, amount: float) -> int:
    order = f"order-{next(_unique)}"
    body = await call(api, PURCHASE, service, memberId=member_id, orderId=order, amount=amount)
    return int(ok(body, "recordPurchase")["transaction"]["points"])


async def tier_of(api: Api, admin: str, member_id: str) -> str:
    return str((await query(api, MEMBER, admin, id=member_id))["member"]["tier"]["name"])


async def catalog_rows(api: Api) -> tuple[Any, ...]:
    """Everything a catalog edit may write, to compare before and after a refusal."""
    tables: list[Any] = [models.Tier, models.Promotion, models.Challenge, models.Badge]
    tables += [models.Partner, models.ApiKey, models.Member, models.MemberEvent]
    tables += [models.AuditEntry, models.Program]
    async with api.sessions() as session:
        rows = []
        for table in tables:
            found = (await session.execute(select(table.__table__))).all()
            rows.append(sorted(tuple(row) for row in found))
    return tuple(rows)


async def audit_entries(api: Api, operation: str | None = None) -> list[models.AuditEntry]:
    stmt = select(models.AuditEntry).order_by(models.AuditEntry.id)
    if operation is not None:
        stmt = stmt.where(models.AuditEntry.operation == operation)
    async with api.sessions() as session:
        return list(await session.scalars(stmt))


async def tier_events(api: Api, member_id: str) -> list[dict[str, int]]:
    async with api.sessions() as session:
        found = await session.scalars(
            select(models.MemberEvent.data)
            .where(
                models.MemberEvent.member_id == pk(member_id),
                models.MemberEvent.kind == models.EventKind.TIER_CHANGED,
            )
            .order_by(models.MemberEvent.id)
        )
        return list(found)


async def replayed_tier_changes(api: Api, member_id: str, token: str) -> list[tuple[str, str]]:
    """The member's TierChanged events as `memberEvents(after:)` replays them over a
    WebSocket: (from, to) tier names, oldest first."""
    async with api.sessions() as session:
        events = await session.scalars(
            select(models.MemberEvent.id).where(
                models.MemberEvent.member_id == pk(member_id),
                models.MemberEvent.kind.in_(models.LIVE_KINDS),  # what subscriptions carry
            )
        )
        total = len(list(events))
    changes = []
    async with WebSocketSession(api.app, ["graphql-transport-ws"]) as socket:
        assert (await socket.event())["type"] == "websocket.accept"
        await socket.send(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        )
        assert (await socket.receive())["type"] == "connection_ack"
        payload = {"query": EVENTS, "variables": {"after": encode_cursor(0)}}
        await socket.send({"id": "1", "type": "subscribe", "payload": payload})
        for _ in range(total):
            message = await socket.receive()
            assert message["type"] == "next", message
            assert "errors" not in message["payload"], message
            event = message["payload"]["data"]["memberEvents"]["payload"]
            if event["__typename"] == "TierChanged":
                changes.append((event["from"]["name"], event["to"]["name"]))
    return changes


# -- updateTier -----------------------------------------------------------------------------


async def test_update_tier_changes_only_the_given_fields_and_a_new_threshold_moves_members(
    api: Api,
) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    gold = await new_tier(api, admin, "Gold", 300, multiplier=1.5, benefits=["Gift"])
    ann, _ = await enroll(api, service, "ann")
    await buy(api, service, ann, 200)
    assert await tier_of(api, admin, ann) == "Member"

    lowered = ok(await call(api, UPDATE_TIER, admin, id=gold["id"], threshold=150), "updateTier")

    assert lowered["tier"] == {**gold, "threshold": 150}
    assert await tier_of(api, admin, ann) == "Gold"
    entry = (await query(api, "{ tiers { id } }"))["tiers"][0]["id"]
    assert await tier_events(api, ann) == [{"from": pk(entry), "to": pk(gold["id"])}]

    renamed = ok(
        await call(
            api, UPDATE_TIER, admin, id=gold["id"], name="Golden", multiplier=2, benefits=[]
        ),
        "updateTier",
    )["tier"]

    assert renamed == {
        **gold,
        "name": "Golden",
        "threshold": 150,
        "multiplier": 2.0,
        "benefits": [],
    }
    assert await buy(api, service, ann, 10) == 20  # the new multiplier earns at once
    entry_again = ok(
        await call(api, UPDATE_TIER, admin, id=entry, name="Base", threshold=0), "updateTier"
    )["tier"]
    assert (entry_again["name"], entry_again["threshold"], entry_again["rank"]) == ("Base", 0, 0)


async def test_update_tier_refusals_are_typed_and_write_nothing(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    entry = (await query(api, "{ tiers { id } }"))["tiers"][0]["id"]
    gold = (await new_tier(api, admin, "Gold", 300))["id"]
    await new_tier(api, admin, "Silver", 100)
    retired = (await new_tier(api, admin, "Bronze", 50))["id"]
    ok(await call(api, DELETE_TIER, admin, id=retired), "deleteTier")
    before = await catalog_rows(api)

    cases: list[tuple[dict[str, object], str, list[str]]] = [
        ({"id": encode_id("Tier", 999)}, "NOT_FOUND", ["input", "id"]),
        ({"id": "not-an-id", "name": "X"}, "INVALID", ["input", "id"]),
        ({"id": encode_id("Reward", 1), "name": "X"}, "INVALID", ["input", "id"]),
        ({"id": retired, "name": "Back"}, "NOT_FOUND", ["input", "id"]),
        ({"id": gold, "name": "Silver"}, "ALREADY_EXISTS", ["input", "name"]),
        ({"id": gold, "threshold": 100}, "ALREADY_EXISTS", ["input", "threshold"]),
        ({"id": entry, "threshold": 10}, "INVALID", ["input", "threshold"]),
        ({"id": gold, "threshold": 0}, "INVALID", ["input", "threshold"]),
        ({"id": gold, "threshold": -1}, "INVALID", ["input", "threshold"]),
        ({"id": gold, "multiplier": 0}, "INVALID", ["input", "multiplier"]),
        ({"id": gold, "name": "  "}, "INVALID", ["input", "name"]),
        ({"id": gold, "name": None}, "INVALID", ["input", "name"]),
        ({"id": gold, "benefits": ["x"] * 51}, "INVALID", ["input", "benefits"]),
        ({"id": gold, "name": "Platinum", "multiplier": 1000}, "INVALID", ["input", "multiplier"]),
    ]
    for given, code, field in cases:
        assert refusal(await call(api, UPDATE_TIER, admin, **given), "updateTier") == (
            code,
            field,
        ), given

    assert await catalog_rows(api) == before


async def test_a_retired_tiers_name_and_threshold_are_free_again(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    gold = (await new_tier(api, admin, "Gold", 300))["id"]
    silver = (await new_tier(api, admin, "Silver", 100))["id"]
    ok(await call(api, DELETE_TIER, admin, id=gold), "deleteTier")

    moved = ok(await call(api, UPDATE_TIER, admin, id=silver, name="Gold", threshold=300))
    again = await new_tier(api, admin, "Silver", 100)

    assert moved["tier"]["name"] == "Gold"
    assert again["rank"] == 1
    assert (await query(api, TIERS))["tiers"] == [
        {"name": "Member", "rank": 0, "threshold": 0},
        {"name": "Silver", "rank": 1, "threshold": 100},
        {"name": "Gold", "rank": 2, "threshold": 300},
    ]


async def test_two_admins_editing_different_fields_of_one_tier_at_once_both_win(
    pg_api: Api,
) -> None:
    admin = await pg_api.key(KeyRole.ADMIN)
    gold = (await new_tier(pg_api, admin, "Gold", 300))["id"]
    edits: list[dict[str, object]] = [
        {"name": "Golden"},
        {"multiplier": 2.5},
        {"benefits": ["Lounge"]},
        {"threshold": 250},
    ]

    bodies = await asyncio.gather(
        *(call(pg_api, UPDATE_TIER, admin, id=gold, **edit) for edit in edits)
    )

    for body in bodies:
        ok(body, "updateTier")
    tier = (await query(pg_api, "{ tiers { name threshold multiplier benefits } }"))["tiers"][1]
    assert tier == {"name": "Golden", "threshold": 250, "multiplier": 2.5, "benefits": ["Lounge"]}
    # Serialized by the row lock: each entry saw the others' committed changes, so each names
    # only its own field, with the value the tier had before it.
    entries = await audit_entries(pg_api, "updateTier")
    changes = {next(iter(e.after or {})): (e.before, e.after) for e in entries}
    assert changes == {
        "name": ({"name": "Gold"}, {"name": "Golden"}),
        "multiplier": ({"multiplier": 1.0}, {"multiplier": 2.5}),
        "benefits": ({"benefits": []}, {"benefits": ["Lounge"]}),
        "threshold": ({"threshold": 300}, {"threshold": 250}),
    }


# -- deleteTier -------------------------------------------------------------------------------


async def test_deleting_a_tier_moves_its_members_with_tier_changed_events_and_history_reads(
    api: Api,
) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    silver = await new_tier(api, admin, "Silver", 100)
    gold = await new_tier(api, admin, "Gold", 300)
    ann, ann_token = await enroll(api, service, "ann")
    bob, _ = await enroll(api, service, "bob")
    await buy(api, service, ann, 350)
    await buy(api, service, bob, 150)

    body = await call(api, DELETE_TIER, admin, id=gold["id"])

    assert ok(body, "deleteTier")["deletedTierId"] == gold["id"]
    assert (await tier_of(api, admin, ann), await tier_of(api, admin, bob)) == ("Silver", "Silver")
    assert (await tier_events(api, ann))[-1] == {"from": pk(gold["id"]), "to": pk(silver["id"])}
    assert len(await tier_events(api, bob)) == 1  # Member -> Silver at its purchase only
    assert [t["name"] for t in (await query(api, TIERS))["tiers"]] == ["Member", "Silver"]
    assert await replayed_tier_changes(api, ann, ann_token) == [
        ("Member", "Gold"),  # the retired tier, still named by history
        ("Gold", "Silver"),
    ]


async def test_delete_tier_refuses_the_entry_tier_the_only_tier_and_unknown_ones(
    api: Api,
) -> None:
    admin = await api.key(KeyRole.ADMIN)
    entry = (await query(api, "{ tiers { id } }"))["tiers"][0]["id"]
    # The entry tier is the program's only tier.
    assert refusal(await call(api, DELETE_TIER, admin, id=entry), "deleteTier") == (
        "INVALID",
        ["input", "id"],
    )
    retired = (await new_tier(api, admin, "Gold", 300))["id"]
    ok(await call(api, DELETE_TIER, admin, id=retired), "deleteTier")
    await new_tier(api, admin, "Silver", 100)
    before = await catalog_rows(api)

    for given, expected in [
        (entry, ("INVALID", ["input", "id"])),
        (retired, ("NOT_FOUND", ["input", "id"])),
        (encode_id("Tier", 999), ("NOT_FOUND", ["input", "id"])),
        ("%%%", ("INVALID", ["input", "id"])),
    ]:
        assert refusal(await call(api, DELETE_TIER, admin, id=given), "deleteTier") == expected

    assert await catalog_rows(api) == before


async def test_a_reward_whose_minimum_tier_was_deleted_keeps_that_tiers_threshold_as_its_bar(
    api: Api,
) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    await new_tier(api, admin, "Silver", 100)
    gold = await new_tier(api, admin, "Gold", 300)
    await new_tier(api, admin, "Platinum", 500)
    reward = ok(
        await call(
            api,
            CREATE_REWARD,
            admin,
            name="Lounge",
            kind="EXPERIENCE",
            cost=10,
            minimumTierId=gold["id"],
        ),
        "createReward",
    )["reward"]
    silver_member, silver_token = await enroll(api, service, "sam")
    platinum_member, platinum_token = await enroll(api, service, "pat")
    await buy(api, service, silver_member, 150)
    await buy(api, service, platinum_member, 600)

    ok(await call(api, DELETE_TIER, admin, id=gold["id"]), "deleteTier")

    node = "query($id: ID!) { node(id: $id) { ... on Reward { minimumTier { name } } } }"
    assert (await query(api, node, id=reward["id"]))["node"]["minimumTier"] == {"name": "Gold"}
    refused = await call(api, REDEEM, silver_token, rewardId=reward["id"], idempotencyKey="k1")
    assert refusal(refused, "redeemReward")[0] == "NOT_ELIGIBLE"
    redeemed = await call(api, REDEEM, platinum_token, rewardId=reward["id"], idempotencyKey="k2")
    assert ok(redeemed, "redeemReward")["redemption"]["points"] == 10
    # A retired tier is no bar for a new reward.
    new = await call(
        api,
        CREATE_REWARD,
        admin,
        name="Late",
        kind="EXPERIENCE",
        cost=1,
        minimumTierId=gold["id"],
    )
    assert refusal(new, "createReward") == ("NOT_FOUND", ["input", "minimumTierId"])


# -- promotions -------------------------------------------------------------------------------


async def new_promotion(api: Api, admin: str, **terms: object) -> Any:
    terms = {
        "name": f"Promotion {next(_unique)}",
        "multiplier": 2,
        "startsAt": at(hours=-1),
        "endsAt": at(days=2),
        **terms,
    }
    return ok(await call(api, CREATE_PROMOTION, admin, **terms), "createPromotion")["promotion"]


async def test_update_promotion_changes_only_the_given_fields_for_later_purchases(
    api: Api,
) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    promotion = await new_promotion(api, admin, name="Double")
    ann, _ = await enroll(api, service, "ann")
    assert await buy(api, service, ann, 10) == 20

    body = await call(api, UPDATE_PROMOTION, admin, id=promotion["id"], multiplier=3)

    assert ok(body, "updatePromotion")["promotion"] == {**promotion, "multiplier": 3.0}
    assert await buy(api, service, ann, 10) == 30
    later = await call(api, UPDATE_PROMOTION, admin, id=promotion["id"], endsAt=at(days=9))
    assert ok(later, "updatePromotion")["promotion"]["endsAt"] == at(days=9)


async def test_update_promotion_refusals_are_typed_and_write_nothing(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    promotion = (await new_promotion(api, admin))["id"]
    before = await catalog_rows(api)

    for given, expected in [
        ({"id": encode_id("Promotion", 999)}, ("NOT_FOUND", ["input", "id"])),
        ({"id": "??", "name": "x"}, ("INVALID", ["input", "id"])),
        ({"id": promotion, "endsAt": at(hours=-2)}, ("INVALID", ["input", "endsAt"])),
        ({"id": promotion, "startsAt": at(days=5)}, ("INVALID", ["input", "endsAt"])),
        ({"id": promotion, "multiplier": 0}, ("INVALID", ["input", "multiplier"])),
        ({"id": promotion, "multiplier": None}, ("INVALID", ["input", "multiplier"])),
        ({"id": promotion, "startsAt": None}, ("INVALID", ["input", "startsAt"])),
        ({"id": promotion, "name": ""}, ("INVALID", ["input", "name"])),
    ]:
        body = await call(api, UPDATE_PROMOTION, admin, **given)
        assert refusal(body, "updatePromotion") == expected, given

    assert await catalog_rows(api) == before


async def test_end_promotion_stops_its_multiplier_for_later_purchases_and_ends_once(
    api: Api, clock: ManualClock
) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    running = await new_promotion(api, admin, name="Double")
    upcoming = await new_promotion(api, admin, name="Later", startsAt=at(days=1))
    ann, _ = await enroll(api, service, "ann")
    assert await buy(api, service, ann, 10) == 20
    clock.advance(timedelta(minutes=5))

    ended = ok(await call(api, END_PROMOTION, admin, id=running["id"]), "endPromotion")
    never = ok(await call(api, END_PROMOTION, admin, id=upcoming["id"]), "endPromotion")

    now = clock.now().isoformat()
    assert ended["promotion"] == {**running, "endsAt": now}
    assert (never["promotion"]["startsAt"], never["promotion"]["endsAt"]) == (now, now)
    assert (await query(api, "{ promotions { id } }"))["promotions"] == []
    assert await buy(api, service, ann, 10) == 10
    clock.advance(timedelta(days=2))
    assert await buy(api, service, ann, 10) == 10  # the upcoming one never runs
    again = ok(await call(api, END_PROMOTION, admin, id=running["id"]), "endPromotion")
    assert again["promotion"]["endsAt"] == now  # already ended: left as it is
    unknown = await call(api, END_PROMOTION, admin, id=encode_id("Promotion", 999))
    assert refusal(unknown, "endPromotion") == ("NOT_FOUND", ["input", "id"])


# -- challenges and badges --------------------------------------------------------------------


async def new_challenge(api: Api, admin: str, **terms: object) -> Any:
    terms = {
        "name": f"Challenge {next(_unique)}",
        "metric": "PURCHASE_COUNT",
        "goal": 2,
        "rewardPoints": 50,
        "startsAt": at(days=-1),
        **terms,
    }
    return ok(await call(api, CREATE_CHALLENGE, admin, **terms), "createChallenge")["challenge"]


async def test_a_challenges_goal_changes_until_a_member_has_progress_then_is_refused(
    api: Api,
) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    challenge = await new_challenge(api, admin, goal=2)
    ann, _ = await enroll(api, service, "ann")

    raised = ok(await call(api, UPDATE_CHALLENGE, admin, id=challenge["id"], goal=3))
    await buy(api, service, ann, 10)
    before = await catalog_rows(api)
    refused = await call(api, UPDATE_CHALLENGE, admin, id=challenge["id"], goal=5)

    assert raised["challenge"]["goal"] == 3
    assert refusal(refused, "updateChallenge") == ("INVALID", ["input", "goal"])
    assert await catalog_rows(api) == before
    same_goal = await call(api, UPDATE_CHALLENGE, admin, id=challenge["id"], goal=3, name="Three")
    assert ok(same_goal, "updateChallenge")["challenge"]["name"] == "Three"


async def test_update_challenge_changes_the_safe_fields_and_refuses_the_rest(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    started = await new_challenge(api, admin)
    upcoming = await new_challenge(api, admin, startsAt=at(days=3), endsAt=at(days=10))
    ann, _ = await enroll(api, service, "ann")
    await buy(api, service, ann, 10)

    edited = ok(
        await call(
            api,
            UPDATE_CHALLENGE,
            admin,
            id=started["id"],
            name="Renamed",
            description="Two orders",
            rewardPoints=80,
            endsAt=at(days=30),
        ),
        "updateChallenge",
    )["challenge"]
    open_ended = ok(await call(api, UPDATE_CHALLENGE, admin, id=started["id"], endsAt=None), "")[
        "challenge"
    ]
    moved = ok(
        await call(api, UPDATE_CHALLENGE, admin, id=upcoming["id"], startsAt=at(days=1), goal=9),
        "updateChallenge",
    )["challenge"]

    assert edited == {
        **started,
        "name": "Renamed",
        "description": "Two orders",
        "rewardPoints": 80,
        "endsAt": at(days=30),
    }
    assert open_ended["endsAt"] is None
    assert (moved["startsAt"], moved["goal"]) == (at(days=1), 9)
    before = await catalog_rows(api)
    for given, expected in [
        ({"id": started["id"], "startsAt": at(hours=-1)}, ("INVALID", ["input", "startsAt"])),
        ({"id": started["id"], "endsAt": at(hours=-1)}, ("INVALID", ["input", "endsAt"])),
        ({"id": upcoming["id"], "endsAt": at(hours=12)}, ("INVALID", ["input", "endsAt"])),
        ({"id": started["id"], "goal": 0}, ("INVALID", ["input", "goal"])),
        ({"id": started["id"], "rewardPoints": -1}, ("INVALID", ["input", "rewardPoints"])),
        ({"id": started["id"], "name": None}, ("INVALID", ["input", "name"])),
        ({"id": started["id"], "description": "x" * 1001}, ("INVALID", ["input", "description"])),
        ({"id": encode_id("Challenge", 999)}, ("NOT_FOUND", ["input", "id"])),
        ({"id": encode_id("Badge", 1)}, ("INVALID", ["input", "id"])),
    ]:
        body = await call(api, UPDATE_CHALLENGE, admin, **given)
        assert refusal(body, "updateChallenge") == expected, given
    assert await catalog_rows(api) == before


async def test_end_challenge_ends_it_now_and_keeps_progress_and_completions(
    api: Api, clock: ManualClock
) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    challenge = await new_challenge(api, admin, goal=1, rewardPoints=25)
    ann, ann_token = await enroll(api, service, "ann")
    await buy(api, service, ann, 10)  # completes it
    clock.advance(timedelta(hours=1))

    ended = ok(await call(api, END_CHALLENGE, admin, id=challenge["id"]), "endChallenge")

    now = clock.now().isoformat()
    assert ended["challenge"] == {**challenge, "endsAt": now}
    assert (await query(api, "{ challenges { id } }"))["challenges"] == []
    mine = "{ me { challenges { challenge { id } progress completedAt } } }"
    (progress,) = (await query(api, mine, ann_token))["me"]["challenges"]
    assert (progress["challenge"]["id"], progress["progress"]) == (challenge["id"], 1)
    assert progress["completedAt"] == at()
    clock.advance(timedelta(hours=1))
    again = ok(await call(api, END_CHALLENGE, admin, id=challenge["id"]), "endChallenge")
    assert again["challenge"]["endsAt"] == now
    unknown = await call(api, END_CHALLENGE, admin, id=encode_id("Challenge", 999))
    assert refusal(unknown, "endChallenge") == ("NOT_FOUND", ["input", "id"])


async def test_update_badge_changes_only_the_given_fields_and_refuses_bad_ones(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    terms = {"name": "Regular", "description": "Ten orders", "imageUrl": "https://x.test/r.png"}
    badge = ok(await call(api, CREATE_BADGE, admin, **terms), "createBadge")["badge"]
    ok(await call(api, CREATE_BADGE, admin, name="Taken"), "createBadge")

    renamed = ok(await call(api, UPDATE_BADGE, admin, id=badge["id"], name="Loyal"))
    cleared = ok(await call(api, UPDATE_BADGE, admin, id=badge["id"], imageUrl=None))

    assert renamed["badge"] == {**badge, "name": "Loyal"}
    assert cleared["badge"] == {**badge, "name": "Loyal", "imageUrl": None}
    before = await catalog_rows(api)
    cases: list[Case] = [
        ({"name": "Taken"}, ("ALREADY_EXISTS", ["input", "name"])),
        ({"imageUrl": "ftp://x.test/a.png"}, ("INVALID", ["input", "imageUrl"])),
        ({"name": None}, ("INVALID", ["input", "name"])),
        ({"description": None}, ("INVALID", ["input", "description"])),
    ]
    for given, expected in cases:
        body = await call(api, UPDATE_BADGE, admin, id=badge["id"], **given)
        assert refusal(body, "updateBadge") == expected, given
    unknown = await call(api, UPDATE_BADGE, admin, id=encode_id("Badge", 999), name="X")
    assert refusal(unknown, "updateBadge") == ("NOT_FOUND", ["input", "id"])
    assert await catalog_rows(api) == before


# -- partners ---------------------------------------------------------------------------------


async def new_partner(api: Api, admin: str, slug: str) -> tuple[Any, str]:
    body = await call(api, CREATE_PARTNER, admin, name=slug.title(), slug=slug)
    payload = ok(body, "createPartner")
    return payload["partner"], payload["apiKey"]


async def test_update_partner_renames_and_a_new_slug_moves_its_keys(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    bakery, key = await new_partner(api, admin, "bakery")
    await new_partner(api, admin, "florist")
    assert (await query(api, "{ partner { slug } }", key))["partner"] == {"slug": "bakery"}

    body = await call(api, UPDATE_PARTNER, admin, id=bakery["id"], slug=" Bread-Co ", name="Bread")

    assert ok(body, "updatePartner")["partner"] == {
        **bakery,
        "name": "Bread",
        "slug": "bread-co",
    }
    assert (await query(api, "{ partner { slug } }", key))["partner"] == {"slug": "bread-co"}
    async with api.sessions() as session:
        slugs = set(await session.scalars(select(models.ApiKey.partner_slug)))
    assert slugs == {None, "bread-co", "florist"}
    before = await catalog_rows(api)
    cases: list[Case] = [
        ({"slug": "florist"}, ("ALREADY_EXISTS", ["input", "slug"])),
        ({"slug": "Not a slug!"}, ("INVALID", ["input", "slug"])),
        ({"slug": None}, ("INVALID", ["input", "slug"])),
        ({"name": " "}, ("INVALID", ["input", "name"])),
    ]
    for given, expected in cases:
        body = await call(api, UPDATE_PARTNER, admin, id=bakery["id"], **given)
        assert refusal(body, "updatePartner") == expected, given
    unknown = await call(api, UPDATE_PARTNER, admin, id=encode_id("Partner", 999), name="X")
    assert refusal(unknown, "updatePartner") == ("NOT_FOUND", ["input", "id"])
    assert await catalog_rows(api) == before


async def test_a_deactivated_partners_rewards_leave_the_catalog_and_redeem_as_not_found(
    api: Api,
) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    bakery, _ = await new_partner(api, admin, "bakery")
    croissant = ok(
        await call(
            api,
            CREATE_REWARD,
            admin,
            name="Croissant",
            kind="FREE_PRODUCT",
            cost=10,
            partnerId=bakery["id"],
            settlementAmount=1.5,
        ),
        "createReward",
    )["reward"]
    ok(await call(api, CREATE_REWARD, admin, name="Mug", kind="FREE_PRODUCT", cost=10))
    ann, ann_token = await enroll(api, service, "ann")
    await buy(api, service, ann, 100)
    first = await call(api, REDEEM, ann_token, rewardId=croissant["id"], idempotencyKey="k1")
    ok(first, "redeemReward")

    body = await call(api, DEACTIVATE_PARTNER, admin, id=bakery["id"])

    assert ok(body, "deactivatePartner")["partner"] == {**bakery, "active": False}
    listed = await query(api, REWARDS)
    assert [e["node"]["name"] for e in listed["rewards"]["edges"]] == ["Mug"]
    assert listed["rewards"]["totalCount"] == 1
    assert (await query(api, REWARDS, slug="bakery"))["rewards"]["totalCount"] == 0
    recommended = "{ me { recommendedRewards { name } } }"
    assert (await query(api, recommended, ann_token))["me"]["recommendedRewards"] == [
        {"name": "Mug"}
    ]
    again = await call(api, REDEEM, ann_token, rewardId=croissant["id"], idempotencyKey="k2")
    assert refusal(again, "redeemReward") == ("NOT_FOUND", ["input", "rewardId"])
    window = {"id": bakery["id"], "from": at(days=-1), "to": at(days=1)}
    seen = (await query(api, PARTNER_VIEW, admin, **window))["node"]
    assert seen["active"] is False
    assert seen["settlement"] == {"redemptions": 1, "pointsRedeemed": 10, "amountOwed": 1.5}
    assert seen["rewards"]["totalCount"] == 1  # the admin still sees what it had
    public = await query(api, PARTNER_REWARDS, id=bakery["id"])
    assert public["node"]["rewards"]["totalCount"] == 0  # to anyone else, they are gone
    idempotent = ok(await call(api, DEACTIVATE_PARTNER, admin, id=bakery["id"]))
    assert idempotent["partner"]["active"] is False
    renamed = await call(api, UPDATE_PARTNER, admin, id=bakery["id"], name="Gone")
    assert refusal(renamed, "updatePartner") == ("NOT_FOUND", ["input", "id"])
    unknown = await call(api, DEACTIVATE_PARTNER, admin, id=encode_id("Partner", 999))
    assert refusal(unknown, "deactivatePartner") == ("NOT_FOUND", ["input", "id"])


# -- who may, and the audit trail -------------------------------------------------------------


async def test_catalog_edits_are_for_admins_only(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    gold = (await new_tier(api, admin, "Gold", 300))["id"]
    partner_key = (await new_partner(api, admin, "bakery"))[1]

    for token, code in [
        (service, "FORBIDDEN"),
        (partner_key, "FORBIDDEN"),
        (None, "UNAUTHENTICATED"),
    ]:
        body = await call(api, UPDATE_TIER, token, id=gold, name="Mine")
        assert body["errors"][0]["extensions"]["code"] == code
        body = await call(api, DEACTIVATE_PARTNER, token, id=encode_id("Partner", 1))
        assert body["errors"][0]["extensions"]["code"] == code


async def test_every_admin_change_of_the_catalog_is_audited_with_actor_target_and_fields(
    api: Api,
) -> None:
    admin = await api.key(KeyRole.ADMIN)
    async with api.sessions() as session:
        key = await session.scalar(select(models.ApiKey).where(models.ApiKey.role == KeyRole.ADMIN))
    assert key is not None

    ok(await call(api, UPDATE_PROGRAM, admin, name="Beans", reviewPoints=5), "updateProgram")
    tier = await new_tier(api, admin, "Gold", 300, multiplier=1.5)
    ok(await call(api, UPDATE_TIER, admin, id=tier["id"], threshold=200, name="Gold"))
    ok(await call(api, DELETE_TIER, admin, id=tier["id"]), "deleteTier")
    promotion = await new_promotion(api, admin, name="Double", startsAt=at(days=1))
    ok(await call(api, UPDATE_PROMOTION, admin, id=promotion["id"], multiplier=3))
    ok(await call(api, END_PROMOTION, admin, id=promotion["id"]), "endPromotion")
    partner, _ = await new_partner(api, admin, "bakery")
    ok(await call(api, UPDATE_PARTNER, admin, id=partner["id"], slug="bread"), "updatePartner")
    reward = ok(
        await call(
            api,
            CREATE_REWARD,
            admin,
            name="Croissant",
            kind="FREE_PRODUCT",
            cost=10,
            partnerId=partner["id"],
        ),
        "createReward",
    )["reward"]
    ok(await call(api, UPDATE_REWARD, admin, id=reward["id"], cost=12), "updateReward")
    ok(await call(api, DEACTIVATE_PARTNER, admin, id=partner["id"]), "deactivatePartner")
    badge = ok(await call(api, CREATE_BADGE, admin, name="Regular"), "createBadge")["badge"]
    ok(await call(api, UPDATE_BADGE, admin, id=badge["id"], description="Ten orders"))
    challenge = await new_challenge(api, admin, name="Two orders", startsAt=at(days=2))
    ok(await call(api, UPDATE_CHALLENGE, admin, id=challenge["id"], goal=4))
    ok(await call(api, END_CHALLENGE, admin, id=challenge["id"]), "endChallenge")

    entries = await audit_entries(api)
    program, tier_id = encode_id("Program", 1), tier["id"]
    promotion_id, partner_id = promotion["id"], partner["id"]
    now = START.isoformat()
    assert [(e.operation, e.target_id, e.before, e.after) for e in entries] == [
        (
            "updateProgram",
            program,
            {"name": "Laurel Rewards", "reviewPoints": 0},
            {"name": "Beans", "reviewPoints": 5},
        ),
        (
            "createTier",
            tier_id,
            None,
            {"name": "Gold", "threshold": 300, "multiplier": 1.5, "benefits": []},
        ),
        ("updateTier", tier_id, {"threshold": 300}, {"threshold": 200}),
        (
            "deleteTier",
            tier_id,
            {"name": "Gold", "threshold": 200, "multiplier": 1.5, "benefits": []},
            None,
        ),
        (
            "createPromotion",
            promotion_id,
            None,
            {"name": "Double", "multiplier": 2.0, "startsAt": at(days=1), "endsAt": at(days=2)},
        ),
        ("updatePromotion", promotion_id, {"multiplier": 2.0}, {"multiplier": 3.0}),
        (
            "endPromotion",
            promotion_id,
            {"startsAt": at(days=1), "endsAt": at(days=2)},
            {"startsAt": now, "endsAt": now},
        ),
        (
            "createPartner",
            partner_id,
            None,
            {"name": "Bakery", "slug": "bakery", "active": True},
        ),
        ("updatePartner", partner_id, {"slug": "bakery"}, {"slug": "bread"}),
        (
            "createReward",
            reward["id"],
            None,
            {
                "name": "Croissant",
                "description": "",
                "kind": "FREE_PRODUCT",
                "cost": 10,
                "value": None,
                "stock": None,
                "startsAt": None,
                "endsAt": None,
                "perMemberLimit": None,
                "partner": partner_id,
                "minimumTier": None,
                "settlementAmount": None,
            },
        ),
        ("updateReward", reward["id"], {"cost": 10}, {"cost": 12}),
        ("deactivatePartner", partner_id, {"active": True}, {"active": False}),
        (
            "createBadge",
            badge["id"],
            None,
            {
                "name": "Regular",
                "description": "",
                "imageUrl": None,
                "metric": None,
                "threshold": None,
            },
        ),
        ("updateBadge", badge["id"], {"description": ""}, {"description": "Ten orders"}),
        (
            "createChallenge",
            challenge["id"],
            None,
            {
                "name": "Two orders",
                "description": "",
                "metric": "PURCHASE_COUNT",
                "goal": 2,
                "rewardPoints": 50,
                "startsAt": at(days=2),
                "endsAt": None,
                "recurrence": None,
                "badge": None,
            },
        ),
        ("updateChallenge", challenge["id"], {"goal": 2}, {"goal": 4}),
        (
            "endChallenge",
            challenge["id"],
            {"startsAt": at(days=2), "endsAt": None},
            {"startsAt": now, "endsAt": now},
        ),
    ]
    assert {(e.actor_key_id, e.actor_name, e.actor_role) for e in entries} == {
        (key.id, key.name, "ADMIN")
    }
    assert {e.at for e in entries} == {START}


@pytest.mark.parametrize("refused", ["updateTier", "createTier"])
async def test_a_refused_change_leaves_no_audit_entry(api: Api, refused: str) -> None:
    admin = await api.key(KeyRole.ADMIN)
    gold = (await new_tier(api, admin, "Gold", 300))["id"]
    count = len(await audit_entries(api))

    if refused == "updateTier":
        body = await call(api, UPDATE_TIER, admin, id=gold, multiplier=-1)
    else:
        body = await call(api, CREATE_TIER, admin, name="Gold", threshold=400)

    assert refusal(body, refused)[0] in ("INVALID", "ALREADY_EXISTS")
    assert len(await audit_entries(api)) == count
