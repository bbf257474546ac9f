"""Live updates under load (issue #4): how many `pointsUpdated` subscribers one Laurel process
holds, what each costs in memory, and how long a purchase takes to reach its member's socket,
against a raw Starlette + asyncpg LISTEN/NOTIFY baseline measured in the same run.

    .venv/bin/python -m bench.live [--subscribers 5000] [--purchases 300] [--rate 50]
                                   [--writers same,other] [--client-processes 2]
                                   [--order raw,laurel] [--cycles 1]

1. **Seed**: drops and creates `laurel_bench_live`, migrates it with
   `api.database.prepare_database`, inserts the members with one `INSERT ... SELECT` over
   `generate_series`, creates a service key (`services.access.create_api_key`) and the
   baseline's two tables. Every member gets an HS256 JWT (`issue_member_token`, a random
   secret that both servers are given).
2. **Per server, one after the other** (`--order`; one server's processes at a time):
   * start it: Laurel as `laurel serve` (`LAUREL_ENV=production`, its own Redis prefix, the
     sweeper off, the default pool and limits); the baseline as
     `python -m bench.live_clients raw-server` (see that module: the same uvicorn options and
     log level, an HS256 check in `connection_init`, LISTEN/NOTIFY delivery, no GraphQL, no
     outbox read). With the `other` writer, a second process of the same server too;
   * warm up: one subscriber in the driver, purchases until one is delivered; then the
     server's RSS (`VmRSS`) once its CPU is idle;
   * open one WebSocket a member from `--client-processes` separate processes (so the
     clients' CPU is not the server's), graphql-transport-ws by hand with the `websockets`
     library: `connection_init` -> `connection_ack` -> `subscribe pointsUpdated`;
   * wait until the server's CPU is idle again (every subscription has started: Laurel reads
     the member's last event id once), read its RSS again: (after - before) / subscribers is
     the memory a subscriber costs; then its CPU over 2 s of doing nothing (keep-alive pings);
   * per writer (`--writers`): `same` records the purchases on the subscribers' process (in
     Laurel its commit rings the doorbell in process); `other` on the second process (in
     Laurel the hint then crosses Redis pub/sub; the baseline's NOTIFY goes through
     PostgreSQL either way). `--probes` purchases first, which must all arrive (every
     subscription is live), then `--purchases` over HTTP at `--rate` a second for random
     subscribed members; each records its send and response times (the commit has happened
     by the response), each client the arrival time of every `next` (CLOCK_MONOTONIC, one
     clock for every process of the machine); every purchase must arrive exactly once, on its
     member's socket;
   * close every socket, read the RSS once more (`--cycles N`: open and close everyone N
     times, to see whether memory keeps growing), stop the servers.
3. **Report**: subscribed / requested, connections opened a second and server CPU per
   connection, RSS before / subscribed / after closing and per subscriber, idle CPU, per
   writer the purchase -> delivery latency (from the response and from the send) p50 / p99 /
   max, the mutation's own latency, deliveries (exactly once), server CPU per purchase, and
   Laurel/raw ratios. Aims (issue 12): 20,000 subscribers on one process, p99 from commit
   to delivery under 100 ms, at most 24 KiB a subscriber. Everything goes to
   `bench/results/live-<UTC timestamp>.json`, with the servers' log tails; the servers' and
   clients' whole logs stay in a /tmp directory.

Exit status 1 when a server failed, a subscriber failed to connect or subscribe, a purchase
failed, or a purchase was not delivered exactly once to its member. Loopback only, bounded:
about 1.5 minutes with the defaults on 2 cores (open timeouts: `--open-deadline`, 150 s, for
all subscribers; 20,000 need more on a busy machine).

"From response" may be negative: in Laurel the process that commits rings its own
subscribers at once, and the baseline's notification is sent at COMMIT, so a delivery can
land before the mutation's HTTP response does. `BENCH_LIVE_LAUREL` replaces the command that
serves Laurel (say, a wrapper that profiles it in process; its pid must be the server's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import secrets
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from bench.config import REPO_ROOT, RESULTS_DIR, Database
from bench.live_clients import (
    PROTOCOL,
    RAW_UVICORN_OPTIONS,
    ClientJob,
    raise_open_files_limit,
)
from bench.servers import CLOCK_TICKS, Server, cpu_seconds, free_port, stop, wait_until_ready

DB = Database(name=os.environ.get("BENCH_LIVE_DATABASE", "laurel_bench_live"))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# The command that serves Laurel; BENCH_LIVE_LAUREL replaces it (e.g. a wrapper that profiles
# the server in-process: its pid must be the server's, for RSS and CPU).
LAUREL = shlex.split(os.environ.get("BENCH_LIVE_LAUREL", "")) or [
    str(Path(sys.executable).with_name("laurel"))
]

SUBSCRIPTION = (
    "subscription LivePoints { pointsUpdated { transaction { reference points } "
    "balance { available } } }"
)
PURCHASE = (
    "mutation LivePurchase($input: RecordPurchaseInput!) { recordPurchase(input: $input) { "
    "transaction { id } userErrors { code message } } }"
)
# Issue 12's aims: 20,000 subscribers on one process, commit-to-delivery p99 under 100 ms, at
# most 24 KiB a subscriber (RSS growth / subscribers).
AIM_SUBSCRIBERS = 20_000
AIM_P99_MS = 100.0
AIM_KIB_PER_SUBSCRIBER = 24.0
# Cores used by processes other than the bench's during a batch past which it is flagged: on a
# shared machine, a server starved of CPU shows queueing, not its own latency.
NOISY_CORES = 0.6

Post = Callable[[httpx.AsyncClient, int, str], Awaitable[str | None]]


# ---------------------------------------------------------------- seeding


@dataclass(frozen=True)
class Seeded:
    members: list[int]
    service_key: str
    seconds: float


async def seed(members: int) -> Seeded:
    """A fresh `laurel_bench_live`: migrated, `members` members, a service key, raw tables."""
    from api.database import prepare_database
    from models import KeyRole
    from models.engine import create_engine, session_factory
    from services.access import create_api_key

    started = time.perf_counter()
    admin = await asyncpg.connect(DB.admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB.name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB.name}"')
    finally:
        await admin.close()
    engine = create_engine(DB.sqlalchemy_url, pool_size=1)
    try:
        await prepare_database(engine)
        async with session_factory(engine).begin() as session:
            issued = await create_api_key(
                session, role=KeyRole.SERVICE, name="bench live", now=datetime.now(UTC)
            )
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(DB.dsn)
    try:
        tier_id = await conn.fetchval("SELECT id FROM tiers ORDER BY threshold LIMIT 1")
        await conn.execute(
            """
            INSERT INTO members (email, display_name, joined_at, referral_code, referral_rewarded,
                                 tier_id, available, pending, lifetime_earned, redeemed, expired,
                                 qualifying_points)
            SELECT 'live' || i || '@bench.example', 'Live ' || i, now() - interval '30 days',
                   'LIVE' || lpad(i::text, 10, '0'), false, $1, 0, 0, 0, 0, 0, 0
            FROM generate_series(1, $2::int) AS i
            """,
            tier_id,
            members,
        )
        await conn.execute(
            """
            CREATE TABLE raw_live_events (id bigserial PRIMARY KEY, member_id bigint NOT NULL,
                                          order_id text NOT NULL UNIQUE, points int NOT NULL,
                                          created_at timestamptz NOT NULL DEFAULT now());
            CREATE TABLE raw_live_balances (member_id bigint PRIMARY KEY,
                                            available bigint NOT NULL);
            ANALYZE members;
            """
        )
        ids = [int(r["id"]) for r in await conn.fetch("SELECT id FROM members ORDER BY id")]
    finally:
        await conn.close()
    return Seeded(ids, issued.secret, time.perf_counter() - started)


def member_tokens(members: list[int], secret: str) -> dict[int, str]:
    from schema.ids import encode_id
    from services.access import issue_member_token

    now = datetime.now(UTC)
    return {
        m: issue_member_token(
            subject=encode_id("Member", m), secret=secret, now=now, ttl=timedelta(hours=2)
        )
        for m in members
    }


# ---------------------------------------------------------------- servers


@dataclass(frozen=True)
class Target:
    name: str
    start: Callable[[Path], Server]
    ready_path: str
    post: Post
    redis_prefix: str | None = None  # Laurel's keys (leaderboards...), deleted at the end


async def drop_redis_keys(prefix: str) -> int:
    """Delete every Redis key under `prefix`; returns how many."""
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(await redis.delete(*batch))
                batch = []
        if batch:
            deleted += int(await redis.delete(*batch))
    finally:
        await redis.aclose()
    return deleted


def _laurel_target(jwt_secret: str, service_key: str) -> Target:
    from schema.ids import encode_id

    prefix = f"laurelbenchlive:{uuid.uuid4().hex[:12]}:"

    def start(log_path: Path) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAUREL_")}
        env.update(
            LAUREL_DATABASE_URL=DB.sqlalchemy_url,
            LAUREL_REDIS_URL=REDIS_URL,
            LAUREL_REDIS_PREFIX=prefix,
            LAUREL_JWT_SECRET=jwt_secret,
            LAUREL_ENV="production",
            LAUREL_SWEEP_INTERVAL_SECONDS="0",
        )
        port = free_port()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*LAUREL, "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return Server(name="laurel", port=port, process=process, log_path=log_path)

    headers = {"authorization": f"Bearer {service_key}"}

    async def post(client: httpx.AsyncClient, member: int, order: str) -> str | None:
        variables = {
            "input": {"memberId": encode_id("Member", member), "orderId": order, "amount": 10.0}
        }
        response = await client.post(
            "/graphql", json={"query": PURCHASE, "variables": variables}, headers=headers
        )
        if response.status_code != 200:
            return f"{response.status_code} {response.text[:300]}"
        body = response.json()
        data = (body.get("data") or {}).get("recordPurchase") or {}
        if body.get("errors") or data.get("userErrors") or not data.get("transaction"):
            return response.text[:300]
        return None

    return Target("laurel", start, "/readyz", post, redis_prefix=prefix)


def _raw_target(jwt_secret: str) -> Target:
    def start(log_path: Path) -> Server:
        env = {**os.environ, "BENCH_LIVE_DSN": DB.dsn, "BENCH_LIVE_JWT_SECRET": jwt_secret}
        port = free_port()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.live_clients", "raw-server", "--port", str(port)],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return Server(name="raw", port=port, process=process, log_path=log_path)

    async def post(client: httpx.AsyncClient, member: int, order: str) -> str | None:
        response = await client.post(
            "/purchase", json={"memberId": member, "orderId": order, "points": 10}
        )
        return None if response.status_code == 200 else f"{response.status_code} {response.text}"

    return Target("raw", start, "/healthz", post)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def machine_ticks() -> tuple[int, int, int]:
    """The whole machine's CPU clock ticks so far: (busy, idle + iowait, steal)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq, idle + iowait, steal


