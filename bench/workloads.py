"""The workloads, as requests to Laurel and to the baselines, and their credentials.

* dashboard: Laurel's ``Dashboard`` query as a member drawn from the whole seeded population
  (`DRAWS`: uniform, Zipf-skewed over a random permutation of the members, or the named ``hot``
  pool of the first 1,000 of it), each with a member JWT (bench.tokens: issue_member_token's
  bytes, signed in bulk); the raw app's ``POST /dashboard`` and PostGraphile 5's equivalent
  query (`PG5_DASHBOARD_QUERY`) as the same members.
* leaderboard: Laurel's ``leaderboard`` query (top 10, my entry, totalRanked) drawn alike,
  against Laurel with Redis (``laurel-redis``) and without (``laurel-db``), the raw app's
  ``POST /leaderboard/redis`` and ``/leaderboard/sql`` and PostGraphile 5's
  `PG5_LEADERBOARD_QUERY` (bench/ranking.py's functions).
* earn: ``recordPurchase`` with a service API key (services.access.create_api_key) for random
  members of a pool, a unique orderId per request; the raw app's ``POST /earn`` alike.
* redeem: ``redeemReward`` as one of 10 hot members (a JWT each), alternating between two
  rewards made for the run with Laurel's own services.rewards.create_reward, one without stock
  limit and one with 1,000,000 units (so the guarded stock decrement runs on every other
  request), a unique idempotencyKey per request; the raw app's ``POST /redeem`` alike. The hot
  members are topped up first with Laurel's own adjust_points (an ADJUSTMENT lot, cached
  balances and event written as the application writes them), so their balances last the run.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.config import LUA_DIR, Database
from bench.tokens import check_tokens, member_tokens, write_lines
from models import KeyRole, RewardKind
from models.engine import create_engine, session_factory
from schema.ids import encode_id
from services.access import create_api_key, issue_member_token
from services.ledger.adjustments import adjust_points
from services.rewards import create_reward

WORKLOADS = ("dashboard", "leaderboard", "earn", "redeem")
TARGETS = ("raw", "laurel")  # the write workloads' (and the probes')
# Who answers each workload, in the order they run (reversed every other round). A target
# names its server (SERVERS) and its request (member_lua_data).
WORKLOAD_TARGETS: dict[str, tuple[str, ...]] = {
    "dashboard": ("raw", "laurel", "pg5"),
    "leaderboard": ("raw-redis", "laurel-redis", "raw-sql", "laurel-db", "pg5"),
    "earn": TARGETS,
    "redeem": TARGETS,
}
SERVERS = {"raw-redis": "raw", "raw-sql": "raw", "laurel-db": "laurel"}
# Laurel's figure against each baseline: (laurel target, baseline target).
RATIOS: dict[str, tuple[tuple[str, str], ...]] = {
    "dashboard": (("laurel", "raw"), ("laurel", "pg5")),
    "leaderboard": (
        ("laurel-redis", "raw-redis"),
        ("laurel-db", "raw-sql"),
        ("laurel-redis", "pg5"),
        ("laurel-db", "pg5"),
    ),
    "earn": (("laurel", "raw"),),
    "redeem": (("laurel", "raw"),),
}
READS = ("dashboard", "leaderboard")  # drawn from the population (`DRAWS`)
DRAWS = ("uniform", "zipf", "hot")
ZIPF_S = 1.1


def server_of(target: str) -> str:
    return SERVERS.get(target, target)


def is_laurel(target: str) -> bool:
    return target.startswith("laurel")


DASHBOARD_QUERY = (
    "query Dashboard { me { balance { available pending } tier { name } "
    "tierProgress { pointsToNext } transactions(first: 10) { edges { node { "
    "id kind points createdAt description } } } } }"
)
EARN_MUTATION = (
    "mutation Earn($input: RecordPurchaseInput!) { recordPurchase(input: $input) { "
    "transaction { id points } member { balance { available } } "
    "userErrors { code message } } }"
)
LEADERBOARD_QUERY = (
    "query Leaderboard { leaderboard(period: ALL_TIME, first: 10) { totalRanked "
    "entries { rank displayName points isMe } me { rank displayName points isMe } } }"
)
# PostGraphile 5's own naming over Laurel's tables (amber preset: `rowId` is the primary key,
# `id` its Node ID; functions of the second schema get its name as a prefix). The tiers'
# thresholds give pointsToNext as the raw app computes it (the next threshold above the
# member's tier, minus its qualifying points); PG5 offers no order on an unindexed column.
PG5_DASHBOARD_QUERY = (
    "query Dashboard($id: BigInt!) { memberByRowId(rowId: $id) { available pending "
    "qualifyingPoints tierByTierId { name threshold } ledgerEntriesByMemberId(first: 10, "
    "orderBy: ROW_ID_DESC) { nodes { rowId kind points createdAt description } } } "
    "allTiers { nodes { threshold } } }"
)
PG5_LEADERBOARD_QUERY = (
    "query Leaderboard($id: BigInt!) { benchPg5LeaderboardTop(n: 10) { nodes { memberId "
    "displayName points rank } } benchPg5LeaderboardMe(memberId: $id) { memberId displayName "
    "points rank } benchPg5LeaderboardTotal }"
)
REDEEM_MUTATION = (
    "mutation Redeem($input: RedeemRewardInput!) { redeemReward(input: $input) { "
    "redemption { id code points status } member { balance { available } } "
    "userErrors { code message } } }"
)
# Lua string.format placeholders, in the order earn.lua (redeem.lua) passes them.
_MEMBER, _ORDER, _AMOUNT = "@MEMBER@", "@ORDER@", 12.5
_REWARD, _KEY = "@REWARD@", "@KEY@"

# The redeem workload: a small cost, and a top-up that outlasts any run (a redemption costs
# REDEEM_COST; 2,000,000 points pay for 200,000 redemptions a member).
REDEEM_COST = 10
REDEEM_TOP_UP = 2_000_000
REDEEM_STOCK = 1_000_000
REDEEM_MIXES = ("alternate", "unlimited", "stocked")


@dataclass(frozen=True, slots=True)
class RedeemRewards:
    """The two rewards the redeem workload alternates between, made for this run."""

    unlimited: int  # no stock limit
    stocked: int  # REDEEM_STOCK units: the guarded decrement
    stock_before: int  # the stocked reward's units before anything was redeemed
    top_up: int  # points each hot member got
    mix: str = "alternate"  # which the load redeems: one of REDEEM_MIXES

    @property
    def in_turn(self) -> list[int]:
        """The rewards redeem.lua takes in turn, request after request."""
        if self.mix == "unlimited":
            return [self.unlimited]
        if self.mix == "stocked":
            return [self.stocked]
        return [self.unlimited, self.stocked]


@dataclass(frozen=True, slots=True)
class Credentials:
    jwt_secret: str
    api_key: str  # a Laurel service key
    raw_token: str  # the raw app's service bearer
    dashboard_members: list[int]
    member_tokens: list[str]  # one per dashboard member, same order
    earn_members: list[int]
    members: list[int]  # every seeded member, in a random permutation (the draws' order)
    redeem_members: list[int]  # the hot members (none unless asked for)
    redeem_tokens: list[str]  # one per hot member, same order
    redeem_rewards: RedeemRewards | None  # made only when there are hot members

    @property
    def rewards(self) -> RedeemRewards:
        if self.redeem_rewards is None:
            raise RuntimeError("no rewards were made: make_credentials(redeem_pool=0)")
        return self.redeem_rewards


async def make_credentials(
    db: Database,
    *,
    dashboard_pool: int,
    earn_pool: int,
    redeem_pool: int = 0,
    redeem_mix: str = "alternate",
    seed: int = 42,
) -> Credentials:
    """A service key in the database, member tokens, the members each workload uses, and (with
    hot members) the rewards the redeem workload redeems, its hot members topped up."""
    jwt_secret = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    conn = await asyncpg.connect(db.dsn)
    try:
        ids = [row["id"] for row in await conn.fetch("SELECT id FROM members ORDER BY id")]
    finally:
        await conn.close()
    chooser = random.Random(seed)
    population = list(ids)
    chooser.shuffle(population)
    # The hot pool: the first of the permutation (the Zipf draw's most frequent members too).
    dashboard_members = population[: min(dashboard_pool, len(ids))]
    earn_members = chooser.sample(ids, min(earn_pool, len(ids)))
    redeem_members = chooser.sample(ids, min(redeem_pool, len(ids)))
    engine = create_engine(db.sqlalchemy_url, pool_size=1)
    try:
        async with session_factory(engine).begin() as session:
            issued = await create_api_key(session, role=KeyRole.SERVICE, name="bench", now=now)
        rewards = (
            await _make_rewards(engine, redeem_members, now, redeem_mix) if redeem_members else None
        )
    finally:
        await engine.dispose()

    def token(pk: int) -> str:
        return issue_member_token(
            subject=encode_id("Member", pk), secret=jwt_secret, now=now, ttl=timedelta(hours=6)
        )

    return Credentials(
        jwt_secret=jwt_secret,
        api_key=issued.secret,
        raw_token=secrets.token_urlsafe(24),
        dashboard_members=dashboard_members,
        member_tokens=[token(pk) for pk in dashboard_members],
        earn_members=earn_members,
        members=population,
        redeem_members=redeem_members,
        redeem_tokens=[token(pk) for pk in redeem_members],
        redeem_rewards=rewards,
    )


async def _make_rewards(
    engine: AsyncEngine, members: list[int], now: datetime, mix: str
) -> RedeemRewards:
    """The redeem workload's two rewards, and a top-up for each hot member, through Laurel's
    own services (so entries, lots, cached balances and events are as the application writes
    them). The seed's reset deletes all of it before the next run."""
    made = []
    async with session_factory(engine).begin() as session:
        for name, stock in (("Bench: 1.00 USD off", None), ("Bench: tote bag", REDEEM_STOCK)):
            reward = await create_reward(
                session,
                name=name,
                description="made by the benchmark",
                kind=RewardKind.DISCOUNT_AMOUNT,
                cost=REDEEM_COST,
                value=1.0,
                partner_id=None,
                minimum_tier_id=None,
                stock=stock,
                starts_at=None,
                ends_at=None,
                per_member_limit=None,
                settlement_amount=None,
                now=now,
            )
            made.append(reward.id)
    batch = secrets.token_hex(4)
    for pk in members:
        async with session_factory(engine).begin() as session:
            await adjust_points(
                session,
                member_id=pk,
                points=REDEEM_TOP_UP,
                reason="benchmark top-up",
                idempotency_key=f"bench-top-up-{batch}-{pk}",
                actor="bench",
                now=now,
            )
    return RedeemRewards(
        unlimited=made[0],
        stocked=made[1],
        stock_before=REDEEM_STOCK,
        top_up=REDEEM_TOP_UP,
        mix=mix,
    )


