"""The baseline: Laurel's dashboard and recordPurchase, by hand on Starlette, asyncpg, orjson.

It does the same reads and writes as Laurel against the same database, with nothing else:
no GraphQL, no ORM, no per-request authentication work beyond reading a header, program and
tiers read once at startup (they are static during a run), one pool of ~8 connections.

* ``POST /dashboard`` (or GET): the member (``Authorization: Bearer <member pk>``, or
  ``?member=<pk>``) with its tier and the next tier's threshold, then its last 10 entries:
  two statements. The response has the same shape and values as Laurel's ``Dashboard``.
* ``POST /earn`` ``{"memberId": <pk>, "orderId": "...", "amount": 12.34}``: in one transaction,
  claim the order id (idempotency insert, ``ON CONFLICT DO NOTHING``), lock the member
  ``FOR UPDATE``, insert the ledger entry and the purchase, update the member's balances
  (``earned_points`` too) and tier, insert the member event(s) (``POINTS_UPDATED``, and
  ``TIER_CHANGED`` when the tier moves, in one statement): six statements. A replayed order
  id returns its first result, found through the purchase row. The points are Laurel's:
  floor(amount x rate), then x the tier's multiplier.
* ``POST /redeem`` ``{"rewardId": <pk>, "idempotencyKey": "..."}`` as a member
  (``Authorization: Bearer <member pk>``): Laurel's ``redeemReward`` in one transaction. Claim
  the key (scope ``redeem:member:<pk>``, ``ON CONFLICT DO NOTHING``), lock the member
  ``FOR UPDATE``, read the reward, check dates, tier, per-member limit (a count, when the
  reward has one) and balance, take a unit of stock with the guarded
  ``UPDATE ... WHERE stock > 0`` when the reward has stock, draw the soonest-expiring lots (one
  ``UPDATE ... FROM`` over a running sum), insert the REDEMPTION entry, update the cached
  balances, insert the member event and the redemption (random voucher code and receipt
  number), record the entry on the claim: 9 statements, 10 with stock. A replayed key returns
  the first redemption; a key reused for another reward, IDEMPOTENCY_CONFLICT. Refusals
  (insufficient points, out of stock, ...) roll everything back and answer ``userErrors``.

* ``POST /leaderboard/sql`` as a member (``Authorization: Bearer <member pk>``): the all-time
  board's top 10, the member's standing and the number ranked, in one statement
  (``bench.ranking.BOARD``: Laurel's rule, counts over the points index); ranks as Laurel's.
* ``POST /leaderboard/redis`` alike: one redis-py pipeline ``ZREVRANGE 0 9 WITHSCORES`` +
  ``ZREVRANK`` + ``ZCARD`` on the board Laurel built (``BENCH_RAW_BOARD_KEY``, members stored
  as ``services.leaderboards.encode_member``), no names; ``me.position`` is ZREVRANK + 1 (the
  member's place in Redis's order, not a competition rank: ties are not resolved).

Run it like Laurel: ``uvicorn bench.raw_app:app --loop uvloop --http httptools``; configured by
BENCH_RAW_DSN, BENCH_RAW_POOL_SIZE, BENCH_RAW_SERVICE_TOKEN (the bearer /earn requires), and
BENCH_RAW_REDIS_URL and BENCH_RAW_BOARD_KEY for ``/leaderboard/redis``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import math
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench import ranking

DSN = os.environ.get("BENCH_RAW_DSN", "postgresql://postgres@127.0.0.1:5432/laurel_bench")
POOL_SIZE = int(os.environ.get("BENCH_RAW_POOL_SIZE", "8"))
SERVICE_TOKEN = os.environ.get("BENCH_RAW_SERVICE_TOKEN", "")
REDIS_URL = os.environ.get("BENCH_RAW_REDIS_URL", "")
BOARD_KEY = os.environ.get("BENCH_RAW_BOARD_KEY", "")
ID_SPAN = 10**15  # services.leaderboards.store: members stored as ID_SPAN - id, 15 digits
CENT = Decimal("0.01")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"data": None, "errors": [{"message": message}]}, status_code=status)


def global_id(type_name: str, pk: int) -> str:
    """Laurel's opaque IDs (schema.ids.encode_id), so both answers are byte-comparable."""
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class TierRow:
    id: int
    name: str
    threshold: int
    multiplier: Decimal