def machine_cores(before: tuple[int, int, int], seconds: float) -> dict[str, float]:
    """Cores busy (all processes, ours and everyone else's) and stolen by the hypervisor."""
    after = machine_ticks()
    busy, _, steal = (a - b for a, b in zip(after, before, strict=True))
    return {"busy": busy / CLOCK_TICKS / seconds, "steal": steal / CLOCK_TICKS / seconds}


def open_files_limit(pid: int) -> int | None:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return None


async def settle(pid: int, *, idle_cores: float = 0.1, limit: float = 60.0) -> float:
    """Wait until the process uses under `idle_cores` over half a second; returns seconds."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        before = cpu_seconds(pid)
        await asyncio.sleep(0.5)
        if (cpu_seconds(pid) - before) / 0.5 < idle_cores:
            break
    return time.monotonic() - began


async def idle_cpu(pid: int, seconds: float = 2.0) -> float:
    """Cores the process uses while nothing is asked of it (keep-alive pings, timers)."""
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


# ---------------------------------------------------------------- client processes


class ClientProcess:
    """One `python -m bench.live_clients client` process, driven over its stdin/stdout."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @classmethod
    async def start(cls, job: ClientJob, directory: Path, number: int) -> ClientProcess:
        job_path = directory / f"client-{number}.json"
        job.dump(job_path)
        log_path = directory / f"client-{number}.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.live_clients",
                "client",
                str(job_path),
                cwd=REPO_ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=1 << 24,
            )
        return cls(process, log_path)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def read(self, within: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), within)
        if not line:
            code = await self.process.wait()
            raise RuntimeError(f"a client process exited ({code}):\n{self.log_tail()}")
        message: dict[str, Any] = orjson.loads(line)
        return message

    async def command(self, cmd: str, within: float = 30.0) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(orjson.dumps({"cmd": cmd}) + b"\n")
        await self.process.stdin.drain()
        return await self.read(within)

    async def stop(self) -> float | None:
        """Close its sockets (seconds it took) and let it exit; killed if it hangs."""
        seconds = None
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                seconds = float((await self.command("stop", within=45))["seconds"])
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.kill()
                await self.process.wait()
        return seconds

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