# -- single requests (for the probes) ---------------------------------------------------------


def dashboard_request(target: str, creds: Credentials, index: int) -> tuple[str, dict[str, str]]:
    """(path, headers) of a dashboard request as the index-th member; the body is
    `dashboard_body(target)`."""
    if target == "laurel":
        return "/graphql", {"Authorization": f"Bearer {creds.member_tokens[index]}"}
    return "/dashboard", {"Authorization": f"Bearer {creds.dashboard_members[index]}"}


def dashboard_body(target: str) -> str:
    return json.dumps({"query": DASHBOARD_QUERY}) if target == "laurel" else ""


def earn_request(
    target: str, creds: Credentials, member: int, order_id: str, amount: float
) -> tuple[str, dict[str, str], str]:
    """(path, headers, body) of one earn request."""
    return (
        "/graphql" if target == "laurel" else "/earn",
        {"Authorization": _service_authorization(target, creds)},
        _earn_body(target, member, order_id, amount),
    )


def _service_authorization(target: str, creds: Credentials) -> str:
    return f"Bearer {creds.api_key if target == 'laurel' else creds.raw_token}"


def _earn_body(target: str, member: Any, order_id: Any, amount: Any) -> str:
    if target == "laurel":
        member = encode_id("Member", member) if isinstance(member, int) else member
        variables = {"input": {"memberId": member, "orderId": order_id, "amount": amount}}
        return json.dumps({"query": EARN_MUTATION, "variables": variables})
    return json.dumps({"memberId": member, "orderId": order_id, "amount": amount})