@dataclass(frozen=True, slots=True)
class Static:
    """What does not change during a run, read once."""

    rate: Decimal
    currency: str
    pending_days: int
    expiry_days: int | None
    tiers: tuple[TierRow, ...]  # by threshold

    def tier_for(self, qualifying_points: int) -> TierRow:
        chosen = self.tiers[0]
        for tier in self.tiers:
            if tier.threshold <= qualifying_points:
                chosen = tier
        return chosen

    def tier(self, tier_id: int) -> TierRow:
        return next(t for t in self.tiers if t.id == tier_id)


pool: asyncpg.Pool | None = None
static: Static | None = None
redis: Redis | None = None


@contextlib.asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    global pool, static, redis
    pool = await asyncpg.create_pool(DSN, min_size=POOL_SIZE, max_size=POOL_SIZE)
    program = await pool.fetchrow(
        "SELECT points_per_currency_unit, currency, pending_days, expiry_days FROM program"
    )
    tiers = await pool.fetch("SELECT id, name, threshold, multiplier FROM tiers ORDER BY threshold")
    static = Static(
        rate=program["points_per_currency_unit"],
        currency=program["currency"],
        pending_days=program["pending_days"],
        expiry_days=program["expiry_days"],
        tiers=tuple(TierRow(t["id"], t["name"], t["threshold"], t["multiplier"]) for t in tiers),
    )
    redis = Redis.from_url(REDIS_URL) if REDIS_URL else None
    try:
        yield
    finally:
        await pool.close()
        if redis is not None:
            await redis.aclose()


# -- dashboard -------------------------------------------------------------------------------

MEMBER_SQL = """
    SELECT m.available, m.pending, m.qualifying_points, t.name AS tier_name,
           (SELECT min(n.threshold) FROM tiers AS n WHERE n.threshold > t.threshold)
             AS next_threshold
    FROM members AS m JOIN tiers AS t ON t.id = m.tier_id
    WHERE m.id = $1
"""
ENTRIES_SQL = """
    SELECT id, kind, points, created_at, description
    FROM ledger_entries WHERE member_id = $1
    ORDER BY id DESC LIMIT 10
"""


def member_from(request: Request) -> int | None:
    credential = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    value = credential or request.query_params.get("member", "")
    return int(value) if value.isdigit() else None


async def dashboard(request: Request) -> Response:
    member_id = member_from(request)
    if member_id is None:
        return error(401, "a member is needed: Authorization: Bearer <member id>")
    assert pool is not None
    async with pool.acquire() as conn:
        member = await conn.fetchrow(MEMBER_SQL, member_id)
        if member is None:
            return error(404, "no such member")
        entries = await conn.fetch(ENTRIES_SQL, member_id)
    next_threshold = member["next_threshold"]
    to_next = (
        None if next_threshold is None else max(next_threshold - member["qualifying_points"], 0)
    )
    me = {
        "balance": {"available": member["available"], "pending": member["pending"]},
        "tier": {"name": member["tier_name"]},
        "tierProgress": {"pointsToNext": to_next},
        "transactions": {
            "edges": [
                {
                    "node": {
                        "id": global_id("PointsTransaction", e["id"]),
                        "kind": e["kind"],
                        "points": e["points"],
                        "createdAt": e["created_at"].astimezone(UTC).isoformat(),
                        "description": e["description"],
                    }
                }
                for e in entries
            ]
        },
    }
    return JSONResponse({"data": {"me": me}})


# -- leaderboard -----------------------------------------------------------------------------


async def leaderboard_sql(request: Request) -> Response:
    member_id = member_from(request)
    if member_id is None:
        return error(401, "a member is needed: Authorization: Bearer <member id>")
    assert pool is not None
    rows = await pool.fetch(ranking.BOARD, 10, member_id)
    top = [row for row in rows if row["part"] == 0]
    ranks = ranking.competition_ranks([row["points"] for row in top])
    me = next((row for row in rows if row["part"] == 1), None)
    return JSONResponse(
        {
            "entries": [
                {"memberId": r["id"], "displayName": r["display_name"], "points": r["points"],
                 "rank": rank}
                for r, rank in zip(top, ranks, strict=True)
            ],
            "me": me and {"memberId": me["id"], "displayName": me["display_name"],
                          "points": me["points"], "rank": me["n"]},
            "totalRanked": next(row["n"] for row in rows if row["part"] == 2),
        }
    )  # fmt: skip