# ---------------------------------------------------------------- purchases


@dataclass
class Sent:
    order: str
    member: int
    sent: float
    responded: float
    error: str | None


async def drive(
    target: Target,
    client: httpx.AsyncClient,
    members: list[int],
    count: int,
    rate: float,
    tag: str,
    rng: random.Random,
) -> list[Sent]:
    """`count` purchases for random members, one every 1/rate s (not waiting for answers)."""

    async def one(order: str, member: int) -> Sent:
        sent = time.monotonic()
        try:
            error = await target.post(client, member, order)
        except (httpx.HTTPError, ValueError) as exc:  # a failed request, a body not JSON
            error = f"{type(exc).__name__}: {exc}"
        return Sent(order, member, sent, time.monotonic(), error)

    tasks: list[asyncio.Task[Sent]] = []
    began = time.monotonic()
    for number in range(count):
        delay = began + number / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        member = rng.choice(members)
        tasks.append(asyncio.create_task(one(f"{tag}-{number}", member)))
    return list(await asyncio.gather(*tasks))


async def wait_for_receipts(clients: list[ClientProcess], expected: int, within: float) -> int:
    deadline = time.monotonic() + within
    while True:
        counts = [int((await c.command("count"))["count"]) for c in clients]
        if sum(counts) >= expected or time.monotonic() > deadline:
            return sum(counts)
        await asyncio.sleep(0.1)


async def warm_up(
    target: Target, server: Server, client: httpx.AsyncClient, member: int, token: str
) -> int:
    """One subscriber in the driver; purchases until one reaches it. Returns the purchases."""
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    async with connect(
        f"ws://127.0.0.1:{server.port}/graphql",
        subprotocols=[Subprotocol(PROTOCOL)],
        compression=None,
        proxy=None,
        open_timeout=10,
    ) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(orjson.dumps(init).decode())
        ack = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"{target.name}: warm-up subscriber refused: {ack}")
        subscribe = {"id": "w", "type": "subscribe", "payload": {"query": SUBSCRIPTION}}
        await ws.send(orjson.dumps(subscribe).decode())
        for attempt in range(1, 41):
            error = await target.post(client, member, f"warmup-{attempt}")
            if error:
                raise RuntimeError(f"{target.name}: warm-up purchase failed: {error}")
            with contextlib.suppress(TimeoutError):
                message = orjson.loads(await asyncio.wait_for(ws.recv(), 0.5))
                if message.get("type") != "next":
                    raise RuntimeError(f"{target.name}: warm-up subscriber got {message}")
                for n in range(10):  # a few more, to warm the pools and caches
                    await target.post(client, member, f"warmup-x{n}")
                # and their deliveries, so that none is in flight when the socket closes
                with contextlib.suppress(TimeoutError):
                    for _ in range(10):
                        await asyncio.wait_for(ws.recv(), 2)
                return attempt + 10
    raise RuntimeError(f"{target.name}: no purchase reached the warm-up subscriber in 40 tries")


# ---------------------------------------------------------------- measuring one server