def redeem_request(
    target: str, creds: Credentials, index: int, reward: int, key: str
) -> tuple[str, dict[str, str], str]:
    """(path, headers, body) of one redemption, as the index-th hot member."""
    if target == "laurel":
        authorization = f"Bearer {creds.redeem_tokens[index]}"
    else:
        authorization = f"Bearer {creds.redeem_members[index]}"
    return (
        "/graphql" if target == "laurel" else "/redeem",
        {"Authorization": authorization},
        _redeem_body(target, reward, key),
    )


def _redeem_body(target: str, reward: Any, key: Any) -> str:
    if target == "laurel":
        reward = encode_id("Reward", reward) if isinstance(reward, int) else reward
        variables = {"input": {"rewardId": reward, "idempotencyKey": key}}
        return json.dumps({"query": REDEEM_MUTATION, "variables": variables})
    return json.dumps({"rewardId": reward, "idempotencyKey": key})


# -- wrk data files ---------------------------------------------------------------------------


def lua_data(workload: str, target: str, creds: Credentials, order_prefix: str) -> dict[str, Any]:
    """What the workload's Lua script needs to build its requests for `target`."""
    if workload == "dashboard":
        count = len(creds.dashboard_members)
        return {
            "method": "POST",
            "path": dashboard_request(target, creds, 0)[0],
            "body": dashboard_body(target),
            "credentials": [
                dashboard_request(target, creds, i)[1]["Authorization"] for i in range(count)
            ],
        }
    if workload == "redeem":
        return _redeem_lua_data(target, creds, order_prefix)
    body_format = _earn_body(target, _MEMBER, _ORDER, _AMOUNT).replace("%", "%%")
    body_format = body_format.replace(f'"{_ORDER}"', '"%s"').replace(str(_AMOUNT), "%s")
    if target == "laurel":
        body_format = body_format.replace(f'"{_MEMBER}"', '"%s"')
        members: list[Any] = [encode_id("Member", pk) for pk in creds.earn_members]
    else:
        body_format = body_format.replace(f'"{_MEMBER}"', "%s")
        members = [str(pk) for pk in creds.earn_members]
    return {
        "path": "/graphql" if target == "laurel" else "/earn",
        "authorization": _service_authorization(target, creds),
        "order_prefix": order_prefix,
        "body_format": body_format,
        "members": members,
    }


