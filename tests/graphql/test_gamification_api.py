"""Badges and challenges over HTTP on the real app: admin-only creation and its validation
(userErrors, nothing written), the public lists, a member's progress and badges under `me`,
and `node(id:)`. Both backends."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select

import models
from models import KeyRole
from schema.ids import encode_id
from tests.conftest import START, Api

# -- documents ----------------------------------------------------------------------------

ERRORS = "userErrors { field code message }"
BADGE = "id name description imageUrl metric threshold"
CHALLENGE = f"""id name description metric goal rewardPoints startsAt endsAt recurrence
    badge {{ {BADGE} }}"""


def mutation(field: str, returns: str) -> str:
    input_type = field[0].upper() + field[1:] + "Input"
    return f"""mutation($input: {input_type}!) {{ {field}(input: $input) {{
        {returns} {ERRORS} }} }}"""


CREATE_BADGE = mutation("createBadge", f"badge {{ {BADGE} }}")
CREATE_CHALLENGE = mutation("createChallenge", f"challenge {{ {CHALLENGE} }}")
ENROLL = mutation("enroll", "member { id referralCode } token")
PURCHASE = mutation(
    "recordPurchase", "transaction { kind points } member { balance { available } }"
)
REFUND = mutation("refundPurchase", "transaction { points }")
ACTIVITY = mutation("recordActivity", "transaction { kind points }")
CREATE_PARTNER = mutation("createPartner", "partner { slug }")
UPDATE_PROGRAM = mutation("updateProgram", "program { reviewPoints }")
LISTS = f"{{ challenges {{ {CHALLENGE} }} badges {{ {BADGE} }} }}"
ME = """{ me { challenges { challenge { name goal } progress completedAt }
    badges { badge { name } awardedAt }
    balance { available }
    transactions(first: 20) { edges { node { kind points description } } } } }"""
ME_CHALLENGES = "{ me { challenges { challenge { name } progress completedAt } } }"
# Badge.metric is nullable and Challenge.metric is not: one selection each, or they conflict.
NODES = {
    kind: f"query($id: ID!) {{ node(id: $id) {{ id __typename ... on {kind} {{ {fields} }} }} }}"
    for kind, fields in (("Badge", BADGE), ("Challenge", CHALLENGE))
}

_unique = itertools.count(1)


# -- helpers ------------------------------------------------------------------------------
def ok(body: dict[str, Any], field: str) -> Any:
    assert "errors" not in body, body
    payload = body["data"][field]
    assert payload["userErrors"] == [], payload
    return payload


def user_error(body: dict[str, Any], field: str) -> Any:
    """The one userError of a refused mutation, whose objects are then all null."""
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"][field]
    assert len(payload["userErrors"]) == 1, payload
    assert all(value is None for name, value in payload.items() if name != "userErrors"), payload
    return payload["userErrors"][0]


def error_code(body: dict[str, Any]) -> str:
    errors = body.get("errors")
    assert errors, f"expected a GraphQL error, got {body}"
    return str(errors[0]["extensions"]["code"])


def at(**delta: float) -> str:
    return (START + timedelta(**delta)).isoformat()


async def call(api: Api, document: str, token: str | None, **input: object) -> dict[str, Any]:
    return await api.gql(document, {"input": input}, token=token)


async def query(api: Api, document: str, token: str | None = None, **variables: object) -> Any:
    body = await api.gql(document, variables, token=token)
    assert "errors" not in body, body
    return body["data"]


async def new_badge(api: Api, admin: str, **terms: object) -> Any:
    terms = {"name": f"Badge {next(_unique)}", **terms}
    return ok(await call(api, CREATE_BADGE, admin, **terms), "createBadge")["badge"]


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


@dataclass(frozen=True)
class Someone:
    id: str
    token: str
    referral_code: str


async def enroll(api: Api, service: str, name: str, **more: object) -> Someone:
    body = await call(api, ENROLL, service, email=f"{name}@example.com", displayName=name, **more)
    payload = ok(body, "enroll")
    return Someone(payload["member"]["id"], payload["token"], payload["member"]["referralCode"])


async def buy(api: Api, service: str, member: Someone, amount: float = 10, **more: object) -> Any:
    order = f"order-{next(_unique)}"
    body = await call(
        api, PURCHASE, service, memberId=member.id, orderId=order, amount=amount, **more
    )
    return ok(body, "recordPurchase")


async def written(api: Api) -> tuple[int, ...]:
    """Row counts of what gamification writes, and the catalog version."""
    tables: list[type[models.Base]] = [
        models.Badge,
        models.Challenge,
        models.ChallengeCompletion,
        models.MemberBadge,
        models.LedgerEntry,
        models.MemberEvent,
    ]
    async with api.sessions() as session:
        counts = [await session.scalar(select(func.count()).select_from(t)) for t in tables]
        version = await session.scalar(select(models.Program.catalog_version))
    return tuple(int(n or 0) for n in (*counts, version))


# -- who may create ------------------------------------------------------------------------
async def test_only_admins_create_badges_and_challenges(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    ok(await call(api, CREATE_PARTNER, admin, name="Acme", slug="acme"), "createPartner")
    service = await api.key(KeyRole.SERVICE)
    callers = {
        "service": service,
        "member": (await enroll(api, service, "ann")).token,
        "partner": await api.key(KeyRole.PARTNER, partner_slug="acme"),
        "anonymous": None,
    }
    attempts: list[tuple[str, str, dict[str, object]]] = [
        (CREATE_BADGE, "createBadge", {"name": "Sneaky"}),
        (
            CREATE_CHALLENGE,
            "createChallenge",
            {
                "name": "Sneaky",
                "metric": "PURCHASE_COUNT",
                "goal": 1,
                "rewardPoints": 1_000,
                "startsAt": at(days=-1),
            },
        ),
    ]
    before = await written(api)

    for role, token in callers.items():
        for document, field, input in attempts:
            body = await call(api, document, token, **input)
            expected = "UNAUTHENTICATED" if token is None else "FORBIDDEN"
            assert error_code(body) == expected, (role, field, body)
            assert body["data"] is None or body["data"][field] is None, body

    assert await written(api) == before
    assert await query(api, LISTS) == {"challenges": [], "badges": []}


# -- validation ------------------------------------------------------------------------------
# (terms, code, field): each refused with one userError about that input field. Checked in a
# loop on one database (the refusals write nothing, so each sees the same state).
BAD_CHALLENGES: list[tuple[dict[str, object], str, str]] = [
    ({"goal": 0}, "INVALID", "goal"),
    ({"goal": -3}, "INVALID", "goal"),
    ({"goal": 1_000_000_001}, "INVALID", "goal"),
    ({"rewardPoints": -1}, "INVALID", "rewardPoints"),
    ({"name": "   "}, "INVALID", "name"),
    ({"startsAt": at(days=2), "endsAt": at(days=1)}, "INVALID", "endsAt"),
    ({"startsAt": at(days=2), "endsAt": at(days=2)}, "INVALID", "endsAt"),
    ({"badgeId": encode_id("Badge", 999_999)}, "NOT_FOUND", "badgeId"),
    ({"badgeId": encode_id("Challenge", 1)}, "INVALID", "badgeId"),
    ({"badgeId": "not-an-id"}, "INVALID", "badgeId"),
]
BAD_BADGES: list[tuple[dict[str, object], str, str]] = [
    ({"metric": "PURCHASE_COUNT"}, "INVALID", "threshold"),
    ({"threshold": 5}, "INVALID", "threshold"),
    ({"metric": "PURCHASE_COUNT", "threshold": 0}, "INVALID", "threshold"),
    ({"imageUrl": "javascript:alert(1)"}, "INVALID", "imageUrl"),
    ({"imageUrl": "ftp://example.com/badge.png"}, "INVALID", "imageUrl"),
    ({"imageUrl": "https://example.com/" + "a" * 500}, "INVALID", "imageUrl"),
    ({"name": ""}, "INVALID", "name"),
    ({"name": "Early bird"}, "ALREADY_EXISTS", "name"),
    ({"name": "  Early bird "}, "ALREADY_EXISTS", "name"),
    ({"description": "x" * 1001}, "INVALID", "description"),
]


async def test_bad_challenge_terms_give_a_user_error_and_write_nothing(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    await new_badge(api, admin, name="Early bird")
    await new_challenge(api, admin)
    before = await written(api)
    good = {"name": "Bad", "metric": "REVIEW_COUNT", "goal": 1, "rewardPoints": 5}

    for terms, code, field in BAD_CHALLENGES:
        body = await call(
            api, CREATE_CHALLENGE, admin, **{"startsAt": at(days=-1), **good, **terms}
        )
        error = user_error(body, "createChallenge")
        assert (error["code"], error["field"]) == (code, ["input", field]), terms
        assert error["message"], terms
        assert await written(api) == before, terms

    assert len((await query(api, LISTS))["challenges"]) == 1


async def test_bad_badge_terms_give_a_user_error_and_write_nothing(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    await new_badge(api, admin, name="Early bird")
    before = await written(api)

    for terms, code, field in BAD_BADGES:
        body = await call(api, CREATE_BADGE, admin, **{"name": "Other", **terms})
        error = user_error(body, "createBadge")
        assert (error["code"], error["field"]) == (code, ["input", field]), terms
        assert error["message"], terms
        assert await written(api) == before, terms

    assert [b["name"] for b in (await query(api, LISTS))["badges"]] == ["Early bird"]


# -- what was created, and the public lists ------------------------------------------------
async def test_created_badges_and_challenges_read_back_the_same_everywhere(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    plain = await new_badge(api, admin, name=" Founder ")
    loyal = await new_badge(
        api,
        admin,
        name="Loyal",
        description="Ten orders",
        imageUrl="https://cdn.example.com/loyal.png",
        metric="PURCHASE_COUNT",
        threshold=10,
    )
    offset = datetime(2026, 1, 4, 14, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    weekly = await new_challenge(
        api,
        admin,
        name="Weekly shopper",
        description="Three orders a week",
        metric="PURCHASE_AMOUNT",
        goal=300,
        rewardPoints=40,
        badgeId=loyal["id"],
        startsAt=offset.isoformat(),  # 16:00+02:00 is 14:00 UTC
        endsAt=at(days=30),
        recurrence="WEEKLY",
    )

    assert plain == {
        "id": plain["id"],
        "name": "Founder",
        "description": "",
        "imageUrl": None,
        "metric": None,
        "threshold": None,
    }
    assert loyal["metric"] == "PURCHASE_COUNT" and loyal["threshold"] == 10
    assert weekly == {
        "id": weekly["id"],
        "name": "Weekly shopper",
        "description": "Three orders a week",
        "metric": "PURCHASE_AMOUNT",
        "goal": 300,
        "rewardPoints": 40,
        "startsAt": "2026-01-04T14:00:00+00:00",
        "endsAt": at(days=30),
        "recurrence": "WEEKLY",
        "badge": loyal,
    }
    for created, typename in ((plain, "Badge"), (loyal, "Badge"), (weekly, "Challenge")):
        node = (await query(api, NODES[typename], id=created["id"]))["node"]
        assert node == {**created, "__typename": typename}
    assert await query(api, LISTS) == {"challenges": [weekly], "badges": [plain, loyal]}
    for typename in ("Badge", "Challenge"):
        missing = encode_id(typename, 999_999)
        assert (await query(api, NODES[typename], id=missing))["node"] is None


async def test_public_challenges_lists_only_running_ones_and_badges_all(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    await new_badge(api, admin, name="A")
    await new_badge(api, admin, name="B", metric="REVIEW_COUNT", threshold=3)
    await new_challenge(api, admin, name="ended", startsAt=at(days=-9), endsAt=at(days=-2))
    await new_challenge(api, admin, name="ends now", startsAt=at(days=-9), endsAt=at())
    await new_challenge(api, admin, name="open-ended", startsAt=at(days=-5))
    await new_challenge(api, admin, name="this week", startsAt=at(), endsAt=at(days=7))
    await new_challenge(api, admin, name="next week", startsAt=at(days=7), endsAt=at(days=14))
    document = "{ challenges { name } badges { name } }"
    service = await api.key(KeyRole.SERVICE)
    member = (await enroll(api, service, "ann")).token

    for token in (None, member, service, admin):  # public: the same for everyone
        data = await query(api, document, token)
        assert [c["name"] for c in data["challenges"]] == ["open-ended", "this week"]
        assert [b["name"] for b in data["badges"]] == ["A", "B"]

    api.clock.advance(timedelta(days=7, seconds=1))
    data = await query(api, document)
    assert [c["name"] for c in data["challenges"]] == ["open-ended", "next week"]


# -- a member's progress and badges --------------------------------------------------------
async def test_me_shows_progress_capped_at_the_goal_and_the_badges_held(api: Api) -> None:
    # given a 2-purchase challenge with a badge, a 100-spend challenge, a review badge
    admin = await api.key(KeyRole.ADMIN)
    service = await api.key(KeyRole.SERVICE)
    ok(await call(api, UPDATE_PROGRAM, admin, reviewPoints=5), "updateProgram")
    twice = await new_badge(api, admin, name="Twice")
    await new_badge(api, admin, name="Critic", metric="REVIEW_COUNT", threshold=1)
    await new_challenge(api, admin, name="Two orders", goal=2, rewardPoints=50, badgeId=twice["id"])
    await new_challenge(api, admin, name="Spend 100", metric="PURCHASE_AMOUNT", goal=100)
    ann = await enroll(api, service, "ann")
    assert (await query(api, ME, ann.token))["me"]["challenges"] == [
        {"challenge": {"name": "Two orders", "goal": 2}, "progress": 0, "completedAt": None},
        {"challenge": {"name": "Spend 100", "goal": 100}, "progress": 0, "completedAt": None},
    ]

    # when three purchases are recorded (the second completes) and a review, an hour later
    await buy(api, service, ann, 10)
    completing = await buy(api, service, ann, 20.50)
    await buy(api, service, ann, 30)
    api.clock.advance(timedelta(hours=1))
    review = {"memberId": ann.id, "kind": "REVIEW", "reference": "sku-1"}
    ok(await call(api, ACTIVITY, service, **review), "recordActivity")

    # then progress is capped at the goal, the completion and both badges show
    me = (await query(api, ME, ann.token))["me"]
    assert me["challenges"] == [
        {"challenge": {"name": "Two orders", "goal": 2}, "progress": 2, "completedAt": at()},
        {"challenge": {"name": "Spend 100", "goal": 100}, "progress": 60, "completedAt": None},
    ]
    assert me["badges"] == [
        {"badge": {"name": "Twice"}, "awardedAt": at()},
        {"badge": {"name": "Critic"}, "awardedAt": at(hours=1)},
    ]
    # the completing purchase's member already holds the challenge points
    assert completing["transaction"] == {"kind": "PURCHASE", "points": 20}
    assert completing["member"]["balance"]["available"] == 10 + 20 + 50
    assert me["balance"]["available"] == 10 + 20 + 30 + 50 + 5
    kinds = [edge["node"]["kind"] for edge in me["transactions"]["edges"]]
    assert kinds.count("CHALLENGE") == 1
    challenge_entry = next(
        e["node"] for e in me["transactions"]["edges"] if e["node"]["kind"] == "CHALLENGE"
    )
    assert challenge_entry["points"] == 50
    assert "Two orders" in challenge_entry["description"]


async def test_a_refund_lowers_the_progress_a_member_sees(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    service = await api.key(KeyRole.SERVICE)
    await new_challenge(api, admin, name="Spend 100", metric="PURCHASE_AMOUNT", goal=100)
    ann = await enroll(api, service, "ann")
    body = await call(api, PURCHASE, service, memberId=ann.id, orderId="big", amount=80)
    ok(body, "recordPurchase")
    refund = {"orderId": "big", "refundId": "r-1", "amount": 30.5}
    ok(await call(api, REFUND, service, **refund), "refundPurchase")
    me = (await query(api, ME_CHALLENGES, ann.token))["me"]
    assert me["challenges"] == [
        {"challenge": {"name": "Spend 100"}, "progress": 49, "completedAt": None}
    ]


async def test_a_members_challenges_include_one_created_a_moment_ago(api: Api) -> None:
    # `me { challenges }` must not be answered from a member's cached view: a new challenge
    # is no event of the member's
    admin = await api.key(KeyRole.ADMIN)
    service = await api.key(KeyRole.SERVICE)
    ann = await enroll(api, service, "ann")
    await buy(api, service, ann)
    assert (await query(api, ME_CHALLENGES, ann.token))["me"]["challenges"] == []
    assert (await query(api, ME_CHALLENGES, ann.token))["me"]["challenges"] == []

    await new_challenge(api, admin, name="Spend", metric="PURCHASE_AMOUNT", goal=50)

    assert (await query(api, ME_CHALLENGES, ann.token))["me"]["challenges"] == [
        {"challenge": {"name": "Spend"}, "progress": 10, "completedAt": None}
    ]


async def test_a_referral_shows_in_the_referrers_challenge(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    service = await api.key(KeyRole.SERVICE)
    await new_challenge(api, admin, name="Bring a friend", metric="REFERRAL_COUNT", goal=1)
    ann = await enroll(api, service, "ann")
    bob = await enroll(api, service, "bob", referralCode=ann.referral_code)
    assert (await query(api, ME_CHALLENGES, ann.token))["me"]["challenges"][0]["progress"] == 0

    await buy(api, service, bob)

    assert (await query(api, ME_CHALLENGES, ann.token))["me"]["challenges"] == [
        {"challenge": {"name": "Bring a friend"}, "progress": 1, "completedAt": at()}
    ]
    assert (await query(api, ME_CHALLENGES, bob.token))["me"]["challenges"] == [
        {"challenge": {"name": "Bring a friend"}, "progress": 0, "completedAt": None}
    ]


async def test_a_challenge_completed_before_it_ended_still_shows(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    service = await api.key(KeyRole.SERVICE)
    await new_challenge(api, admin, name="Sprint", goal=1, startsAt=at(days=-1), endsAt=at(days=1))
    ann = await enroll(api, service, "ann")
    await buy(api, service, ann)

    api.clock.advance(timedelta(days=1, hours=1))  # an hour after it ended

    assert (await query(api, ME_CHALLENGES, ann.token))["me"]["challenges"] == [
        {"challenge": {"name": "Sprint"}, "progress": 1, "completedAt": at()}
    ]