def percentile(values: list[float], q: float) -> float:
    """Nearest rank."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def spread(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 0.50),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else math.nan,
        "mean": statistics.fmean(values) if values else math.nan,
    }


@dataclass
class Options:
    subscribers: int
    purchases: int
    probes: int
    rate: float
    rounds: int
    client_processes: int
    concurrency: int
    delivery_timeout: float
    writers: list[str]
    cycles: int
    seed: int
    open_deadline: float = 150.0  # seconds for every subscriber to open, a client process


WRITERS = {
    "same": "purchases on the subscribers' process",
    "other": "purchases on a second process",
}


@dataclass
class Batch:
    """One writer's purchases: how they went and how they were delivered."""

    writer: str
    probes: dict[str, int] = field(default_factory=dict)
    purchases_ok: int = 0
    errors: list[str] = field(default_factory=list)
    delivered_once: int = 0
    missing: int = 0
    duplicated: int = 0
    wrong_member: int = 0
    from_response_ms: dict[str, float] = field(default_factory=dict)
    from_send_ms: dict[str, float] = field(default_factory=dict)
    mutation_ms: dict[str, float] = field(default_factory=dict)
    rounds_p99_from_response_ms: list[float] = field(default_factory=list)
    seconds: float = math.nan
    cpu_cores: float = math.nan  # the subscribers' server
    cpu_ms_each: float = math.nan
    writer_cpu_ms_each: float = math.nan  # the second process, when it wrote
    # cores: busy (the whole machine), stolen by the hypervisor, used by the bench's own
    # processes (servers, clients, driver), and by the others (PostgreSQL, Redis, the rest)
    machine: dict[str, float] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list, repr=False)

    @property
    def failed(self) -> bool:
        return bool(
            self.errors
            or self.missing
            or self.duplicated
            or self.wrong_member
            or self.probes.get("delivered", 0) < self.probes.get("ok", 0)
            or self.probes.get("ok", 0) < self.probes.get("sent", 0)
        )

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "sent"}


@dataclass
class PhaseResult:
    name: str
    requested: int = 0
    connected: int = 0
    acked: int = 0
    subscribed: int = 0
    connect_failures: dict[str, int] = field(default_factory=dict)
    open_seconds: float = math.nan
    open_cpu_seconds: float = math.nan
    settle_seconds: float = math.nan
    idle_cpu_cores: float = math.nan  # with every subscriber connected
    open_machine: dict[str, float] = field(default_factory=dict)
    open_files_limit: int | None = None
    rss_kib: dict[str, int] = field(default_factory=dict)
    batches: dict[str, Batch] = field(default_factory=dict)
    unexpected_messages: int = 0
    unexpected_sample: list[str] = field(default_factory=list)
    closed_early: dict[str, int] = field(default_factory=dict)
    close_seconds: float | None = None
    reopened: list[dict[str, Any]] = field(default_factory=list)  # later cycles
    error: str | None = None
    log_tail: str = ""
    writer_log_tail: str = ""
    client_log_tails: list[str] = field(default_factory=list)

    @property
    def per_subscriber_kib(self) -> float:
        grown = self.rss_kib.get("subscribed", 0) - self.rss_kib.get("before", 0)
        return grown / self.subscribed if self.subscribed else math.nan

    @property
    def failed(self) -> bool:
        return bool(
            self.error
            or self.subscribed < self.requested
            or any(b.failed for b in self.batches.values())
            or any(c["subscribed"] < self.requested for c in self.reopened)
        )

    def summary(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "batches"}
        data["batches"] = {name: batch.summary() for name, batch in self.batches.items()}
        return data | {"per_subscriber_kib": self.per_subscriber_kib, "failed": self.failed}


async def start_server(target: Target, log_path: Path) -> Server:
    server = target.start(log_path)
    try:
        await asyncio.to_thread(wait_until_ready, server, path=target.ready_path, timeout=60)
    except BaseException:
        await asyncio.to_thread(stop, server)
        raise
    return server


def http_client(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url,
        timeout=15,
        trust_env=False,  # loopback, never through a proxy
        # Idle connections dropped well before uvicorn's 5 s keep-alive timeout: reusing one
        # as the server closes it fails the request (a ReadError), more so on a busy machine.
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=2),
    )


@dataclass
class Opened:
    clients: list[ClientProcess]
    subscribed: list[int]
    connected: int
    acked: int
    failures: dict[str, int]
    seconds: float


async def open_subscribers(
    server: Server, options: Options, members: list[int], tokens: dict[int, str], directory: Path
) -> Opened:
    """Client processes, each opening its share of the members' subscriptions."""
    began = time.monotonic()
    url = f"ws://127.0.0.1:{server.port}/graphql"
    opened = Opened([], [], 0, 0, {}, math.nan)
    try:
        for number in range(options.client_processes):
            share = members[number :: options.client_processes]
            job = ClientJob(
                url=url,
                members=[(m, tokens[m]) for m in share],
                query=SUBSCRIPTION,
                concurrency=options.concurrency,
                open_deadline=options.open_deadline,
            )
            opened.clients.append(await ClientProcess.start(job, directory, number))
        for client in opened.clients:
            report = await client.read(within=options.open_deadline + 50)
            opened.connected += int(report["connected"])
            opened.acked += int(report["acked"])
            opened.subscribed += [int(m) for m in report["subscribed"]]
            for reason, count in report["failures"].items():
                opened.failures[reason] = opened.failures.get(reason, 0) + int(count)
    except BaseException:
        for client in opened.clients:
            client.kill()
        raise
    opened.seconds = time.monotonic() - began
    return opened