async def leaderboard_redis(request: Request) -> Response:
    member_id = member_from(request)
    if member_id is None:
        return error(401, "a member is needed: Authorization: Bearer <member id>")
    if redis is None:
        return error(503, "BENCH_RAW_REDIS_URL is not set")
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrevrange(BOARD_KEY, 0, 9, withscores=True)
        pipe.zrevrank(BOARD_KEY, f"{ID_SPAN - member_id:015d}")
        pipe.zcard(BOARD_KEY)
        top, position, total = await pipe.execute()
    return JSONResponse(
        {
            "entries": [
                {"memberId": ID_SPAN - int(member), "points": int(score)} for member, score in top
            ],
            "me": None if position is None else {"position": position + 1},
            "totalRanked": total,
        }
    )


# -- earn ------------------------------------------------------------------------------------

CLAIM_SQL = """
    INSERT INTO idempotency_records (scope, key, fingerprint, created_at)
    VALUES ('purchase', $1, $2, $3)
    ON CONFLICT (scope, key) DO NOTHING
    RETURNING id
"""
FIRST_USE_SQL = """
    SELECT e.id, e.points, m.available
    FROM purchases AS p
    JOIN ledger_entries AS e ON e.id = p.entry_id
    JOIN members AS m ON m.id = p.member_id
    WHERE p.order_id = $1
"""
LOCK_SQL = "SELECT tier_id, qualifying_points FROM members WHERE id = $1 FOR UPDATE"
ENTRY_SQL = """
    INSERT INTO ledger_entries (member_id, kind, status, points, remaining, description,
                                reference, created_at, available_at, expires_at, breakdown, actor)
    VALUES ($1, 'PURCHASE', $2, $3, $3, $4, $5, $6, $7, $8, $9, 'raw')
    RETURNING id
"""
PURCHASE_SQL = """
    INSERT INTO purchases (order_id, member_id, amount, occurred_at, entry_id, points_earned,
                           refunded_amount, points_reversed)
    VALUES ($1, $2, $3, $4, $5, $6, 0, 0)
"""
POSTED_BALANCE_SQL = """
    UPDATE members
    SET available = available + $2, lifetime_earned = lifetime_earned + $2,
        qualifying_points = qualifying_points + $2, earned_points = earned_points + $2,
        tier_id = $3,
        next_settlement_at = LEAST(next_settlement_at, $4)
    WHERE id = $1
    RETURNING available, pending, lifetime_earned, redeemed, expired
"""
PENDING_BALANCE_SQL = """
    UPDATE members
    SET pending = pending + $2, qualifying_points = qualifying_points + $2,
        earned_points = earned_points + $2, tier_id = $3,
        next_settlement_at = LEAST(next_settlement_at, $4)
    WHERE id = $1
    RETURNING available, pending, lifetime_earned, redeemed, expired
"""
# The member events the change leaves in the outbox (services.events): the balances after the
# entry, and the tier change when there is one.
POINTS_EVENT_SQL = """
    INSERT INTO member_events (member_id, kind, entry_id, data, created_at)
    VALUES ($1, 'POINTS_UPDATED', $2, $3, $4)
"""
POINTS_AND_TIER_EVENTS_SQL = """
    INSERT INTO member_events (member_id, kind, entry_id, data, created_at)
    VALUES ($1, 'POINTS_UPDATED', $2, $3, $4), ($1, 'TIER_CHANGED', NULL, $5, $4)
"""


def earned(static: Static, tier: TierRow, amount: Decimal) -> tuple[int, list[dict[str, Any]]]:
    running = amount * static.rate
    base = math.floor(running)
    breakdown = [{"label": f"{static.rate.normalize():f} points per 1.00 spent", "points": base}]
    if tier.multiplier != 1:
        total = math.floor(running * tier.multiplier)
        breakdown.append({"label": f"{tier.name} tier", "points": total - base})
        return total, breakdown
    return base, breakdown


