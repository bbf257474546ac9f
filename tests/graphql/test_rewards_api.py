"""The rewards catalog, redemptions, partners and program figures, over HTTP on the real app.

Catalog management (admins only) and its validation, browsing and pagination, the statement
count of a page (no N+1), redeeming with its refusals and idempotency, a voucher's life at
checkout (use, cancel), donations, partner scoping and settlement, recommendations and the
program's figures. Both backends unless a test takes `pg_api` (PostgreSQL only).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

import models
from models import KeyRole, RewardKind
from schema.ids import decode_id, encode_id
from services import rewards as reward_service
from tests.conftest import START, Api

# -- documents ----------------------------------------------------------------------------

ERRORS = "userErrors { field code message }"
REWARD = "id name description kind cost value stock startsAt endsAt available perMemberLimit"
REDEMPTION = "id points status code receiptNumber value usedAt cancelledAt reward { id name }"
BALANCE = "balance { available redeemed }"
SETTLEMENT = "settlement(from: $from, to: $to) { redemptions pointsRedeemed amountOwed }"
WINDOW = "query($from: DateTime!, $to: DateTime!"


def mutation(field: str, returns: str) -> str:
    """A mutation of `field` taking `input`, returning `returns` and the userErrors."""
    input_type = field[0].upper() + field[1:] + "Input"
    return f"""mutation($input: {input_type}!) {{ {field}(input: $input) {{
        {returns} {ERRORS} }} }}"""


CREATE_PARTNER = mutation("createPartner", "partner { id name slug } apiKey")
CREATE_REWARD = mutation("createReward", f"reward {{ {REWARD} }}")
UPDATE_REWARD = mutation("updateReward", f"reward {{ {REWARD} }}")
CREATE_TIER = mutation("createTier", "tier { id name }")
ENROLL = mutation("enroll", "member { id } token")
ADJUST = mutation("adjustPoints", f"member {{ {BALANCE} }}")
PURCHASE = mutation("recordPurchase", "transaction { points }")
REFUND = mutation("refundPurchase", "transaction { points }")
UPDATE_PROGRAM = mutation("updateProgram", "program { expiryDays }")
REDEEM = mutation("redeemReward", f"redemption {{ {REDEMPTION} }} member {{ id {BALANCE} }}")
USE = mutation("useRedemption", f"redemption {{ {REDEMPTION} }}")
CANCEL = mutation("cancelRedemption", f"redemption {{ {REDEMPTION} }} member {{ {BALANCE} }}")
REWARDS = f"""query($first: Int, $after: String, $partnerSlug: String, $affordable: Boolean) {{
    rewards(first: $first, after: $after, partnerSlug: $partnerSlug, affordable: $affordable) {{
        totalCount pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
        edges {{ cursor node {{ {REWARD} }} }} }} }}"""
ME = f"""query($first: Int) {{ me {{ id {BALANCE}
    redemptions(first: $first) {{ totalCount edges {{ node {{ {REDEMPTION} }} }} }}
    transactions(first: 100) {{ totalCount edges {{ node {{ kind points }} }} }} }} }}"""
REWARD_NODE = f"""query($id: ID!) {{ node(id: $id) {{ ... on Reward {{ {REWARD}
    donated {{ redemptions points amount }} }} }} }}"""
NODE = "query($id: ID!) { node(id: $id) { id ... on Member { email } ... on Redemption { code } } }"
PARTNER_SETTLEMENT = (
    f"{WINDOW}, $id: ID!) {{ node(id: $id) {{ ... on Partner {{ slug {SETTLEMENT} }} }} }}"
)
OWN_SETTLEMENT = f"{WINDOW}) {{ partner {{ slug {SETTLEMENT} }} }}"
STATS = f"""{WINDOW}) {{ programStats(from: $from, to: $to) {{ members activeMembers
    pointsIssued pointsRedeemed pointsExpired outstandingPoints liability redemptionRate
    repeatPurchaseRate }} }}"""
RECOMMENDED = "query($first: Int) { me { recommendedRewards(first: $first) { cost } } }"

CODE = re.compile(r"[A-Z0-9]{4}(?:-[A-Z0-9]{4}){3}")
RECEIPT = re.compile(r"R-[A-Z0-9]{4}(?:-[A-Z0-9]{4}){2}")
_unique = itertools.count(1)


# -- helpers ------------------------------------------------------------------------------
def ok(body: dict[str, Any], field: str) -> Any:
    """The payload of a mutation that succeeded: no GraphQL errors, no userErrors."""
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


def pk_of(global_id: str) -> int:
    decoded = decode_id(global_id)
    assert decoded is not None, global_id
    return decoded[1]


def at(**delta: float) -> str:
    """START moved by `delta`, as a DateTime argument."""
    return (START + timedelta(**delta)).isoformat()


def window(start: str, end: str, **more: object) -> dict[str, Any]:
    return {"from": start, "to": end, **more}


async def call(api: Api, document: str, token: str | None, **input: object) -> dict[str, Any]:
    return await api.gql(document, {"input": input}, token=token)


async def post(api: Api, document: str, token: str | None = None, **variables: object) -> Any:
    """The whole response (data and errors) of a query."""
    return await api.gql(document, variables, token=token)


async def query(api: Api, document: str, token: str | None = None, **variables: object) -> Any:
    """The data of a query that must succeed."""
    body = await api.gql(document, variables, token=token)
    assert "errors" not in body, body
    return body["data"]


async def written(api: Api) -> tuple[int, ...]:
    """Row counts of everything the catalog and redemptions write, total stock and balances."""
    tables: list[type[models.Base]] = [models.Partner, models.Reward, models.Redemption]
    tables += [models.LedgerEntry, models.IdempotencyRecord, models.ApiKey]
    async with api.sessions() as session:
        counts = [await session.scalar(select(func.count()).select_from(t)) for t in tables]
        stock = await session.scalar(select(func.coalesce(func.sum(models.Reward.stock), 0)))
        points = await session.scalar(select(func.coalesce(func.sum(models.Member.available), 0)))
    return tuple(int(n or 0) for n in (*counts, stock, points))


@dataclass(frozen=True)
class Someone:
    id: str
    token: str


async def adjust(api: Api, admin: str, member_id: str, points: int) -> None:
    key = f"fund-{next(_unique)}"
    adjustment = {"memberId": member_id, "points": points, "reason": "test", "idempotencyKey": key}
    ok(await call(api, ADJUST, admin, **adjustment), "adjustPoints")


async def new_member(api: Api, staff: str, name: str, points: int = 0) -> Someone:
    """Enrolled through the API (staff get a member token back), funded by an admin."""
    body = await call(api, ENROLL, staff, email=f"{name}@example.com", displayName=name.title())
    member = Someone(ok(body, "enroll")["member"]["id"], ok(body, "enroll")["token"])
    if points:
        await adjust(api, staff, member.id, points)
    return member


async def new_reward(api: Api, admin: str, **terms: object) -> Any:
    terms = {"name": f"Reward {next(_unique)}", "kind": "FREE_PRODUCT", "cost": 100, **terms}
    return ok(await call(api, CREATE_REWARD, admin, **terms), "createReward")["reward"]


async def new_partner(api: Api, admin: str, slug: str) -> tuple[Any, str]:
    """The partner and its API key."""
    body = await call(api, CREATE_PARTNER, admin, name=slug.title(), slug=slug)
    return ok(body, "createPartner")["partner"], ok(body, "createPartner")["apiKey"]


async def new_tier(api: Api, admin: str, name: str, threshold: int) -> str:
    body = await call(api, CREATE_TIER, admin, name=name, threshold=threshold)
    return str(ok(body, "createTier")["tier"]["id"])


async def redeem(api: Api, token: str, reward_id: str, key: str | None = None) -> dict[str, Any]:
    key = key or f"redeem-{next(_unique)}"
    return await call(api, REDEEM, token, rewardId=reward_id, idempotencyKey=key)


async def redeemed(api: Api, token: str, reward_id: str) -> Any:
    return ok(await redeem(api, token, reward_id), "redeemReward")["redemption"]


async def me(api: Api, token: str, first: int = 20) -> Any:
    return (await query(api, ME, token, first=first))["me"]


async def reward_node(api: Api, reward_id: str) -> Any:
    return (await query(api, REWARD_NODE, id=reward_id))["node"]


async def browse(api: Api, token: str | None = None, **arguments: object) -> Any:
    return (await query(api, REWARDS, token, **arguments))["rewards"]


def costs(connection: dict[str, Any]) -> list[int]:
    return [edge["node"]["cost"] for edge in connection["edges"]]


# -- partners and who may manage the catalog ----------------------------------------------
async def test_created_partner_key_reads_only_its_own_brand(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    body = await call(api, CREATE_PARTNER, admin, name="Acme Coffee", slug=" Acme-Coffee ")
    acme, key = ok(body, "createPartner")["partner"], ok(body, "createPartner")["apiKey"]
    beta, _ = await new_partner(api, admin, "beta")
    for partner in (acme, acme, beta, None):
        terms = {"partnerId": partner["id"], "settlementAmount": 1.5} if partner else {}
        await new_reward(api, admin, **terms)

    own = f"{WINDOW}) {{ partner {{ id name slug rewards {{ totalCount }} {SETTLEMENT} }} }}"
    data = await query(api, own, key, **window(at(), at(days=1)))

    assert (acme["name"], acme["slug"]) == ("Acme Coffee", "acme-coffee")
    settlement = {"redemptions": 0, "pointsRedeemed": 0, "amountOwed": 0.0}
    assert data["partner"] == {**acme, "rewards": {"totalCount": 2}, "settlement": settlement}


@pytest.mark.parametrize("slug", ["acme", " ACME", "-acme", "acme coffee", "", "a" * 51])
async def test_duplicate_or_bad_partner_slug_is_refused_unwritten(api: Api, slug: str) -> None:
    admin = await api.key(KeyRole.ADMIN)
    await new_partner(api, admin, "acme")
    before = await written(api)

    body = await call(api, CREATE_PARTNER, admin, name="Other", slug=slug)

    code = "ALREADY_EXISTS" if slug.strip().lower() == "acme" else "INVALID"
    error = user_error(body, "createPartner")
    assert (error["code"], error["field"]) == (code, ["input", "slug"])
    assert await written(api) == before


async def test_only_admins_manage_partners_and_rewards(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    await new_partner(api, admin, "acme")
    reward = await new_reward(api, admin, name="Mug")
    callers = {
        "service": await api.key(KeyRole.SERVICE),
        "member": (await new_member(api, admin, "ann")).token,
        "partner": await api.key(KeyRole.PARTNER, partner_slug="acme"),
        "anonymous": None,
    }
    attempts: list[tuple[str, str, dict[str, object]]] = [
        (CREATE_PARTNER, "createPartner", {"name": "Evil", "slug": "evil"}),
        (CREATE_REWARD, "createReward", {"name": "Free", "kind": "FREE_PRODUCT", "cost": 1}),
        (UPDATE_REWARD, "updateReward", {"id": reward["id"], "cost": 1}),
    ]
    before = await written(api)

    for role, token in callers.items():
        for document, field, input in attempts:
            body = await call(api, document, token, **input)
            expected = "UNAUTHENTICATED" if token is None else "FORBIDDEN"
            assert error_code(body) == expected, (role, field, body)
            assert body["data"] is None or body["data"][field] is None, body

    assert await written(api) == before
    assert (await reward_node(api, reward["id"]))["cost"] == 100


# -- creating and changing rewards ---------------------------------------------------------
@pytest.mark.parametrize(
    ("terms", "code", "field"),
    [
        ({"cost": 0}, "INVALID", "cost"),
        ({"cost": -5}, "INVALID", "cost"),
        ({"stock": -1}, "INVALID", "stock"),
        ({"startsAt": at(days=2), "endsAt": at(days=1)}, "INVALID", "endsAt"),
        ({"partnerId": encode_id("Partner", 999_999)}, "NOT_FOUND", "partnerId"),
        ({"partnerId": encode_id("Tier", 1)}, "INVALID", "partnerId"),
        ({"minimumTierId": encode_id("Tier", 999_999)}, "NOT_FOUND", "minimumTierId"),
        ({"minimumTierId": encode_id("Partner", 1)}, "INVALID", "minimumTierId"),
        ({"settlementAmount": 2.5}, "INVALID", "settlementAmount"),
        ({"kind": "DONATION"}, "INVALID", "value"),
        ({"perMemberLimit": 0}, "INVALID", "perMemberLimit"),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, dict) else None,
)
async def test_bad_reward_terms_give_a_user_error_and_write_nothing(
    api: Api, terms: dict[str, object], code: str, field: str
) -> None:
    admin = await api.key(KeyRole.ADMIN)
    await new_reward(api, admin)
    before = await written(api)

    bad = {"name": "Bad", "kind": "FREE_PRODUCT", "cost": 10, **terms}
    error = user_error(await call(api, CREATE_REWARD, admin, **bad), "createReward")

    assert (error["code"], error["field"]) == (code, ["input", field])
    assert (await browse(api))["totalCount"] == 1
    assert await written(api) == before


async def test_update_reward_changes_only_the_given_fields(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    reward = await new_reward(
        api, admin, name="Mug", description="A mug", stock=5, startsAt=at(), endsAt=at(days=30)
    )
    rid = reward["id"]

    cost = ok(await call(api, UPDATE_REWARD, admin, id=rid, cost=120), "updateReward")
    unlimited = ok(await call(api, UPDATE_REWARD, admin, id=rid, stock=None), "updateReward")
    backwards = await call(api, UPDATE_REWARD, admin, id=rid, endsAt=at(days=-1))
    missing = await call(api, UPDATE_REWARD, admin, id=encode_id("Reward", 999_999), cost=1)

    assert cost["reward"] == {**reward, "cost": 120}
    assert unlimited["reward"] == {**reward, "cost": 120, "stock": None}
    assert user_error(backwards, "updateReward")["field"] == ["input", "endsAt"]
    assert user_error(missing, "updateReward")["code"] == "NOT_FOUND"
    assert await reward_node(api, rid) == {**unlimited["reward"], "donated": None}


# -- browsing the catalog ------------------------------------------------------------------
async def test_catalog_pages_walk_listed_rewards_by_cursor(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    acme, _ = await new_partner(api, admin, "acme")
    for cost in range(10, 260, 10):
        await new_reward(api, admin, cost=cost, partnerId=acme["id"] if cost % 70 == 0 else None)
    await new_reward(api, admin, cost=1, startsAt=at(days=-2), endsAt=at(hours=-1))  # ended
    upcoming = await new_reward(api, admin, cost=2, startsAt=at(days=1))

    pages: list[dict[str, Any]] = []
    for _ in range(3):
        after = pages[-1]["pageInfo"]["endCursor"] if pages else None
        pages.append(await browse(api, first=10, after=after))

    assert [costs(page) for page in pages] == [
        list(range(10, 110, 10)),
        list(range(110, 210, 10)),
        [*range(210, 260, 10), 2],  # the ended reward left out, the upcoming one listed
    ]
    assert {page["totalCount"] for page in pages} == {26}
    assert [p["pageInfo"]["hasNextPage"] for p in pages] == [True, True, False]
    assert [p["pageInfo"]["hasPreviousPage"] for p in pages] == [False, True, True]
    assert pages[2]["edges"][-1]["node"] == upcoming
    assert not upcoming["available"]
    assert all(edge["node"]["available"] for edge in pages[0]["edges"])
    by_partner = await browse(api, partnerSlug=" ACME ")
    assert (costs(by_partner), by_partner["totalCount"]) == ([70, 140, 210], 3)
    assert (await browse(api, partnerSlug="nobody"))["totalCount"] == 0


async def test_affordable_filter_follows_the_members_balance(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    ann = await new_member(api, admin, "ann", points=100)
    for cost in (50, 100, 150):
        await new_reward(api, admin, cost=cost)
    await new_reward(api, admin, cost=10, endsAt=at(hours=-1))

    affordable = await browse(api, ann.token, affordable=True)
    too_dear = await browse(api, ann.token, affordable=False)
    await adjust(api, admin, ann.id, 50)
    richer = await browse(api, ann.token, affordable=True)

    assert (costs(affordable), affordable["totalCount"]) == ([50, 100], 2)
    assert (costs(too_dear), too_dear["totalCount"]) == ([150], 1)
    assert costs(richer) == [50, 100, 150]


@pytest.mark.parametrize(
    "arguments",
    [{"affordable": True}, {"affordable": False}, {"first": 0}, {"first": 101}, {"after": "x"}],
)
async def test_bad_catalog_arguments_are_bad_user_input(
    api: Api, arguments: dict[str, object]
) -> None:
    admin = await api.key(KeyRole.ADMIN)
    await new_reward(api, admin)
    partner = await api.key(KeyRole.PARTNER, partner_slug="acme")  # no member: affordable to whom?
    member = (await new_member(api, admin, "ann")).token

    bodies = [await post(api, REWARDS, token, **arguments) for token in (None, partner, member)]

    expected = 2 if "affordable" in arguments else 3  # a member may filter by affordable
    assert [error_code(body) for body in bodies[:expected]] == ["BAD_USER_INPUT"] * expected
    assert all(body["data"] is None for body in bodies[:expected])


# -- statements per page: no N+1 ----------------------------------------------------------

CATALOG_PAGE = """query($first: Int!) { rewards(first: $first) { totalCount
    edges { node { id name partner { name slug } minimumTier { name } } } } }"""
REDEMPTIONS_PAGE = """query($first: Int!) { me { redemptions(first: $first) { totalCount
    edges { node { id reward { name partner { name } } } } } } }"""
SETTLEMENTS = """query { partners { name settlement(from: "2020-01-01T00:00:00Z",
    to: "2030-01-01T00:00:00Z") { redemptions amountOwed } } }"""
NO_TERMS: dict[str, Any] = {"description": "", "value": None, "stock": None, "starts_at": None}
NO_TERMS |= {"ends_at": None, "per_member_limit": None, "settlement_amount": None}


def app_engine(api: Api) -> AsyncEngine:
    """The engine the app built from its settings (the app sits behind the client's transport)."""
    engine: AsyncEngine = api.app.state.laurel.engine
    return engine


async def statements(api: Api, document: str, first: int, token: str | None = None) -> Any:
    """(SQL statements the app's engine runs for one request, the data): the fewest of two
    runs, as the program catalog's short-lived cache may reload during one."""
    runs = []
    engine = app_engine(api).sync_engine
    for _ in range(2):
        seen: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            seen.append(statement)  # noqa: B023 (each run has its own list and listener)

        event.listen(engine, "before_cursor_execute", record)
        try:
            data = await query(api, document, token, first=first)
        finally:
            event.remove(engine, "before_cursor_execute", record)
        runs.append((len(seen), data))
    return min(runs, key=lambda run: run[0])


async def test_pages_of_rewards_and_redemptions_cost_the_same_few_statements(
    pg_api: Api,
) -> None:
    api = pg_api
    admin = await api.key(KeyRole.ADMIN)
    brands = [pk_of((await new_partner(api, admin, f"brand-{i}"))[0]["id"]) for i in range(10)]
    tiers = [None, *[pk_of(await new_tier(api, admin, *t)) for t in (("Silver", 5), ("Gold", 9))]]
    async with api.sessions.begin() as session:
        rewards = [
            await reward_service.create_reward(
                session,
                **NO_TERMS,
                name=f"Reward {i}",
                kind=RewardKind.FREE_PRODUCT,
                cost=10 + i,
                partner_id=brands[i % 10] if i % 4 else None,
                minimum_tier_id=tiers[i % 3],
                now=api.clock.now(),
            )
            for i in range(100)
        ]
    ann = await new_member(api, admin, "ann", points=100_000)
    for reward in rewards[0:90:3]:  # 30 redemptions, of rewards without a minimum tier
        await redeemed(api, ann.token, encode_id("Reward", reward.id))
    await query(api, CATALOG_PAGE, first=1)  # connections opened, program catalog cached

    few, _ = await statements(api, CATALOG_PAGE, 10)
    many, data = await statements(api, CATALOG_PAGE, 100)
    few_redemptions, _ = await statements(api, REDEMPTIONS_PAGE, 3, ann.token)
    many_redemptions, listed = await statements(api, REDEMPTIONS_PAGE, 30, ann.token)

    nodes = [edge["node"] for edge in data["rewards"]["edges"]]
    assert (len(nodes), data["rewards"]["totalCount"]) == (100, 100)
    assert nodes[0]["partner"] is None
    assert nodes[1]["partner"] == {"name": "Brand-1", "slug": "brand-1"}
    assert [n["minimumTier"] for n in nodes[:3]] == [None, {"name": "Silver"}, {"name": "Gold"}]
    assert 0 < few == many <= 6  # page, count, partners; tiers come from the cached catalog
    page = listed["me"]["redemptions"]
    assert (len(page["edges"]), page["totalCount"]) == (30, 30)
    newest = page["edges"][0]["node"]["reward"]
    assert newest == {"name": "Reward 87", "partner": {"name": "Brand-7"}}
    assert 0 < few_redemptions == many_redemptions <= 6

    # an admin listing every partner's settlement for one window: one query for all of them
    settled, listed = await statements(api, SETTLEMENTS, 0, admin)
    assert len(listed["partners"]) == 10
    assert sum(p["settlement"]["redemptions"] for p in listed["partners"]) > 0
    assert settled <= 3  # the key, the partners, and their settlements in one query


# -- redeeming -----------------------------------------------------------------------------
async def test_redeeming_twice_with_one_key_gives_one_voucher_and_one_debit(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    ann = await new_member(api, admin, "ann", points=500)
    mug = await new_reward(api, admin, name="Mug", cost=120, value=15.0, kind="DISCOUNT_AMOUNT")
    hat = await new_reward(api, admin, name="Hat", cost=80)

    first = ok(await redeem(api, ann.token, mug["id"], "key-1"), "redeemReward")
    again = ok(await redeem(api, ann.token, mug["id"], "key-1"), "redeemReward")
    other = await redeem(api, ann.token, hat["id"], "key-1")

    voucher = first["redemption"]
    assert (voucher["status"], voucher["points"], voucher["value"]) == ("ISSUED", 120, 15.0)
    assert CODE.fullmatch(voucher["code"]), voucher["code"]
    assert voucher["reward"] == {"id": mug["id"], "name": "Mug"}
    assert first["member"] == {"id": ann.id, "balance": {"available": 380, "redeemed": 120}}
    assert (again["redemption"], again["member"]) == (voucher, first["member"])
    assert user_error(other, "redeemReward")["code"] == "IDEMPOTENCY_CONFLICT"
    after = await me(api, ann.token)
    assert (after["balance"], after["redemptions"]["totalCount"]) == (first["member"]["balance"], 1)
    assert [t["node"] for t in after["transactions"]["edges"]] == [
        {"kind": "REDEMPTION", "points": -120},
        {"kind": "ADJUSTMENT", "points": 500},
    ]


@pytest.mark.parametrize(
    ("terms", "code"),
    [
        ({"cost": 101}, "INSUFFICIENT_POINTS"),
        ({"minimumTier": True}, "NOT_ELIGIBLE"),
        ({"startsAt": at(hours=1)}, "NOT_ELIGIBLE"),
        ({"startsAt": at(days=-1), "endsAt": at()}, "NOT_ELIGIBLE"),  # `endsAt` is exclusive
        ({"stock": 0}, "OUT_OF_STOCK"),
        ({"rewardId": encode_id("Reward", 999_999)}, "NOT_FOUND"),
        ({"rewardId": encode_id("Partner", 1)}, "INVALID"),
    ],
    ids=["insufficient", "tier", "not-started", "ended", "no-stock", "unknown", "not-a-reward"],
)
async def test_refused_redemption_writes_nothing(
    api: Api, terms: dict[str, object], code: str
) -> None:
    admin = await api.key(KeyRole.ADMIN)
    ann = await new_member(api, admin, "ann", points=100)
    terms = dict(terms)  # the parameter is shared by both backends' runs
    if terms.pop("minimumTier", False):
        terms["minimumTierId"] = await new_tier(api, admin, "Gold", 1000)
    reward_id = str(terms.pop("rewardId", None) or (await new_reward(api, admin, **terms))["id"])
    before = await written(api)

    error = user_error(await redeem(api, ann.token, reward_id), "redeemReward")

    assert (error["code"], error["field"]) == (code, ["input", "rewardId"])
    assert await written(api) == before
    assert (await me(api, ann.token))["balance"]["available"] == 100


async def test_per_member_limit_and_stock_refuse_the_next_redemption(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    ann = await new_member(api, admin, "ann", points=1000)
    bob = await new_member(api, admin, "bob", points=1000)
    once = await new_reward(api, admin, cost=10, perMemberLimit=1)
    last_one = await new_reward(api, admin, cost=10, stock=1)

    first = await redeemed(api, ann.token, once["id"])
    second = await redeem(api, ann.token, once["id"])
    by_bob = await redeem(api, bob.token, once["id"])
    ok(await call(api, CANCEL, service, id=first["id"]), "cancelRedemption")
    after_cancel = await redeem(api, ann.token, once["id"])  # cancelled ones do not count
    await redeemed(api, ann.token, last_one["id"])
    sold_out = await redeem(api, bob.token, last_one["id"])

    assert user_error(second, "redeemReward")["code"] == "LIMIT_REACHED"
    assert ok(by_bob, "redeemReward")["redemption"]["status"] == "ISSUED"
    assert ok(after_cancel, "redeemReward")["redemption"]["status"] == "ISSUED"
    assert user_error(sold_out, "redeemReward")["code"] == "OUT_OF_STOCK"
    last = await reward_node(api, last_one["id"])
    assert (last["stock"], last["available"]) == (0, False)
    assert (await me(api, bob.token))["balance"]["available"] == 990


async def test_member_redemptions_are_newest_first_and_private(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    ann = await new_member(api, admin, "ann", points=1000)
    bob = await new_member(api, admin, "bob", points=1000)
    rewards = [await new_reward(api, admin, name=name, cost=10) for name in "ABC"]
    made = []
    for reward in rewards:
        made.append(await redeemed(api, ann.token, reward["id"]))
        api.clock.advance(timedelta(minutes=1))
    await redeemed(api, bob.token, rewards[0]["id"])

    page = (await me(api, ann.token, first=2))["redemptions"]
    seen_by_bob = await query(api, NODE, bob.token, id=made[0]["id"])
    seen_by_ann = await query(api, NODE, ann.token, id=made[0]["id"])

    assert page["totalCount"] == 3
    assert [edge["node"] for edge in page["edges"]] == [made[2], made[1]]
    assert [edge["node"]["reward"]["name"] for edge in page["edges"]] == ["C", "B"]
    assert seen_by_bob == {"node": None}
    assert seen_by_ann == {"node": {"id": made[0]["id"], "code": made[0]["code"]}}


# -- at checkout: using and cancelling vouchers ---------------------------------------------
async def test_vouchers_are_used_once_and_cancelled_ones_give_back_once(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    ann = await new_member(api, admin, "ann", points=500)
    reward = await new_reward(api, admin, name="Mug", cost=100, stock=5)
    used, by_id, by_code = [await redeemed(api, ann.token, reward["id"]) for _ in range(3)]
    assert (await reward_node(api, reward["id"]))["stock"] == 2

    use = ok(await call(api, USE, service, code=f" {used['code'].lower()} "), "useRedemption")
    use_again = await call(api, USE, service, code=used["code"])
    cancel_used = await call(api, CANCEL, service, id=used["id"])
    cancel = ok(await call(api, CANCEL, service, id=by_id["id"]), "cancelRedemption")
    cancel_by_code = ok(await call(api, CANCEL, service, code=by_code["code"]), "cancelRedemption")
    cancel_again = ok(await call(api, CANCEL, service, id=by_id["id"]), "cancelRedemption")
    use_cancelled = await call(api, USE, service, code=by_id["code"])
    unknown = await call(api, USE, service, code="AAAA-BBBB-CCCC-DDDD")
    both = await call(api, CANCEL, service, id=by_id["id"], code=by_id["code"])

    assert (use["redemption"]["status"], use["redemption"]["usedAt"]) == ("USED", at())
    refusals = [(use_again, "useRedemption"), (cancel_used, "cancelRedemption")]
    refusals += [(use_cancelled, "useRedemption"), (unknown, "useRedemption")]
    refusals += [(both, "cancelRedemption")]
    codes = [user_error(body, field)["code"] for body, field in refusals]
    assert codes == ["NOT_ELIGIBLE", "NOT_ELIGIBLE", "NOT_ELIGIBLE", "NOT_FOUND", "INVALID"]
    cancelled = cancel["redemption"]
    assert (cancelled["status"], cancelled["cancelledAt"]) == ("CANCELLED", at())
    assert cancel["member"]["balance"] == {"available": 300, "redeemed": 200}
    assert cancel_by_code["member"]["balance"] == {"available": 400, "redeemed": 100}
    assert cancel_again == {**cancel, "member": cancel_by_code["member"]}  # nothing more back
    assert (await reward_node(api, reward["id"]))["stock"] == 4
    after = await me(api, ann.token)
    assert after["balance"] == {"available": 400, "redeemed": 100}
    points = sorted(t["node"]["points"] for t in after["transactions"]["edges"])
    assert points == [-100, -100, -100, 100, 100, 500]
    statuses = [r["node"]["status"] for r in after["redemptions"]["edges"]]
    assert statuses == ["CANCELLED", "CANCELLED", "USED"]


async def test_members_redeem_and_only_staff_use_or_cancel_vouchers(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    ann = await new_member(api, admin, "ann", points=100)
    reward = await new_reward(api, admin, cost=10)
    voucher = await redeemed(api, ann.token, reward["id"])
    before = await written(api)

    by_service = await redeem(api, service, reward["id"])
    use = await call(api, USE, ann.token, code=voucher["code"])
    cancel = await call(api, CANCEL, ann.token, id=voucher["id"])

    assert [error_code(body) for body in (by_service, use, cancel)] == ["FORBIDDEN"] * 3
    assert await written(api) == before
    assert (await me(api, ann.token))["redemptions"]["edges"][0]["node"]["status"] == "ISSUED"


async def test_donations_have_receipts_and_totals_without_cancelled_ones(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    ann = await new_member(api, admin, "ann", points=500)
    donation = await new_reward(api, admin, name="A tree", kind="DONATION", cost=50, value=5.0)
    mug = await new_reward(api, admin, cost=10)
    gifts = [await redeemed(api, ann.token, donation["id"]) for _ in range(3)]
    await redeemed(api, ann.token, mug["id"])

    ok(await call(api, CANCEL, service, id=gifts[1]["id"]), "cancelRedemption")

    assert [(gift["code"], gift["value"]) for gift in gifts] == [(None, 5.0)] * 3
    assert all(RECEIPT.fullmatch(gift["receiptNumber"]) for gift in gifts), gifts
    assert len({gift["receiptNumber"] for gift in gifts}) == 3
    donated = (await reward_node(api, donation["id"]))["donated"]
    assert donated == {"redemptions": 2, "points": 100, "amount": 10.0}
    assert (await reward_node(api, mug["id"]))["donated"] is None


# -- partners: scoping and settlement ------------------------------------------------------
async def test_a_partner_key_sees_nothing_beyond_its_brand(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    (acme, acme_key), (beta, _) = [await new_partner(api, admin, s) for s in ("acme", "beta")]
    ann = await new_member(api, admin, "ann", points=100)
    voucher = await redeemed(api, ann.token, (await new_reward(api, admin, cost=10))["id"])
    span = window(at(days=-1), at(days=1))
    stats = f"{WINDOW}) {{ programStats(from: $from, to: $to) {{ members }} }}"
    member = "query($id: ID!) { member(id: $id) { email } }"

    others = await post(api, PARTNER_SETTLEMENT, acme_key, **span, id=beta["id"])
    own = await query(api, PARTNER_SETTLEMENT, acme_key, **span, id=acme["id"])
    member_node = await post(api, NODE, acme_key, id=ann.id)
    redemption_node = await post(api, NODE, acme_key, id=voucher["id"])
    refused = [
        await post(api, "{ me { id email } }", acme_key),
        await post(api, member, acme_key, id=ann.id),
        await post(api, stats, acme_key, **span),
        await post(api, "{ partners { slug } }", acme_key),
    ]
    by_admin = await query(api, PARTNER_SETTLEMENT, admin, **span, id=beta["id"])
    by_member = await post(api, PARTNER_SETTLEMENT, ann.token, **span, id=acme["id"])
    by_anonymous = await post(api, PARTNER_SETTLEMENT, **span, id=acme["id"])

    assert error_code(others) == "FORBIDDEN"
    assert others["data"]["node"] == {"slug": "beta", "settlement": None}
    assert own["node"]["settlement"]["redemptions"] == 0
    assert "errors" in member_node or member_node["data"]["node"] is None, member_node
    assert redemption_node == {"data": {"node": None}}
    assert [error_code(body) for body in refused] == ["FORBIDDEN"] * 4
    assert "ann@example.com" not in str([member_node, *refused])
    assert by_admin["node"]["settlement"]["amountOwed"] == 0.0
    assert (error_code(by_member), error_code(by_anonymous)) == ("FORBIDDEN", "UNAUTHENTICATED")
    assert (await query(api, "{ partner { slug } }", admin))["partner"] is None


async def test_settlement_counts_uncancelled_redemptions_inside_the_window(api: Api) -> None:
    api.clock.set(START - timedelta(hours=2))
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    (acme, acme_key), (beta, _) = [await new_partner(api, admin, s) for s in ("acme", "beta")]
    coffee = await new_reward(api, admin, cost=100, partnerId=acme["id"], settlementAmount=2.1)
    cake = await new_reward(api, admin, cost=40, partnerId=acme["id"], settlementAmount=1.2)
    other = await new_reward(api, admin, cost=50, partnerId=beta["id"], settlementAmount=5)
    ann = await new_member(api, admin, "ann", points=1000)
    await redeemed(api, ann.token, coffee["id"])  # before the window

    api.clock.set(START + timedelta(hours=1))
    for reward in (coffee, cake, other):
        await redeemed(api, ann.token, reward["id"])
    cancelled = await redeemed(api, ann.token, cake["id"])
    ok(await call(api, CANCEL, service, id=cancelled["id"]), "cancelRedemption")
    api.clock.set(START + timedelta(days=1))
    await redeemed(api, ann.token, coffee["id"])  # at `to`: outside [from, to)

    day, wide = window(at(), at(days=1)), window(at(days=-1), at(days=2))
    own = await query(api, OWN_SETTLEMENT, acme_key, **day)
    own_wide = await query(api, OWN_SETTLEMENT, acme_key, **wide)
    by_admin = await query(api, PARTNER_SETTLEMENT, admin, **day, id=beta["id"])
    backwards = await post(api, OWN_SETTLEMENT, acme_key, **window(at(), at(days=-1)))

    settled = [own["partner"], own_wide["partner"], by_admin["node"]]
    assert [figures["settlement"] for figures in settled] == [
        {"redemptions": 2, "pointsRedeemed": 140, "amountOwed": 3.3},
        {"redemptions": 4, "pointsRedeemed": 340, "amountOwed": 7.5},
        {"redemptions": 1, "pointsRedeemed": 50, "amountOwed": 5.0},
    ]
    assert error_code(backwards) == "BAD_USER_INPUT"
    assert (await me(api, ann.token))["balance"]["available"] == 1000 - 3 * 100 - 40 - 50


# -- recommendations -----------------------------------------------------------------------
async def test_recommendations_put_the_best_affordable_first_then_the_closest(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    gold = await new_tier(api, admin, "Gold", 1000)
    ann = await new_member(api, admin, "ann", points=260)
    for cost in (1000, 50, 300, 100):
        await new_reward(api, admin, cost=cost)
    await new_reward(api, admin, cost=80, minimumTierId=gold)  # above its tier
    await new_reward(api, admin, cost=90, endsAt=at(hours=-1))  # ended
    await new_reward(api, admin, cost=70, stock=0)  # out of stock
    await new_reward(api, admin, cost=20, startsAt=at(days=1))  # not started
    limited = await new_reward(api, admin, cost=60, perMemberLimit=1)
    await redeemed(api, ann.token, limited["id"])  # at its limit, and 200 points left

    found = []
    for first in (None, 3, 1):
        data = await query(api, RECOMMENDED, ann.token, first=first)
        found.append([reward["cost"] for reward in data["me"]["recommendedRewards"]])

    assert (await me(api, ann.token))["balance"]["available"] == 200
    assert found == [[100, 50, 300, 1000], [100, 50, 300], [100]]


# -- program figures -----------------------------------------------------------------------
async def test_program_stats_match_a_known_history(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    ann, bob, cy = [await new_member(api, service, name) for name in ("ann", "bob", "cy")]

    async def done(document: str, field: str, token: str = service, **input: object) -> None:
        ok(await call(api, document, token, **input), field)

    await done(PURCHASE, "recordPurchase", memberId=ann.id, orderId="a-1", amount=100)
    await done(PURCHASE, "recordPurchase", memberId=ann.id, orderId="a-2", amount=50)
    await done(UPDATE_PROGRAM, "updateProgram", admin, expiryDays=10)
    await done(PURCHASE, "recordPurchase", memberId=bob.id, orderId="b-1", amount=80)
    await done(UPDATE_PROGRAM, "updateProgram", admin, expiryDays=None)
    await done(REFUND, "refundPurchase", orderId="b-1", refundId="r-1", amount=30)
    await adjust(api, admin, cy.id, 20)
    await redeemed(api, ann.token, (await new_reward(api, admin, cost=60))["id"])
    cancelled = await redeemed(api, ann.token, (await new_reward(api, admin, cost=30))["id"])
    await done(CANCEL, "cancelRedemption", id=cancelled["id"])
    api.clock.advance(timedelta(days=11))  # Bob's 50 unspent points expire, settled on read
    expired = "query($id: ID!) { member(id: $id) { balance { expired } } }"
    bob_now = await query(api, expired, service, id=bob.id)
    api.clock.advance(timedelta(days=14))  # past the window: Dee counts only as outstanding
    dee = await new_member(api, service, "dee")
    await done(PURCHASE, "recordPurchase", memberId=dee.id, orderId="d-1", amount=10)

    stats = await query(api, STATS, admin, **window(at(days=-1), at(days=20)))
    backwards = await post(api, STATS, admin, **window(at(), at(seconds=-1)))

    assert bob_now["member"]["balance"]["expired"] == 50
    issued = 100 + 50 + 80 - 30 + 20  # earned, less the refund's reversal, plus the adjustment
    outstanding = (150 - 60) + 0 + 20 + 10  # Ann, Bob (refunded or expired), Cy, Dee
    assert stats["programStats"] == {
        "members": 3,  # Dee joined after the window
        "activeMembers": 2,  # Ann and Bob earned; Cy only got an adjustment
        "pointsIssued": issued,
        "pointsRedeemed": 60,  # the cancelled redemption gave its 30 back
        "pointsExpired": 50,
        "outstandingPoints": outstanding,
        "liability": pytest.approx(outstanding * 0.01),
        "redemptionRate": pytest.approx(60 / issued),
        "repeatPurchaseRate": 0.5,  # Ann bought twice, Bob once
    }
    assert error_code(backwards) == "BAD_USER_INPUT"