async def purchase_batch(
    target: Target,
    writer: str,
    http: httpx.AsyncClient,
    pids: tuple[int, int | None],
    clients: list[ClientProcess],
    subscribed: list[int],
    options: Options,
    rng: random.Random,
    received_before: int,
) -> tuple[Batch, int]:
    """Probes (all must arrive), then the measured purchases; returns the batch and the
    receipts the clients should now hold in all."""
    batch = Batch(writer)
    probes = await drive(target, http, subscribed, options.probes, 50.0, f"probe-{writer}", rng)
    probes_ok = [s for s in probes if s.error is None]
    expected = received_before + len(probes_ok)
    delivered = await wait_for_receipts(clients, expected, options.delivery_timeout)
    batch.probes = {
        "sent": len(probes),
        "ok": len(probes_ok),
        "delivered": delivered - received_before,
    }
    batch.errors += [s.error for s in probes if s.error][:5]

    server_pid, writer_pid = pids
    cpu_before = cpu_seconds(server_pid)
    writer_before = cpu_seconds(writer_pid) if writer_pid else 0.0
    machine_before = machine_ticks()
    ours_before = _our_cpu(clients, pids)
    began = time.monotonic()
    tag = f"live-{target.name}-{writer}-{uuid.uuid4().hex[:8]}"
    batch.sent = await drive(target, http, subscribed, options.purchases, options.rate, tag, rng)
    ok = [s for s in batch.sent if s.error is None]
    batch.purchases_ok = len(ok)
    batch.errors += [s.error for s in batch.sent if s.error][:5]
    expected += len(ok)
    await wait_for_receipts(clients, expected, options.delivery_timeout)
    batch.seconds = time.monotonic() - began
    batch.machine = machine_cores(machine_before, batch.seconds)
    batch.machine["bench processes"] = (_our_cpu(clients, pids) - ours_before) / batch.seconds
    batch.machine["others"] = batch.machine["busy"] - batch.machine["bench processes"]
    cpu = cpu_seconds(server_pid) - cpu_before
    batch.cpu_cores = cpu / batch.seconds
    batch.cpu_ms_each = 1000 * cpu / max(1, len(ok))
    if writer_pid:
        batch.writer_cpu_ms_each = (
            1000 * (cpu_seconds(writer_pid) - writer_before) / max(1, len(ok))
        )
    return batch, expected


def _our_cpu(clients: list[ClientProcess], pids: tuple[int, int | None]) -> float:
    """CPU seconds of the servers, the client processes and this driver."""
    total = time.process_time()
    for pid in (*pids, *(c.process.pid for c in clients)):
        if pid:
            with contextlib.suppress(OSError):
                total += cpu_seconds(pid)
    return total