async def earn(request: Request) -> Response:
    if request.headers.get("authorization", "") != f"Bearer {SERVICE_TOKEN}":
        return error(401, "a service token is needed")
    try:
        body = orjson.loads(await request.body())
        member_id = int(body["memberId"])
        order_id = str(body["orderId"]).strip()
        amount = Decimal(str(body["amount"])).quantize(CENT, rounding=ROUND_HALF_EVEN)
    except (ValueError, KeyError, TypeError, ArithmeticError):
        return error(400, "expected {memberId, orderId, amount}")
    if not order_id or amount < 0:
        return error(400, "orderId must not be blank, amount not negative")
    assert pool is not None and static is not None
    now = datetime.now(UTC)
    request_print = orjson.dumps(
        {"amount": str(amount), "member": member_id, "occurredAt": None},
        option=orjson.OPT_SORT_KEYS,
    )
    fingerprint = hashlib.sha256(request_print).hexdigest()
    async with pool.acquire() as conn, conn.transaction():
        claim_id = await conn.fetchval(CLAIM_SQL, order_id, fingerprint, now)
        if claim_id is None:
            first = await conn.fetchrow(FIRST_USE_SQL, order_id)
            return JSONResponse(_earn_payload(first["id"], first["points"], first["available"]))
        member = await conn.fetchrow(LOCK_SQL, member_id)
        if member is None:
            return error(404, "no such member")
        points, breakdown = earned(static, static.tier(member["tier_id"]), amount)
        available_at = now + timedelta(days=static.pending_days)
        pending = available_at > now
        expires_at = (
            available_at + timedelta(days=static.expiry_days) if static.expiry_days else None
        )
        entry_id = await conn.fetchval(
            ENTRY_SQL,
            member_id,
            "PENDING" if pending else "POSTED",
            points,
            f"Purchase {order_id}: {amount} {static.currency}",
            order_id,
            now,
            available_at,
            expires_at,
            orjson.dumps(breakdown).decode(),
        )
        await conn.execute(PURCHASE_SQL, order_id, member_id, amount, now, entry_id, points)
        tier = static.tier_for(member["qualifying_points"] + points)
        balances = await conn.fetchrow(
            PENDING_BALANCE_SQL if pending else POSTED_BALANCE_SQL,
            member_id,
            points,
            tier.id,
            available_at if pending else expires_at,
        )
        event = orjson.dumps(_balances(balances)).decode()
        if tier.id == member["tier_id"]:
            await conn.execute(POINTS_EVENT_SQL, member_id, entry_id, event, now)
        else:
            moved = orjson.dumps({"from": member["tier_id"], "to": tier.id}).decode()
            await conn.execute(POINTS_AND_TIER_EVENTS_SQL, member_id, entry_id, event, now, moved)
    return JSONResponse(_earn_payload(entry_id, points, balances["available"]))


def _balances(row: asyncpg.Record) -> dict[str, int]:
    """A POINTS_UPDATED event's data, as services.events.balances writes it."""
    return {
        "available": row["available"],
        "pending": row["pending"],
        "lifetimeEarned": row["lifetime_earned"],
        "redeemed": row["redeemed"],
        "expired": row["expired"],
    }


def _earn_payload(entry_id: int, points: int, available: int) -> dict[str, Any]:
    return {
        "data": {
            "recordPurchase": {
                "transaction": {"id": global_id("PointsTransaction", entry_id), "points": points},
                "member": {"balance": {"available": available}},
                "userErrors": [],
            }
        }
    }


# -- redeem ----------------------------------------------------------------------------------