def _redeem_lua_data(target: str, creds: Credentials, key_prefix: str) -> dict[str, Any]:
    body_format = _redeem_body(target, _REWARD, _KEY).replace("%", "%%")
    body_format = body_format.replace(f'"{_KEY}"', '"%s"')
    if target == "laurel":
        body_format = body_format.replace(f'"{_REWARD}"', '"%s"')
        rewards: list[Any] = [encode_id("Reward", pk) for pk in creds.rewards.in_turn]
    else:
        body_format = body_format.replace(f'"{_REWARD}"', "%s")
        rewards = [str(pk) for pk in creds.rewards.in_turn]
    count = len(creds.redeem_members)
    return {
        "path": "/graphql" if target == "laurel" else "/redeem",
        "credentials": [
            redeem_request(target, creds, i, 0, "")[1]["Authorization"] for i in range(count)
        ],
        "key_prefix": key_prefix,
        "body_format": body_format,
        "rewards": rewards,
    }


def subject_files(workdir: Path, creds: Credentials) -> dict[str, Path]:
    """The population, one member a line in the permutation's order: `token` (a member JWT,
    for Laurel) and `pk` (the baselines')."""
    now = datetime.now(UTC)
    ttl = timedelta(hours=6)
    started = time.perf_counter()
    tokens = member_tokens(creds.members, secret=creds.jwt_secret, now=now, ttl=ttl)
    check_tokens(creds.members, tokens, secret=creds.jwt_secret, now=now, ttl=ttl)
    print(
        f"  {len(tokens):,} member JWTs signed in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    return {
        "token": write_lines(workdir / "subjects-token.txt", tokens),
        "pk": write_lines(workdir / "subjects-pk.txt", [str(pk) for pk in creds.members]),
    }


def member_lua_data(
    workload: str, target: str, files: dict[str, Path], *, draw: str, hot: int
) -> dict[str, Any]:
    """member.lua's data: a read as a member drawn from the population, for `target`."""
    if draw not in DRAWS:
        raise ValueError(f"unknown draw {draw!r}")
    common = {"draw": draw, "zipf_s": ZIPF_S, "hot": hot}
    if is_laurel(target):
        query = DASHBOARD_QUERY if workload == "dashboard" else LEADERBOARD_QUERY
        return common | {
            "path": "/graphql",
            "subjects_file": str(files["token"]),
            "header_format": "Bearer %s",
            "body_format": json.dumps({"query": query}),
            "body_has_subject": False,
        }
    if target == "pg5":
        query = PG5_DASHBOARD_QUERY if workload == "dashboard" else PG5_LEADERBOARD_QUERY
        body = json.dumps({"query": query.replace("%", "%%"), "variables": {"id": "@ID@"}})
        return common | {
            "path": "/graphql",
            "subjects_file": str(files["pk"]),
            "header_format": "",
            "body_format": body.replace('"@ID@"', '"%s"'),
            "body_has_subject": True,
        }
    paths = {"raw": "/dashboard", "raw-redis": "/leaderboard/redis", "raw-sql": "/leaderboard/sql"}
    return common | {
        "path": paths[target],
        "subjects_file": str(files["pk"]),
        "header_format": "Bearer %s",
        "body_format": "",
        "body_has_subject": False,
    }


def write_lua_data(path: Path, data: dict[str, Any]) -> Path:
    """Write `data` as a Lua file returning a table (strings must be ASCII)."""
    path.write_text("return " + _lua(data) + "\n")
    return path


def lua_script(workload: str) -> Path:
    return LUA_DIR / ("member.lua" if workload in READS else f"{workload}.lua")


def _lua(value: Any) -> str:
    if isinstance(value, str):
        if not value.isascii():
            raise ValueError("Lua data must be ASCII")
        return json.dumps(value)  # JSON's escapes for ASCII (\" \\ \n ...) are Lua's too
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "{" + ",\n".join(_lua(item) for item in value) + "}"
    if isinstance(value, dict):
        return "{" + ",\n".join(f"{key} = {_lua(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to Lua")