def score(batch: Batch, receipts: dict[str, list[tuple[int, float]]], rounds: int) -> None:
    """Exactly once, on the right member's socket; latencies from response and from send."""
    from_response: list[float] = []
    from_send: list[float] = []
    per_round: list[list[float]] = [[] for _ in range(max(1, rounds))]
    for number, purchase in enumerate(batch.sent):
        if purchase.error is not None:
            continue
        got = receipts.get(purchase.order, [])
        if not got:
            batch.missing += 1
            continue
        if len(got) > 1:
            batch.duplicated += 1
        if any(member != purchase.member for member, _ in got):
            batch.wrong_member += 1
            continue
        if len(got) == 1:
            batch.delivered_once += 1
        arrived = got[0][1]
        from_response.append(1000 * (arrived - purchase.responded))
        from_send.append(1000 * (arrived - purchase.sent))
        per_round[number * len(per_round) // len(batch.sent)].append(from_response[-1])
    batch.from_response_ms = spread(from_response)
    batch.from_send_ms = spread(from_send)
    batch.mutation_ms = spread(
        [1000 * (s.responded - s.sent) for s in batch.sent if s.error is None]
    )
    batch.rounds_p99_from_response_ms = [percentile(r, 0.99) for r in per_round if r]


async def run_phase(
    target: Target,
    options: Options,
    members: list[int],
    tokens: dict[int, str],
    directory: Path,
) -> PhaseResult:
    result = PhaseResult(target.name, requested=len(members))
    server: Server | None = None
    writer: Server | None = None
    clients: list[ClientProcess] = []
    rng = random.Random(options.seed)
    print(f"\n[{target.name}] starting the server", flush=True)
    try:
        server = await start_server(target, directory / f"{target.name}-server.log")
        if "other" in options.writers:
            writer = await start_server(target, directory / f"{target.name}-writer.log")
        pid = server.process.pid
        result.open_files_limit = open_files_limit(pid)
        async with contextlib.AsyncExitStack() as stack:
            http = {"same": await stack.enter_async_context(http_client(server))}
            if writer is not None:
                http["other"] = await stack.enter_async_context(http_client(writer))
                for n in range(20):  # its pool, caches and prepared statements
                    await target.post(http["other"], members[-1], f"warmup-writer-{n}")
            warm = await warm_up(target, server, http["same"], members[0], tokens[members[0]])
            await settle(pid)
            result.rss_kib["before"] = rss_kib(pid)
            print(
                f"[{target.name}] warmed up ({warm} purchases); RSS "
                f"{result.rss_kib['before'] / 1024:.1f} MiB; opening {len(members):,} "
                f"subscriptions from {options.client_processes} client process(es)",
                flush=True,
            )

            cpu_before = cpu_seconds(pid)
            machine_before = machine_ticks()
            opened = await open_subscribers(server, options, members, tokens, directory)
            clients = opened.clients
            result.open_seconds = opened.seconds
            result.connected, result.acked = opened.connected, opened.acked
            result.subscribed = len(opened.subscribed)
            result.connect_failures = opened.failures
            result.settle_seconds = await settle(pid)
            result.open_cpu_seconds = cpu_seconds(pid) - cpu_before
            result.open_machine = machine_cores(
                machine_before, result.open_seconds + result.settle_seconds
            )
            result.rss_kib["subscribed"] = rss_kib(pid)
            result.idle_cpu_cores = await idle_cpu(pid)
            print(
                f"[{target.name}] {result.subscribed:,}/{len(members):,} subscribed in "
                f"{result.open_seconds:.1f} s (+{result.settle_seconds:.1f} s until idle); RSS "
                f"{result.rss_kib['subscribed'] / 1024:.1f} MiB "
                f"({result.per_subscriber_kib:.1f} KiB a subscriber); idle CPU "
                f"{result.idle_cpu_cores:.3f} cores"
                + (f"; failures: {result.connect_failures}" if result.connect_failures else ""),
                flush=True,
            )
            if not opened.subscribed:
                raise RuntimeError("no subscriber")

            received = 0
            for name in options.writers:
                pids = (pid, writer.process.pid if name == "other" and writer else None)
                batch, received = await purchase_batch(
                    target,
                    name,
                    http[name],
                    pids,
                    clients,
                    opened.subscribed,
                    options,
                    rng,
                    received,
                )
                result.batches[name] = batch
                print(
                    f"[{target.name}] {WRITERS[name]}: {batch.purchases_ok}/{len(batch.sent)} "
                    f"in {batch.seconds:.1f} s, server CPU {batch.cpu_cores:.2f} cores",
                    flush=True,
                )

        receipts: dict[str, list[tuple[int, float]]] = {}
        for client in clients:
            collected = await client.command("collect")
            for member, reference, arrived in collected["receipts"]:
                receipts.setdefault(str(reference), []).append((int(member), float(arrived)))
            result.unexpected_messages += int(collected["unexpected_count"])
            result.unexpected_sample += list(collected["unexpected"])[:3]
            for code, count in collected["closed_early"].items():
                result.closed_early[code] = result.closed_early.get(code, 0) + int(count)
        for batch in result.batches.values():
            score(batch, receipts, options.rounds)

        close_times = [t for t in await asyncio.gather(*(c.stop() for c in clients)) if t]
        clients = []
        result.close_seconds = max(close_times) if close_times else None
        await settle(pid, limit=20)
        result.rss_kib["closed"] = rss_kib(pid)

        for cycle in range(2, options.cycles + 1):  # the same subscribers again: a leak?
            opened = await open_subscribers(server, options, members, tokens, directory)
            clients = opened.clients
            await settle(pid)
            subscribed_kib = rss_kib(pid)
            await asyncio.gather(*(c.stop() for c in clients))
            clients = []
            await settle(pid, limit=20)
            result.reopened.append(
                {
                    "cycle": cycle,
                    "subscribed": len(opened.subscribed),
                    "seconds": opened.seconds,
                    "rss_subscribed_kib": subscribed_kib,
                    "rss_closed_kib": rss_kib(pid),
                }
            )
            print(
                f"[{target.name}] cycle {cycle}: {len(opened.subscribed):,} subscribed in "
                f"{opened.seconds:.1f} s; RSS {subscribed_kib / 1024:.1f} MiB, after closing "
                f"{result.reopened[-1]['rss_closed_kib'] / 1024:.1f} MiB",
                flush=True,
            )
    except Exception as error:
        result.error = f"{type(error).__name__}: {error}"
        print(f"[{target.name}] FAILED: {result.error}", flush=True)
        for process in (server, writer):
            if process is not None:
                print(f"--- {process.name} log (tail) ---\n{process.log_tail(40)}", flush=True)
    finally:
        for client in clients:
            client.kill()
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.process.wait(), 10)
        result.client_log_tails = [c.log_tail() for c in clients]
        for process in (writer, server):
            if process is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(stop, process)
        if server is not None:
            result.log_tail = server.log_tail(40)
        if writer is not None:
            result.writer_log_tail = writer.log_tail(40)
        _forget_jobs(directory)
    return result


def _forget_jobs(directory: Path) -> None:
    """The client processes' job files (member tokens): not worth keeping."""
    for job in directory.glob("client-*.json"):
        job.unlink(missing_ok=True)


# ---------------------------------------------------------------- report


def _ratio(ours: float, theirs: float) -> str:
    if not (math.isfinite(ours) and math.isfinite(theirs)) or theirs <= 0 or ours < 0:
        return "-"  # e.g. a delivery that came before the HTTP response
    return f"{ours / theirs:.2f}x"