REDEEM_CLAIM_SQL = """
    INSERT INTO idempotency_records (scope, key, fingerprint, created_at)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (scope, key) DO NOTHING
    RETURNING id
"""
CLAIMED_SQL = "SELECT fingerprint, entry_id FROM idempotency_records WHERE scope = $1 AND key = $2"
REPLAY_SQL = """
    SELECT r.id, r.code, r.points, r.status, m.available
    FROM redemptions AS r JOIN members AS m ON m.id = r.member_id
    WHERE r.entry_id = $1
"""
MEMBER_LOCK_SQL = """
    SELECT tier_id, available, next_settlement_at FROM members WHERE id = $1 FOR UPDATE
"""
REWARD_SQL = """
    SELECT name, kind, cost, value, partner_id, minimum_tier_id, stock, starts_at, ends_at,
           per_member_limit, settlement_amount
    FROM rewards WHERE id = $1
"""
REDEEMED_SQL = """
    SELECT count(*) FROM redemptions
    WHERE member_id = $1 AND reward_id = $2 AND status <> 'CANCELLED'
"""
TAKE_STOCK_SQL = "UPDATE rewards SET stock = stock - 1 WHERE id = $1 AND stock > 0 RETURNING stock"
# The member's open lots, soonest-expiring first (never-expiring last, oldest first among
# equals), each drawn down by what is still owed once the lots before it are used up.
DRAW_SQL = """
    WITH lots AS (
        SELECT id, remaining,
               sum(remaining) OVER (ORDER BY expires_at IS NULL, expires_at, id) - remaining
                 AS before
        FROM ledger_entries
        WHERE member_id = $1 AND status = 'POSTED' AND remaining > 0
    )
    UPDATE ledger_entries AS e
    SET remaining = e.remaining - least(l.remaining, $2 - l.before)
    FROM lots AS l
    WHERE e.id = l.id AND l.before < $2
    RETURNING e.id, e.expires_at, least(l.remaining, $2 - l.before) AS taken
"""
SPEND_ENTRY_SQL = """
    INSERT INTO ledger_entries (member_id, kind, status, points, remaining, description,
                                reference, created_at, breakdown, actor)
    VALUES ($1, 'REDEMPTION', 'POSTED', $2, 0, $3, $4, $5, $6, $7)
    RETURNING id
"""
SPEND_BALANCE_SQL = """
    UPDATE members SET available = available - $2, redeemed = redeemed + $2
    WHERE id = $1
    RETURNING available, pending, lifetime_earned, redeemed, expired
"""
REDEMPTION_SQL = """
    INSERT INTO redemptions (member_id, reward_id, partner_id, entry_id, points, value,
                             settlement_amount, status, code, receipt_number, took_stock, drawn,
                             created_at, actor)
    VALUES ($1, $2, $3, $4, $5, $6, $7, 'ISSUED', $8, $9, $10, $11, $12, $13)
    RETURNING id
"""
RECORD_RESULT_SQL = "UPDATE idempotency_records SET entry_id = $2 WHERE id = $1"
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # Laurel's (services.redemptions)
MAX_KEY_LENGTH = 200


