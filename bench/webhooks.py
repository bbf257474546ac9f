"""Webhook delivery on PostgreSQL, to a receiver in its own process on loopback, against raw
baselines measured in the same run.

    .venv/bin/python -m bench.webhooks [--events 5000] [--rounds 3] [--rate 200] [--seconds 15]

1. A fresh database, `laurel_bench_webhooks` (migrated with `api.database.prepare_database`),
   1,000 members, one endpoint for points.earned at the receiver (`bench/webhook_receiver.py`:
   answers 204 at once, notes when each request came).
2. **Throughput**, each round: `--events` purchases committed with `record_purchase` (the
   member events outbox, as the API writes it) while no worker runs; then one `laurel worker`
   process dispatches and delivers them. Deliveries/s from its first delivery to its last
   (and from its start, dispatch included). Baseline: a raw httpx loop that signs and POSTs as
   many bodies of the same size to the same receiver, with the same concurrency (the worker's
   per-endpoint quota) and client settings: the floor of sending at all. Checks: every event
   arrived exactly once, in each member's order, and every delivery is SUCCEEDED.
3. **Latency** from commit to the first attempt at `--rate` events/s for `--seconds`:
   member.updated events committed by this process through the outbox, one commit each as
   `updateMember` writes them (`record_event`; the time just after each commit is the start,
   the receiver's arrival time the end: one machine, one clock; at most 12 commits at once),
   dispatched and delivered by one `laurel worker` process. (Purchases cost the committing
   process about 5 ms of CPU each: at 200/s they would take a core of this 2-core machine
   and measure its saturation rather than delivery; the throughput rounds use them.)
   `--latency-rounds` rounds of each configuration, in turn:
   * woken through Redis hints (this process publishes them as `laurel serve` does), the
     healthy endpoint alone: the baseline;
   * the same with a second endpoint for the same events that never answers (10 s timeouts;
     its first attempts time out, then it is failing and gets its small quota; a growing
     backlog): the healthy one's latency must not move (ratios to the baseline);
   * without Redis (the worker polls every second), with the dead endpoint.
   Each reports p50 / p99 / max, how many events arrived and the rate achieved; then the
   medians over the rounds.

Prints every figure and writes them as JSON to `bench/results/webhooks-<time>.json`. Exits 1
if a check fails. About 5 minutes on 2 cores with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from api.database import prepare_database
from bench.config import REPO_ROOT, RESULTS_DIR, Database
from models import DeliveryStatus, EventKind, WebhookDelivery, WebhookEndpoint, WebhookEvent
from models import WebhookEventType as T
from models.engine import create_engine, session_factory
from services import members
from services.bus import RedisBus, hint_channel
from services.clock import SystemClock
from services.events import notifying, record_event
from services.leaderboards import connect_redis
from services.ledger.purchases import record_purchase
from services.webhooks.catalog import body as event_body
from services.webhooks.delivery import DeliveryRules
from services.webhooks.dispatch import dispatch
from services.webhooks.endpoints import create_endpoint, delete_endpoint
from services.webhooks.urls import UrlRules
from services.webhooks.worker import new_client

DB = Database(name="laurel_bench_webhooks")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_PREFIX = "laurel-bench-webhooks:"
MEMBERS = 1_000
LOOPBACK = UrlRules(production=False, allow_private=True)
RULES = DeliveryRules(urls=LOOPBACK)
LAUREL = [sys.executable, "-c", "import sys; from api.cli import main; sys.exit(main())"]
Sessions = async_sessionmaker[AsyncSession]


# ---------------------------------------------------------------- set-up


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Receiver:
    """The receiver process and its /stats."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.webhook_receiver", "--port", str(self.port)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        self.process.stdout.readline()  # listening
        self.http = httpx.AsyncClient(base_url=self.url(""), timeout=30)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def stats(self) -> dict[str, list[tuple[str, str | None, float]]]:
        found: dict[str, list[tuple[str, str | None, float]]] = (
            await self.http.get("/stats")
        ).json()
        return found

    async def reset(self) -> None:
        await self.http.post("/reset")

    async def wait_for(self, path: str, count: int, within: float) -> list[Any]:
        deadline = time.monotonic() + within
        while True:
            arrived = (await self.stats()).get(path, [])
            if len(arrived) >= count or time.monotonic() > deadline:
                return arrived
            await asyncio.sleep(0.25)

    async def close(self) -> None:
        await self.http.aclose()
        self.process.terminate()
        self.process.wait(5)