def report(results: dict[str, PhaseResult], options: Options) -> list[str]:
    raw, laurel = results.get("raw"), results.get("laurel")

    def row(label: str, get: Callable[[PhaseResult], float], fmt: str, ratio: bool = True) -> str:
        values = []
        for result in (raw, laurel):
            try:
                values.append(float(get(result)) if result is not None else math.nan)
            except (KeyError, ZeroDivisionError):
                values.append(math.nan)
        cells = [format(v, fmt) if math.isfinite(v) else "-" for v in values]
        shown = _ratio(values[1], values[0]) if ratio else ""
        return f"  {label:40} {cells[0]:>11} {cells[1]:>11} {shown:>11}"

    lines = [
        "",
        f"{options.subscribers:,} subscribers on one server process, {options.purchases} "
        f"purchases at {options.rate:g}/s a writer, clients in {options.client_processes} "
        f"other process(es), loopback, {os.cpu_count()} CPUs",
        f"  {'':40} {'raw':>11} {'laurel':>11} {'laurel/raw':>11}",
        row("subscribed", lambda r: r.subscribed, ",.0f", ratio=False),
        row("opened per second", lambda r: r.subscribed / r.open_seconds, ",.0f"),
        row(
            "server CPU per subscriber opened (ms)",
            lambda r: 1000 * r.open_cpu_seconds / max(1, r.subscribed),
            ".2f",
        ),
        row("  whole machine busy (cores)", lambda r: r.open_machine["busy"], ".2f", False),
        row("RSS before (MiB)", lambda r: r.rss_kib["before"] / 1024, ".1f"),
        row("RSS subscribed (MiB)", lambda r: r.rss_kib["subscribed"] / 1024, ".1f"),
        row("RSS after closing (MiB)", lambda r: r.rss_kib["closed"] / 1024, ".1f"),
        row("memory per subscriber (KiB)", lambda r: r.per_subscriber_kib, ".1f"),
        row("server CPU, subscribed and idle (cores)", lambda r: r.idle_cpu_cores, ".3f"),
    ]
    for name in options.writers:

        def of(r: PhaseResult, name: str = name) -> Batch:
            return r.batches[name]

        lines += [
            f"  {WRITERS[name]}:",
            row("  delivered exactly once", lambda r: of(r).delivered_once, ",.0f", False),
            row("    of purchases that succeeded", lambda r: of(r).purchases_ok, ",.0f", False),
            row("  commit -> delivery p50 (ms)", lambda r: of(r).from_response_ms["p50"], ".1f"),
            row("  commit -> delivery p99 (ms)", lambda r: of(r).from_response_ms["p99"], ".1f"),
            row("  commit -> delivery max (ms)", lambda r: of(r).from_response_ms["max"], ".1f"),
            row("  send -> delivery p50 (ms)", lambda r: of(r).from_send_ms["p50"], ".1f"),
            row("  send -> delivery p99 (ms)", lambda r: of(r).from_send_ms["p99"], ".1f"),
            row("  send -> delivery max (ms)", lambda r: of(r).from_send_ms["max"], ".1f"),
            row("  mutation p50 (ms)", lambda r: of(r).mutation_ms["p50"], ".1f"),
            row("  mutation p99 (ms)", lambda r: of(r).mutation_ms["p99"], ".1f"),
            row("  subscribers' server CPU (cores)", lambda r: of(r).cpu_cores, ".2f"),
            row("  ... per purchase (ms)", lambda r: of(r).cpu_ms_each, ".2f"),
            row("  whole machine busy (cores)", lambda r: of(r).machine["busy"], ".2f", False),
            row(
                "    PostgreSQL, Redis, everyone else",
                lambda r: of(r).machine["others"],
                ".2f",
                False,
            ),
        ]
        if name == "other":
            lines.append(
                row("  writer's CPU per purchase (ms)", lambda r: of(r).writer_cpu_ms_each, ".2f")
            )
    for result in (raw, laurel):
        if result is None:
            continue
        problems = []
        if result.error:
            problems.append(f"error: {result.error}")
        if result.connect_failures:
            problems.append(f"connect failures: {result.connect_failures}")
        for batch in result.batches.values():
            if batch.missing or batch.duplicated or batch.wrong_member:
                problems.append(
                    f"{batch.writer}: missing {batch.missing}, duplicated {batch.duplicated}, "
                    f"wrong member {batch.wrong_member}"
                )
            if batch.probes.get("delivered", 0) < batch.probes.get("sent", 0):
                problems.append(f"{batch.writer}: probes {batch.probes}")
            if batch.errors:
                problems.append(f"{batch.writer}: purchase errors: {batch.errors[:2]}")
        notes = []
        for batch in result.batches.values():
            others = batch.machine.get("others", 0.0)
            if others > NOISY_CORES:
                notes.append(
                    f"{batch.writer}: noisy: other processes (PostgreSQL, Redis, other users) "
                    f"used {others:.2f} of {os.cpu_count()} cores meanwhile"
                )
        if result.closed_early:
            problems.append(f"sockets closed by the server while measuring: {result.closed_early}")
        if result.unexpected_messages:
            problems.append(
                f"{result.unexpected_messages} unexpected messages, e.g. "
                f"{result.unexpected_sample[:1]}"
            )
        rounds = "; ".join(
            f"{b.writer} " + ", ".join(f"{v:.0f}" for v in b.rounds_p99_from_response_ms)
            for b in result.batches.values()
            if b.rounds_p99_from_response_ms
        )
        if rounds:
            lines.append(
                f"  {result.name}: p99 commit -> delivery in {options.rounds} slices: {rounds} ms"
            )
        for cycle in result.reopened:
            lines.append(
                f"    reopened (cycle {cycle['cycle']}): {cycle['subscribed']:,} subscribed, RSS "
                f"{cycle['rss_subscribed_kib'] / 1024:.1f} MiB, after closing "
                f"{cycle['rss_closed_kib'] / 1024:.1f} MiB"
            )
        lines += [f"    PROBLEM {p}" for p in problems] + [f"    NOTE {n}" for n in notes]
    if laurel is not None:
        worst = max(
            (b.from_response_ms.get("p99", math.nan) for b in laurel.batches.values()),
            default=math.nan,
        )
        lines += [
            "",
            f"  aim: {AIM_SUBSCRIBERS:,}+ subscribers on one process: {laurel.subscribed:,} "
            f"-> {'met' if laurel.subscribed >= AIM_SUBSCRIBERS else 'NOT met'}",
            f"  aim: p99 commit -> delivery under {AIM_P99_MS:.0f} ms (worst writer): "
            f"{worst:.1f} ms -> {'met' if worst < AIM_P99_MS else 'NOT met'}",
            f"  aim: at most {AIM_KIB_PER_SUBSCRIBER:.0f} KiB a subscriber: "
            f"{laurel.per_subscriber_kib:.1f} KiB -> "
            f"{'met' if laurel.per_subscriber_kib <= AIM_KIB_PER_SUBSCRIBER else 'NOT met'}",
        ]
    return lines