class Refused(Exception):
    """A business refusal: the transaction rolls back and the answer carries userErrors."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def new_code(prefix: str = "", groups: int = 4) -> str:
    parts = ["".join(secrets.choice(CODE_ALPHABET) for _ in range(4)) for _ in range(groups)]
    return prefix + "-".join(parts)


async def redeem(request: Request) -> Response:
    member_id = member_from(request)
    if member_id is None:
        return error(401, "a member is needed: Authorization: Bearer <member id>")
    try:
        body = orjson.loads(await request.body())
        reward_id = int(body["rewardId"])
        key = str(body["idempotencyKey"]).strip()
    except (ValueError, KeyError, TypeError):
        return error(400, "expected {rewardId, idempotencyKey}")
    assert pool is not None and static is not None
    try:
        if not key or len(key) > MAX_KEY_LENGTH:
            raise Refused("INVALID", f"idempotencyKey: 1 to {MAX_KEY_LENGTH} characters")
        async with pool.acquire() as conn, conn.transaction():
            return JSONResponse(await _redeem(conn, static, member_id, reward_id, key))
    except Refused as refusal:
        return JSONResponse(_redeem_payload(None, None, [refusal]))


async def _redeem(
    conn: asyncpg.Connection, static: Static, member_id: int, reward_id: int, key: str
) -> dict[str, Any]:
    now = datetime.now(UTC)
    scope = f"redeem:member:{member_id}"
    fingerprint = hashlib.sha256(orjson.dumps({"reward": reward_id})).hexdigest()  # Laurel's
    claim_id = await conn.fetchval(REDEEM_CLAIM_SQL, scope, key, fingerprint, now)
    if claim_id is None:
        first = await conn.fetchrow(CLAIMED_SQL, scope, key)
        if first["fingerprint"] != fingerprint:
            raise Refused("IDEMPOTENCY_CONFLICT", "this idempotency key was already used")
        replayed = await conn.fetchrow(REPLAY_SQL, first["entry_id"])
        return _redeem_payload(replayed, replayed["available"], [])

    member = await conn.fetchrow(MEMBER_LOCK_SQL, member_id)
    if member is None:
        raise Refused("NOT_FOUND", "no such member")
    due = member["next_settlement_at"]
    if due is not None and due <= now:
        # Laurel would activate and expire lots first; the seeded data never needs it.
        raise RuntimeError("the baseline does not settle pending or expiring points")
    reward = await conn.fetchrow(REWARD_SQL, reward_id)
    if reward is None:
        raise Refused("NOT_FOUND", "no such reward")
    if reward["starts_at"] is not None and now < reward["starts_at"]:
        raise Refused("NOT_ELIGIBLE", "this reward is not available yet")
    if reward["ends_at"] is not None and now >= reward["ends_at"]:
        raise Refused("NOT_ELIGIBLE", "this reward is no longer available")
    minimum = reward["minimum_tier_id"]
    if minimum is not None and (
        static.tier(member["tier_id"]).threshold < static.tier(minimum).threshold
    ):
        raise Refused("NOT_ELIGIBLE", "this reward needs a higher tier")
    limit = reward["per_member_limit"]
    if limit is not None and await conn.fetchval(REDEEMED_SQL, member_id, reward_id) >= limit:
        raise Refused("LIMIT_REACHED", "this reward's per-member limit is reached")
    cost = reward["cost"]
    if member["available"] < cost:
        raise Refused("INSUFFICIENT_POINTS", f"{cost} points needed")
    took_stock = reward["stock"] is not None
    if took_stock and await conn.fetchval(TAKE_STOCK_SQL, reward_id) is None:
        raise Refused("OUT_OF_STOCK", "this reward is out of stock")

    lots = await conn.fetch(DRAW_SQL, member_id, cost)
    drawn: list[list[Any]] = []
    for lot in sorted(lots, key=lambda r: (r["expires_at"] is None, r["expires_at"], r["id"])):
        at = lot["expires_at"].isoformat() if lot["expires_at"] is not None else None
        if drawn and drawn[-1][0] == at:
            drawn[-1][1] += lot["taken"]
        else:
            drawn.append([at, lot["taken"]])
    if sum(points for _, points in drawn) != cost:
        raise RuntimeError(f"member {member_id}: lots do not hold the {cost} points available")
    description = f"Redeemed: {reward['name']}"[:500]
    actor = f"member:{member_id}"
    entry_id = await conn.fetchval(
        SPEND_ENTRY_SQL,
        member_id,
        -cost,
        description,
        f"reward:{reward_id}",
        now,
        orjson.dumps([{"label": description, "points": -cost}]).decode(),
        actor,
    )
    balances = await conn.fetchrow(SPEND_BALANCE_SQL, member_id, cost)
    event = orjson.dumps(_balances(balances)).decode()
    await conn.execute(POINTS_EVENT_SQL, member_id, entry_id, event, now)
    code = None if reward["kind"] == "DONATION" else new_code()
    redemption_id = await conn.fetchval(
        REDEMPTION_SQL,
        member_id,
        reward_id,
        reward["partner_id"],
        entry_id,
        cost,
        reward["value"],
        reward["settlement_amount"],
        code,
        new_code("R-", groups=3),
        took_stock,
        orjson.dumps(drawn).decode(),
        now,
        actor,
    )
    await conn.execute(RECORD_RESULT_SQL, claim_id, entry_id)
    redemption = {"id": redemption_id, "code": code, "points": cost, "status": "ISSUED"}
    return _redeem_payload(redemption, balances["available"], [])


def _redeem_payload(
    redemption: Any, available: int | None, refusals: list[Refused]
) -> dict[str, Any]:
    return {
        "data": {
            "redeemReward": {
                "redemption": None
                if redemption is None
                else {
                    "id": global_id("Redemption", redemption["id"]),
                    "code": redemption["code"],
                    "points": redemption["points"],
                    "status": redemption["status"],
                },
                "member": None if available is None else {"balance": {"available": available}},
                "userErrors": [{"code": r.code, "message": r.message} for r in refusals],
            }
        }
    }


async def healthz(_: Request) -> Response:
    assert pool is not None
    await pool.fetchval("SELECT 1")
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/dashboard", dashboard, methods=["GET", "POST"]),
        Route("/earn", earn, methods=["POST"]),
        Route("/redeem", redeem, methods=["POST"]),
        Route("/leaderboard/sql", leaderboard_sql, methods=["GET", "POST"]),
        Route("/leaderboard/redis", leaderboard_redis, methods=["GET", "POST"]),
        Route("/healthz", healthz),
    ],
    lifespan=lifespan,
)