async def fresh_database() -> AsyncEngine:
    admin = await asyncpg.connect(DB.admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB.name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB.name}"')
    finally:
        await admin.close()
    engine = create_engine(DB.sqlalchemy_url, pool_size=16)
    await prepare_database(engine)
    return engine


async def enroll_members(sessions: Sessions) -> list[int]:
    now = SystemClock().now()
    async with sessions.begin() as session:
        ids = []
        for n in range(MEMBERS):
            member = await members.enroll(
                session, email=f"b{n}@example.com", display_name=f"Bench {n}", now=now
            )
            ids.append(member.id)
    await dispatch_all(sessions)  # no endpoint yet: member.enrolled goes nowhere
    return ids


async def dispatch_all(sessions: Sessions) -> None:
    while True:
        async with sessions.begin() as session:
            if not await dispatch(session, SystemClock().now(), limit=2000):
                return


async def add_endpoint(sessions: Sessions, url: str) -> tuple[int, str]:
    async with sessions.begin() as session:
        issued = await create_endpoint(
            session,
            url=url,
            event_types=[T.POINTS_EARNED, T.MEMBER_UPDATED],
            description="bench",
            partner_id=None,
            rules=LOOPBACK,
            now=SystemClock().now(),
        )
    return issued.endpoint.id, issued.secret


async def remove_endpoint(sessions: Sessions, endpoint_id: int) -> None:
    async with sessions.begin() as session:
        endpoint = await session.get_one(WebhookEndpoint, endpoint_id)
        await delete_endpoint(session, endpoint, SystemClock().now())


async def purchase(sessions: Sessions, member_id: int, order: str) -> float:
    """Commit one purchase; the time just after its commit."""
    async with sessions.begin() as session:
        await record_purchase(
            session, member_id=member_id, order_id=order, amount=12, now=SystemClock().now()
        )
    return time.time()


async def member_update(sessions: Sessions, member_id: int, order: str) -> float:
    """Commit one member.updated event through the outbox, as `updateMember` writes it (the
    changed field's name carries the key); the time just after its commit."""
    async with sessions.begin() as session:
        record_event(
            session, member_id, EventKind.MEMBER_UPDATED, SystemClock().now(), {"fields": [order]}
        )
    return time.time()


async def purchases(sessions: Sessions, member_ids: list[int], prefix: str, count: int) -> None:
    """`count` purchases, members in turn, 8 at a time."""
    queue = asyncio.Queue[int]()
    for n in range(count):
        queue.put_nowait(n)

    async def work() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            await purchase(sessions, member_ids[n % len(member_ids)], f"{prefix}-{n}")

    await asyncio.gather(*(work() for _ in range(8)))


