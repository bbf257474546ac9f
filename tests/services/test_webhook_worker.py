"""The webhook worker in real time against a real HTTP receiver on loopback: committed changes
reach the receiver once, woken by the commit; a dead endpoint does not hold a healthy one;
per-member order under retries; two workers on one PostgreSQL database share the work without
double delivery; killing a `laurel worker` process loses nothing."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from api.metrics import WebhookMetrics
from models import DeliveryStatus, WebhookDelivery
from models.engine import create_engine, read_session_factory, session_factory
from services.clock import SystemClock
from services.events import notifying
from services.ledger.purchases import record_purchase
from services.webhooks.delivery import DeliveryRules
from services.webhooks.worker import WebhookWorker
from tests.conftest import PG_URL
from tests.services.webhook_rows import add_endpoint, add_events, add_members, deliveries, rules
from tests.webhook_receiver import HANG, Received, WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]
LAUREL = [sys.executable, "-c", "import sys; from api.cli import main; sys.exit(main())"]
QUICK_RETRIES = tuple([timedelta(milliseconds=50)] * 11)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = await WebhookReceiver().start()
    yield server
    await server.stop()


class Workers:
    """Workers started by a test, stopped after it."""

    def __init__(self) -> None:
        self.started: list[WebhookWorker] = []

    async def start(
        self, engine: AsyncEngine, given: DeliveryRules, registry: CollectorRegistry | None = None
    ) -> WebhookWorker:
        worker = WebhookWorker(
            session_factory(engine),
            read_session_factory(engine),
            SystemClock(),
            rules=given,
            metrics=WebhookMetrics(registry) if registry is not None else None,
        )
        await worker.start()
        self.started.append(worker)
        return worker


@pytest.fixture
async def workers() -> AsyncIterator[Workers]:
    running = Workers()
    yield running
    for worker in running.started:
        await worker.stop(grace=0.5)


async def pending(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        found = await session.scalar(
            select(func.count()).where(WebhookDelivery.status == DeliveryStatus.PENDING)
        )
        return int(found or 0)


def seqs_by_member(received: list[Received]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = defaultdict(list)
    for request in received:
        data = request.json["data"]
        found[data["member"]].append(data["seq"])
    return found


async def test_committed_purchases_reach_the_receiver_once_woken_by_the_commit(
    engine: AsyncEngine, receiver: WebhookReceiver
) -> None:
    clock = SystemClock()
    registry = CollectorRegistry()
    worker = WebhookWorker(
        session_factory(engine),
        read_session_factory(engine),
        clock,
        rules=rules(),
        metrics=WebhookMetrics(registry),
        poll=30.0,  # only the commits wake it
    )
    sessions = session_factory(engine, info=notifying(lambda _members: worker.wake()))
    _, secret = await add_endpoint(sessions, clock.now(), receiver.url())
    [ann] = await add_members(sessions, clock.now(), 1)
    await worker.start()
    try:
        await asyncio.sleep(0.2)  # its first round has passed: what comes now is the commits'
        for n in range(3):
            async with sessions.begin() as session:
                await record_purchase(
                    session, member_id=ann, order_id=f"o-{n}", amount=20, now=clock.now()
                )
        with pytest.raises(RuntimeError):  # rolled back: never dispatched
            async with sessions.begin() as session:
                await record_purchase(
                    session, member_id=ann, order_id="o-rolled-back", amount=20, now=clock.now()
                )
                raise RuntimeError("the caller changed its mind")
        await receiver.wait_for(lambda r: len(r.received) >= 3, within=5)
        await asyncio.sleep(0.5)
    finally:
        await worker.stop()

    references = []
    for request in receiver.received:
        payload = Webhook(secret).verify(request.body, request.headers)
        assert payload["type"] == "points.earned"
        references.append(payload["data"]["transaction"]["reference"])
    assert references == ["o-0", "o-1", "o-2"]
    assert await pending(sessions) == 0
    succeeded = {"result": "succeeded"}
    assert registry.get_sample_value("laurel_webhook_deliveries_total", succeeded) == 3
    assert registry.get_sample_value("laurel_webhook_attempt_seconds_count") == 3


async def test_a_timing_out_endpoint_does_not_delay_a_healthy_one(
    engine: AsyncEngine, receiver: WebhookReceiver, workers: Workers
) -> None:
    receiver.script = lambda request, _count: HANG if request.path == "/dead" else 204
    sessions = session_factory(engine)
    now = SystemClock().now()
    dead, _ = await add_endpoint(sessions, now, receiver.url("/dead"))
    healthy, _ = await add_endpoint(sessions, now, receiver.url("/healthy"))
    people = await add_members(sessions, now, 40)
    await add_events(sessions, now, people, [dead, healthy], per_member=2)
    started = time.monotonic()

    # The dead endpoint's attempts time out after 8 s: long enough that even a loaded CI
    # machine delivers the healthy one's 80 first (one took 2.9 s; 2 s was the timeout once).
    await workers.start(engine, rules(timeout=8.0, per_endpoint=4, in_flight=16))
    await receiver.wait_for(lambda r: len(r.on("/healthy")) == 80, within=8)

    took = time.monotonic() - started
    assert took < 8.0  # all 80 before the first of the dead endpoint's attempts timed out
    assert len(receiver.on("/dead")) == 4  # its quota, no more
    statuses = {d.status for d in await deliveries(sessions, healthy)}
    for _ in range(20):
        if statuses == {DeliveryStatus.SUCCEEDED}:
            break
        await asyncio.sleep(0.1)
        statuses = {d.status for d in await deliveries(sessions, healthy)}
    assert statuses == {DeliveryStatus.SUCCEEDED}


async def test_per_member_order_is_kept_under_retries(
    engine: AsyncEngine, receiver: WebhookReceiver, workers: Workers
) -> None:
    chance = random.Random(13)
    receiver.script = lambda _request, _count: 500 if chance.random() < 0.3 else 200
    sessions = session_factory(engine)
    now = SystemClock().now()
    endpoint_id, _ = await add_endpoint(sessions, now, receiver.url())
    people = await add_members(sessions, now, 20)
    await add_events(sessions, now, people, [endpoint_id], per_member=10)

    await workers.start(engine, rules(schedule=QUICK_RETRIES))
    for _ in range(200):
        if await pending(sessions) == 0:
            break
        await asyncio.sleep(0.1)

    assert await pending(sessions) == 0
    assert {d.status for d in await deliveries(sessions)} == {DeliveryStatus.SUCCEEDED}
    retried = len(receiver.received) - 200
    assert retried > 20  # about 0.3 / 0.7 x 200
    for member, seqs in seqs_by_member(receiver.received).items():
        # Every attempt of an event comes after the last one of the event before.
        assert seqs == sorted(seqs), member
        assert sorted(set(seqs)) == list(range(10))


async def test_two_workers_on_postgresql_deliver_2000_events_exactly_once_in_member_order(
    pg: AsyncEngine, receiver: WebhookReceiver, workers: Workers
) -> None:
    sessions = session_factory(pg)
    now = SystemClock().now()
    endpoint_id, _ = await add_endpoint(sessions, now, receiver.url())
    people = await add_members(sessions, now, 100)
    await add_events(sessions, now, people, [endpoint_id], per_member=20)
    other = create_engine(PG_URL, pool_size=4)
    registries = [CollectorRegistry(), CollectorRegistry()]
    try:
        await workers.start(pg, rules(), registries[0])
        await workers.start(other, rules(), registries[1])
        await receiver.wait_for(lambda r: len(r.received) >= 2000, within=60)
        await asyncio.sleep(0.5)  # time for a double delivery to show
        for worker in workers.started:
            await worker.stop()
    finally:
        await other.dispose()

    ids = [r.message_id for r in receiver.received]
    assert len(ids) == len(set(ids)) == 2000
    for seqs in seqs_by_member(receiver.received).values():
        assert seqs == list(range(20))
    assert await pending(sessions) == 0
    shares = [
        r.get_sample_value("laurel_webhook_deliveries_total", {"result": "succeeded"})
        for r in registries
    ]
    assert sum(s or 0 for s in shares) == 2000
    assert all(s and s > 0 for s in shares), shares  # both took part


def laurel_worker(log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LAUREL_DATABASE_URL": PG_URL,
        "LAUREL_WEBHOOKS_ALLOW_PRIVATE": "true",
        "LAUREL_WEBHOOKS_TIMEOUT_SECONDS": "1",  # leases of 8 s
        "LAUREL_SWEEP_INTERVAL_SECONDS": "0",
    }
    env.pop("LAUREL_REDIS_URL", None)
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603 (our own command)
            [*LAUREL, "worker"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def wait_started(log: Path) -> None:
    async with asyncio.timeout(20):
        # The other process writes the file: nothing to await but time.
        while "delivering webhooks" not in await asyncio.to_thread(log.read_text):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_killing_a_worker_process_mid_run_loses_nothing(
    pg: AsyncEngine, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    sessions = session_factory(pg)
    now = SystemClock().now()
    endpoint_id, _ = await add_endpoint(sessions, now, receiver.url())
    people = await add_members(sessions, now, 100)
    await add_events(sessions, now, people, [endpoint_id], per_member=20)
    doomed = laurel_worker(tmp_path / "doomed.log")
    survivor = laurel_worker(tmp_path / "survivor.log")
    try:
        await wait_started(tmp_path / "doomed.log")
        await wait_started(tmp_path / "survivor.log")
        await receiver.wait_for(lambda r: len(r.received) >= 600, within=60)
        doomed.send_signal(signal.SIGKILL)
        killed_at = len(receiver.received)
        for _ in range(600):
            if await pending(sessions) == 0:
                break
            await asyncio.sleep(0.1)
        assert await pending(sessions) == 0
        assert killed_at < 2000  # it died mid-run
        survivor.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(survivor.wait, 10) == 0
    finally:
        for process in (doomed, survivor):
            if process.poll() is None:
                process.kill()
                process.wait()

    assert "laurel worker: stopped" in (tmp_path / "survivor.log").read_text()
    ids = [r.message_id for r in receiver.received]
    assert len(set(ids)) == 2000
    # Duplicates only for what the killed worker had in flight (its quota at most).
    assert len(ids) - 2000 <= DeliveryRules().in_flight
    for seqs in seqs_by_member(receiver.received).values():
        assert seqs == sorted(seqs) and sorted(set(seqs)) == list(range(20))
    assert {d.status for d in await deliveries(sessions)} == {DeliveryStatus.SUCCEEDED}


async def test_stopping_leaves_attempts_in_flight_to_their_lease(
    engine: AsyncEngine, receiver: WebhookReceiver
) -> None:
    receiver.script = lambda _request, _count: HANG
    sessions = session_factory(engine)
    now = SystemClock().now()
    endpoint_id, _ = await add_endpoint(sessions, now, receiver.url())
    [ann] = await add_members(sessions, now, 1)
    await add_events(sessions, now, [ann], [endpoint_id])
    worker = WebhookWorker(
        session_factory(engine), read_session_factory(engine), SystemClock(), rules=rules()
    )
    await worker.start()
    await receiver.wait_for(lambda r: len(r.received) == 1, within=5)

    started = time.monotonic()
    await worker.stop(grace=0.3)

    assert time.monotonic() - started < 2
    [row] = await deliveries(sessions)
    assert row.status is DeliveryStatus.PENDING and row.attempts == []
    assert row.leased_until is not None and row.leased_until > SystemClock().now()


async def test_the_worker_reports_the_age_of_the_oldest_undelivered_work(
    engine: AsyncEngine,
) -> None:
    sessions = session_factory(engine)
    registry = CollectorRegistry()
    now = SystemClock().now()
    endpoint_id, _ = await add_endpoint(sessions, now, "http://127.0.0.1:9/never")
    [ann] = await add_members(sessions, now - timedelta(minutes=5), 1, dispatched=False)
    await add_events(sessions, now - timedelta(minutes=2), [ann], [endpoint_id])
    worker = WebhookWorker(
        session_factory(engine),
        read_session_factory(engine),
        SystemClock(),
        rules=rules(),
        metrics=WebhookMetrics(registry),
    )

    await worker.measure_backlog()

    oldest_pending = registry.get_sample_value("laurel_webhook_oldest_pending_seconds")
    undispatched = registry.get_sample_value("laurel_webhook_oldest_undispatched_seconds")
    assert oldest_pending is not None and 120 <= oldest_pending < 130
    assert undispatched is not None and 300 <= undispatched < 310
