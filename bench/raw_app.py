"""The baseline: Laurel's dashboard and recordPurchase, by hand on Starlette, asyncpg, orjson.

It does the same reads and writes as Laurel against the same database, with nothing else:
no GraphQL, no ORM, no per-request authentication work beyond reading a header, program and
tiers read once at startup (they are static during a run), one pool of ~8 connections.

* ``POST /dashboard`` (or GET): the member (``Authorization: Bearer <member pk>``, or
  ``?member=<pk>``) with its tier and the next tier's threshold, then its last 10 entries:
  two statements. The response has the same shape and values as Laurel's ``Dashboard``.
* ``POST /earn`` ``{"memberId": <pk>, "orderId": "...", "amount": 12.34}``: in one transaction,
  claim the order id (idempotency insert, ``ON CONFLICT DO NOTHING``), lock the member
  ``FOR UPDATE``, insert the ledger entry and the purchase, update the member's balances and
  tier: five statements. A replayed order id returns its first result, found through the
  purchase row. The points are Laurel's: floor(amount x rate), then x the tier's multiplier.

Run it like Laurel: ``uvicorn bench.raw_app:app --loop uvloop --http httptools``; configured by
BENCH_RAW_DSN, BENCH_RAW_POOL_SIZE and BENCH_RAW_SERVICE_TOKEN (the bearer /earn requires).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import math
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DSN = os.environ.get("BENCH_RAW_DSN", "postgresql://postgres@127.0.0.1:5432/laurel_bench")
POOL_SIZE = int(os.environ.get("BENCH_RAW_POOL_SIZE", "8"))
SERVICE_TOKEN = os.environ.get("BENCH_RAW_SERVICE_TOKEN", "")
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


@contextlib.asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    global pool, static
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
    try:
        yield
    finally:
        await pool.close()


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
        qualifying_points = qualifying_points + $2, tier_id = $3,
        next_settlement_at = LEAST(next_settlement_at, $4)
    WHERE id = $1
    RETURNING available
"""
PENDING_BALANCE_SQL = """
    UPDATE members
    SET pending = pending + $2, qualifying_points = qualifying_points + $2, tier_id = $3,
        next_settlement_at = LEAST(next_settlement_at, $4)
    WHERE id = $1
    RETURNING available
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
        available = await conn.fetchval(
            PENDING_BALANCE_SQL if pending else POSTED_BALANCE_SQL,
            member_id,
            points,
            tier.id,
            available_at if pending else expires_at,
        )
    return JSONResponse(_earn_payload(entry_id, points, available))


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


async def healthz(_: Request) -> Response:
    assert pool is not None
    await pool.fetchval("SELECT 1")
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/dashboard", dashboard, methods=["GET", "POST"]),
        Route("/earn", earn, methods=["POST"]),
        Route("/healthz", healthz),
    ],
    lifespan=lifespan,
)
