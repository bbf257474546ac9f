"""recordPurchase with 3 lines, 5 active earning rules and a segment-targeted promotion, as a
ratio to the plain recordPurchase (no lines, no rules) measured in the same run against the
same server.

    python -m bench.earning_rules                              # 10,000 members, 4 x 8 s
    python -m bench.earning_rules --members 100000 --duration 10 --rounds 3

It seeds (or reuses) its own database, `laurel_bench_rules` (BENCH_PG_DATABASE changes it),
with bench/seed.py's program, starts Laurel as bench/run.py does (one uvicorn worker,
production settings), and alternates rounds: plain orders with no rule in the program, then the
same load with the 5 rules created (a category multiplier, points per unit on a sku, two
exclusions and a minimum-order bonus), a 1.5x promotion for the segment of members who bought
in the last 30 days, and every order made of 3 lines (one matching the multiplier, one the
sku, one excluded shipping). The rules and the promotion are deleted again after each such
round; each round starts with a warm-up so the catalog snapshot is the current one. Both kinds
of order take the PostgreSQL direct path. The load comes from `--connections` concurrent
httpx clients in this process, so throughput is shared with the client's own CPU: the figure
that says what the rules cost Laurel is the server's CPU per request (from /proc), also given
as a ratio. Every answer is checked (no errors, no userErrors, the points expected).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.config import Database
from bench.seed import SeedSize, ensure_seeded
from bench.servers import cpu_seconds, start_uvicorn, stop, wait_until_ready
from bench.workloads import EARN_MUTATION, make_credentials
from models import EarningRuleKind
from models.engine import create_engine, session_factory
from schema.ids import encode_id
from services.earning_rules import create_rule
from services.program import create_promotion
from services.segments import create_segment

LINES = [
    {"sku": "BEANS-1", "category": "coffee", "quantity": 2, "amount": 12.5},
    {"sku": "MUG-1", "category": "kitchen", "amount": 8.25},
    {"sku": "SHIP", "amount": 4.99, "isShipping": True},
]
AMOUNT = 25.74
RULES: list[tuple[str, EarningRuleKind, dict[str, Any]]] = [
    (
        "Coffee x2",
        EarningRuleKind.CATEGORY_MULTIPLIER,
        {"match": {"category": "coffee"}, "multiplier": 2},
    ),
    ("Mugs", EarningRuleKind.SKU_POINTS_PER_UNIT, {"match": {"sku": "MUG-1"}, "points": 5}),
    ("No shipping", EarningRuleKind.EXCLUDE, {"match": {"shipping": True}}),
    ("No gift cards", EarningRuleKind.EXCLUDE, {"match": {"giftCard": True}}),
    ("Big basket", EarningRuleKind.MINIMUM_ORDER_BONUS, {"points": 10, "minimumAmount": 20}),
]


@dataclass(slots=True)
class Round:
    kind: str
    requests: int
    seconds: float
    server_cpu: float

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_per_request_us(self) -> float:
        return self.server_cpu / self.requests * 1e6


# The segment-targeted promotion of the rules rounds: members with a purchase in the last 30
# days (a grouped subquery over purchases, decided in the direct path's one read).
SEGMENT = "Bench regulars"
SEGMENT_RULE = {"all": [{"purchaseCount": {"lastDays": 30, "min": 1}}]}
PROMOTION = "Bench regulars x1.5"


async def _set_rules(db: Database, active: bool) -> None:
    """Delete every earning rule and the targeted promotion; with `active`, create the 5 rules
    and the promotion for a segment (bumping the catalog version)."""
    conn = await asyncpg.connect(db.dsn)
    try:
        await conn.execute("DELETE FROM earning_rules")
        await conn.execute("DELETE FROM promotions WHERE name = $1", PROMOTION)
        await conn.execute("DELETE FROM segments WHERE name = $1", SEGMENT)
        await conn.execute("UPDATE program SET catalog_version = catalog_version + 1")
    finally:
        await conn.close()
    if not active:
        return
    engine = create_engine(db.sqlalchemy_url, pool_size=1)
    now = datetime.now(UTC)
    try:
        async with session_factory(engine).begin() as session:
            segment = await create_segment(session, name=SEGMENT, rule=SEGMENT_RULE, now=now)
            await create_promotion(
                session,
                name=PROMOTION,
                multiplier=1.5,
                starts_at=now - timedelta(hours=1),
                ends_at=now + timedelta(days=1),
                segment_id=segment.id,
            )
            for name, kind, values in RULES:
                await create_rule(
                    session,
                    name=name,
                    kind=kind,
                    values=values,
                    segment_id=None,
                    starts_at=None,
                    ends_at=None,
                    now=datetime.now(UTC),
                )
    finally:
        await engine.dispose()


def _expected(kind: str) -> int:
    # Tier multipliers apply (x1, x1.25, x1.5), so only a lower bound is fixed: plain
    # 25.74 -> >= 25; lines 12.5 x2 = 25, 8 + 5 for the mug, shipping 0, the bonus 10: >= 48.
    return 25 if kind == "plain" else 48


async def _drive(
    client: httpx.AsyncClient,
    key: str,
    members: list[str],
    kind: str,
    prefix: str,
    seconds: float,
    connections: int,
) -> int:
    """Send orders from `connections` workers for `seconds`; the number answered (all checked)."""
    deadline = time.monotonic() + seconds
    counter = itertools.count()
    done = 0
    headers = {"authorization": f"Bearer {key}"}

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            n = next(counter)
            order: dict[str, Any] = {
                "memberId": members[n % len(members)],
                "orderId": f"{prefix}-{n}",
                "amount": AMOUNT,
            }
            if kind == "lines":
                order["lines"] = LINES
            body = json.dumps({"query": EARN_MUTATION, "variables": {"input": order}})
            response = await client.post(
                "/graphql", content=body, headers={**headers, "content-type": "application/json"}
            )
            answer = response.json()
            payload = (answer.get("data") or {}).get("recordPurchase")
            if "errors" in answer or not payload or payload["userErrors"]:
                raise RuntimeError(f"{kind} order {n} failed: {answer}")
            if payload["transaction"]["points"] < _expected(kind):
                raise RuntimeError(f"{kind} order {n} earned too little: {answer}")
            done += 1

    await asyncio.gather(*(worker() for _ in range(connections)))
    return done


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--entries-per-member", type=int, default=5)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each kind")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--earn-pool", type=int, default=5_000)
    args = parser.parse_args()
    db = Database()
    if db.name == "laurel_bench":
        db = replace(db, name="laurel_bench_rules")
    seeded = await ensure_seeded(db, SeedSize(args.members, args.entries_per_member))
    print(
        f"database {db.name}: {seeded.members:,} members, {seeded.ledger_entries:,} entries "
        f"({'reused' if seeded.reused else f'seeded in {seeded.seconds:.0f} s'})"
    )
    await _set_rules(db, active=False)
    creds = await make_credentials(db, dashboard_pool=0, earn_pool=args.earn_pool)
    members = [encode_id("Member", pk) for pk in creds.earn_members]
    run_id = secrets.token_hex(4)
    workdir = Path(tempfile.mkdtemp(prefix="bench-rules-"))
    env = {
        "LAUREL_DATABASE_URL": db.sqlalchemy_url,
        "LAUREL_ENV": "production",
        "LAUREL_JWT_SECRET": creds.jwt_secret,
        "LAUREL_SWEEP_INTERVAL_SECONDS": "0",
    }
    server = start_uvicorn(
        "laurel", "api.app:create_app", factory=True, env=env, log_path=workdir / "laurel.log"
    )
    rounds: list[Round] = []
    try:
        wait_until_ready(server, path="/readyz")
        limits = httpx.Limits(max_connections=args.connections)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
            for n in range(args.rounds):
                for kind in ("plain", "lines"):
                    await _set_rules(db, active=kind == "lines")
                    prefix = f"bench-{run_id}-{kind}-{n}"
                    await _drive(
                        client,
                        creds.api_key,
                        members,
                        kind,
                        f"{prefix}-w",
                        args.warmup,
                        args.connections,
                    )
                    cpu = cpu_seconds(server.process.pid)
                    started = time.monotonic()
                    done = await _drive(
                        client,
                        creds.api_key,
                        members,
                        kind,
                        prefix,
                        args.duration,
                        args.connections,
                    )
                    elapsed = time.monotonic() - started
                    used = cpu_seconds(server.process.pid) - cpu
                    rounds.append(Round(kind, done, elapsed, used))
                    print(
                        f"round {n + 1} {kind:5}: {done / elapsed:8.0f} req/s, "
                        f"server CPU {used / done * 1e6:6.0f} µs a request"
                    )
    finally:
        stop(server)
        await _set_rules(db, active=False)

    def median(kind: str, figure: str) -> float:
        return float(statistics.median(getattr(r, figure) for r in rounds if r.kind == kind))

    plain_tp, lines_tp = median("plain", "throughput"), median("lines", "throughput")
    plain_cpu = median("plain", "cpu_per_request_us")
    lines_cpu = median("lines", "cpu_per_request_us")
    print(
        f"\nplain recordPurchase:          {plain_tp:8.0f} req/s, {plain_cpu:6.0f} µs CPU a request"
    )
    print(
        f"lines, rules, segment promotion: {lines_tp:5.0f} req/s, {lines_cpu:6.0f} µs CPU a request"
    )
    print(f"throughput ratio lines/plain:  {lines_tp / plain_tp:8.2f}x (aim >= 0.8x)")
    print(f"server CPU ratio plain/lines:  {plain_cpu / lines_cpu:8.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