def laurel_worker(*, redis: bool) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LAUREL_DATABASE_URL": DB.sqlalchemy_url,
        "LAUREL_WEBHOOKS_ALLOW_PRIVATE": "true",
        "LAUREL_SWEEP_INTERVAL_SECONDS": "0",
    }
    env.pop("LAUREL_REDIS_URL", None)
    if redis:
        env |= {"LAUREL_REDIS_URL": REDIS_URL, "LAUREL_REDIS_PREFIX": REDIS_PREFIX}
    process = subprocess.Popen([*LAUREL, "worker"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if "delivering webhooks" not in line:
        raise RuntimeError(f"laurel worker did not start: {line!r}")
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------- throughput


async def throughput_round(
    sessions: Sessions,
    receiver: Receiver,
    member_ids: list[int],
    round_no: int,
    events: int,
    problems: list[str],
) -> dict[str, float]:
    await receiver.reset()
    await purchases(sessions, member_ids, f"t{round_no}", events)
    started = time.time()
    worker = laurel_worker(redis=False)
    try:
        arrived = await receiver.wait_for("/ok", events, within=120)
    finally:
        stop(worker)
    check_arrivals(arrived, events, f"throughput round {round_no}", problems)
    async with sessions() as session:
        left = await session.scalar(
            select(func.count()).where(WebhookDelivery.status != DeliveryStatus.SUCCEEDED)
        )
    if left:
        problems.append(f"throughput round {round_no}: {left} deliveries not SUCCEEDED")
    times = sorted(at for _, _, at in arrived)
    return {
        "deliveries_per_s": (len(times) - 1) / (times[-1] - times[0]),
        "from_start_per_s": len(times) / (times[-1] - started),
    }


def check_arrivals(arrived: list[Any], expected: int, what: str, problems: list[str]) -> None:
    ids = [message_id for message_id, _, _ in arrived]
    if len(ids) != expected or len(set(ids)) != expected:
        problems.append(f"{what}: {len(ids)} arrivals, {len(set(ids))} distinct, {expected} sent")
    seqs: dict[str, list[int]] = defaultdict(list)
    for _, reference, _ in sorted(arrived, key=lambda a: a[2]):
        if reference is not None:
            prefix, _, n = reference.rpartition("-")
            seqs[f"{prefix}/{int(n) % MEMBERS}"].append(int(n))
    if any(s != sorted(s) for s in seqs.values()):
        problems.append(f"{what}: a member's events arrived out of order")


async def raw_baseline(sessions: Sessions, receiver: Receiver, count: int) -> float:
    """Sign and POST `count` bodies like the worker's, `per_endpoint` at a time."""
    async with sessions() as session:
        event = await session.scalar(select(WebhookEvent).limit(1))
    assert event is not None
    body = event_body(event)
    signer = Webhook("whsec_" + "QmVuY2ggc2VjcmV0IGZvciB0aGUgcmF3IGxvb3A=")
    queue = asyncio.Queue[int]()
    for n in range(count):
        queue.put_nowait(n)
    async with new_client(RULES) as client:

        async def work() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                at = datetime.now(UTC)
                message_id = f"raw-{n}"
                response = await client.post(
                    receiver.url("/raw"),
                    content=body,
                    headers={
                        "content-type": "application/json",
                        "webhook-id": message_id,
                        "webhook-timestamp": str(int(at.timestamp())),
                        "webhook-signature": signer.sign(message_id, at, body),
                    },
                )
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(work() for _ in range(RULES.per_endpoint)))
        return count / (time.perf_counter() - started)


# ---------------------------------------------------------------- latency


async def paced_purchases(
    sessions: Sessions, member_ids: list[int], prefix: str, rate: float, seconds: float
) -> dict[str, float]:
    """Events at `rate`/s for `seconds` (at most 12 at once: a slow moment lowers the rate
    rather than queueing for connections); each one's commit time."""
    committed: dict[str, float] = {}
    tasks = []
    count = int(rate * seconds)
    start = time.monotonic()
    gate = asyncio.Semaphore(12)

    async def one(n: int) -> None:
        order = f"{prefix}-{n}"
        async with gate:
            committed[order] = await member_update(sessions, member_ids[n % len(member_ids)], order)

    for n in range(count):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    return committed


def achieved_rate(committed: dict[str, float]) -> float:
    times = sorted(committed.values())
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


async def latency_config(
    name: str,
    engine: AsyncEngine,
    receiver: Receiver,
    member_ids: list[int],
    args: argparse.Namespace,
    *,
    dead: bool,
    hints: bool,
    problems: list[str],
) -> dict[str, Any]:
    await receiver.reset()
    sessions = session_factory(engine)
    dead_id = await add_endpoint(sessions, receiver.url("/dead")) if dead else None
    bus: RedisBus | None = None
    process = laurel_worker(redis=hints)
    committing = sessions
    if hints:
        redis = connect_redis(REDIS_URL)
        bus = RedisBus(
            redis, listener=Redis.from_url(REDIS_URL), channel=hint_channel(REDIS_PREFIX)
        )
        await bus.start()
        committing = session_factory(engine, info=notifying(bus.committed))
    try:
        await paced_purchases(committing, member_ids, f"w{name}", args.rate, 1.0)  # warm-up
        committed = await paced_purchases(
            committing, member_ids, f"l{name}", args.rate, args.seconds
        )
        arrived = await receiver.wait_for("/ok", len(committed) + int(args.rate), within=30)
        dead_attempts = len((await receiver.stats()).get("/dead", []))
    finally:
        stop(process)
        if bus is not None:
            await bus.stop()
            await bus.listener.aclose()
            await redis.aclose()
        if dead_id is not None:
            await remove_endpoint(sessions, dead_id[0])
    came = {reference: at for _, reference, at in arrived if reference in committed}
    latencies = sorted((came[o] - committed[o]) * 1000 for o in committed if o in came)
    if len(latencies) != len(committed):
        problems.append(f"latency {name}: {len(committed) - len(latencies)} events never came")
    return {
        "config": name,
        "events": len(committed),
        "rate_per_s": achieved_rate(committed),
        "arrived": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "dead_endpoint_attempts": dead_attempts,
    }


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def redis_up() -> bool:
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


# ---------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> int:
    problems: list[str] = []
    engine = await fresh_database()
    sessions = session_factory(engine)
    receiver = Receiver()
    results: dict[str, Any] = {"args": vars(args), "at": datetime.now(UTC).isoformat()}
    try:
        member_ids = await enroll_members(sessions)
        await add_endpoint(sessions, receiver.url("/ok"))

        print(f"throughput: {args.events} events a round, one `laurel worker` process")
        rounds = []
        for n in range(args.rounds):
            figures = await throughput_round(
                sessions, receiver, member_ids, n, args.events, problems
            )
            raw = await raw_baseline(sessions, receiver, args.events)
            figures["raw_per_s"] = raw
            figures["ratio"] = figures["deliveries_per_s"] / raw
            rounds.append(figures)
            print(
                f"  round {n + 1}: worker {figures['deliveries_per_s']:7.0f}/s "
                f"({figures['from_start_per_s']:5.0f}/s from its start, dispatch included); "
                f"raw httpx loop {raw:7.0f}/s; ratio {figures['ratio']:.2f}"
            )
        results["throughput"] = rounds
        print(
            f"  median: worker {statistics.median(r['deliveries_per_s'] for r in rounds):.0f}/s, "
            f"ratio to raw {statistics.median(r['ratio'] for r in rounds):.2f}"
        )

        print(
            f"latency, commit to first attempt, {args.rate:.0f} member.updated events/s for "
            f"{args.seconds:g} s, one `laurel worker` process:"
        )
        if await redis_up():
            configs = [("hints", False, True), ("hints+dead", True, True)]
        else:
            print("  (Redis unreachable: only the polling worker runs)")
            configs = []
        configs.append(("polling+dead", True, False))
        latency = []
        for n in range(args.latency_rounds):  # the configurations in turn, round after round
            for name, dead, hints in configs:
                measured = await latency_config(
                    f"{name}/{n + 1}",
                    engine,
                    receiver,
                    member_ids,
                    args,
                    dead=dead,
                    hints=hints,
                    problems=problems,
                )
                measured["config"] = name
                latency.append(measured)
                print(
                    f"  {name:<14} round {n + 1}: p50 {measured['p50_ms']:6.1f} ms  "
                    f"p99 {measured['p99_ms']:6.1f} ms  max {measured['max_ms']:6.1f} ms  "
                    f"({measured['arrived']}/{measured['events']} arrived at "
                    f"{measured['rate_per_s']:.0f}/s; dead endpoint attempts "
                    f"{measured['dead_endpoint_attempts']})"
                )
        results["latency"] = latency
        medians = {
            name: {
                p: statistics.median(f[p] for f in latency if f["config"] == name)
                for p in ("p50_ms", "p99_ms")
            }
            for name, _, _ in configs
        }
        results["latency_medians"] = medians
        base = medians[configs[0][0]]
        for name, figures in medians.items():
            print(
                f"  median {name:<14} p50 {figures['p50_ms']:6.1f} ms  p99 "
                f"{figures['p99_ms']:6.1f} ms;  x{figures['p50_ms'] / base['p50_ms']:.2f} and "
                f"x{figures['p99_ms'] / base['p99_ms']:.2f} of {configs[0][0]}"
            )
    finally:
        await receiver.close()
        await engine.dispose()
    results["problems"] = problems
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"webhooks-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out.relative_to(REPO_ROOT)}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0, help="events/s (latency)")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--latency-rounds", type=int, default=2)
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