# ---------------------------------------------------------------- command


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.live",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--subscribers", type=int, default=5_000)
    parser.add_argument("--purchases", type=int, default=300, help="a writer")
    parser.add_argument("--rate", type=float, default=50.0, help="purchases a second")
    parser.add_argument("--probes", type=int, default=20, help="purchases before measuring")
    parser.add_argument(
        "--writers",
        default="same,other",
        help="where purchases are recorded: same (the subscribers' process), other (a second "
        "process of the same server: Laurel's hint goes over Redis)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="p99 also shown per slice")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64, help="handshakes at a time, each")
    parser.add_argument("--delivery-timeout", type=float, default=15.0)
    parser.add_argument("--cycles", type=int, default=1, help="open and close everyone N times")
    parser.add_argument("--order", default="raw,laurel", help="servers, in this order")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--open-deadline", type=float, default=150.0, help="seconds to open every subscriber"
    )
    args = parser.parse_args(argv)
    order = [name.strip() for name in args.order.split(",") if name.strip()]
    if not order or set(order) - {"raw", "laurel"} or len(set(order)) != len(order):
        parser.error("--order takes raw and/or laurel, once each")
    writers = [name.strip() for name in args.writers.split(",") if name.strip()]
    if not writers or set(writers) - set(WRITERS) or len(set(writers)) != len(writers):
        parser.error("--writers takes same and/or other, once each")
    if args.subscribers < 1 or args.purchases < 1 or args.rate <= 0 or args.cycles < 1:
        parser.error("--subscribers, --purchases, --rate and --cycles must be positive")
    if args.purchases / args.rate > 60:
        parser.error("keep the purchases under 60 s a writer (purchases / rate)")
    options = Options(
        subscribers=args.subscribers,
        purchases=args.purchases,
        probes=args.probes,
        rate=args.rate,
        rounds=args.rounds,
        client_processes=max(1, args.client_processes),
        concurrency=max(1, args.concurrency),
        delivery_timeout=args.delivery_timeout,
        writers=writers,
        cycles=args.cycles,
        seed=args.seed,
        open_deadline=args.open_deadline,
    )
    needed = args.subscribers + 200
    limit = raise_open_files_limit(needed)  # inherited by the servers and the clients
    if limit < needed:
        print(f"open files limit {limit} < {needed}: raise the hard limit (ulimit -Hn)")
        return 2

    from api.cli import UVICORN_OPTIONS

    differ = {k: v for k, v in RAW_UVICORN_OPTIONS.items() if UVICORN_OPTIONS.get(k) != v}
    if differ:
        print(f"note: the baseline's uvicorn options differ from laurel serve's: {differ}")

    started = time.monotonic()
    seeded = await seed(args.subscribers)
    print(
        f"database {DB.name}: {len(seeded.members):,} members, a service key "
        f"({seeded.seconds:.1f} s)",
        flush=True,
    )
    jwt_secret = secrets.token_urlsafe(32)
    tokens = member_tokens(seeded.members, jwt_secret)
    targets = {
        "raw": _raw_target(jwt_secret),
        "laurel": _laurel_target(jwt_secret, seeded.service_key),
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = Path(tempfile.mkdtemp(prefix=f"laurel-bench-live-{stamp}-"))
    results: dict[str, PhaseResult] = {}
    for name in order:
        try:
            results[name] = await run_phase(targets[name], options, seeded.members, tokens, work)
        finally:
            prefix = targets[name].redis_prefix
            if prefix:
                with contextlib.suppress(Exception):  # best effort: Redis may be the problem
                    await drop_redis_keys(prefix)

    lines = report(results, options)
    print("\n".join(lines))
    elapsed = time.monotonic() - started
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"live-{stamp}.json"
    payload = {
        "benchmark": "live",
        "started": stamp,
        "seconds": elapsed,
        "options": options.__dict__,
        "cpus": os.cpu_count(),
        "database": DB.name,
        "seed_seconds": seeded.seconds,
        "baseline": "Starlette WebSocket + asyncpg LISTEN/NOTIFY (bench/live_clients.py)",
        "results": {name: r.summary() for name, r in results.items()},
        "summary": lines,
    }
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))  # NaN becomes null
    print(f"\nresults: {path.relative_to(REPO_ROOT)} ({elapsed:.0f} s in all)")
    return 1 if any(r.failed for r in results.values()) else 0


def run() -> None:
    import uvloop

    sys.exit(uvloop.run(main()))


if __name__ == "__main__":
    run()
