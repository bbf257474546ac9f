"""Delivering webhooks, one claim / attempt / record round at a time, to a real HTTP receiver
on loopback: signatures the `standardwebhooks` library verifies, the retry schedule, 410 Gone,
three days of failures, per-member order, leases and quotas."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from models.engine import session_factory
from services.clock import ManualClock
from services.webhooks.delivery import (
    JITTER,
    SCHEDULE,
    Attempt,
    DeliveryRules,
    attempt,
    claim,
    look_ahead,
    record,
)
from services.webhooks.endpoints import rotate_secret
from services.webhooks.urls import UrlRules
from services.webhooks.worker import new_client
from tests.services.webhook_rows import (
    add_endpoint,
    add_events,
    add_members,
    deliveries,
    endpoint_row,
    rules,
)
from tests.webhook_receiver import HANG, Received, WebhookReceiver


@pytest.fixture
def clock() -> ManualClock:
    """Real time to start with: receivers verify the signature's timestamp against theirs."""
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = await WebhookReceiver().start()
    yield server
    await server.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with new_client(rules()) as http:
        yield http


async def deliver_round(
    sessions: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    clock: ManualClock,
    given: DeliveryRules | None = None,
    **claim_options: int,
) -> list[Attempt]:
    """Claim what is due, attempt it all, record it: what one worker does in one round."""
    given = given or rules()
    async with sessions.begin() as session:
        targets = await claim(session, clock.now(), given, **claim_options)  # type: ignore[arg-type]
    tried = await asyncio.gather(*(attempt(client, t, clock.now(), given) for t in targets))
    async with sessions.begin() as session:
        await record(session, list(zip(targets, tried, strict=True)), clock.now(), given)
    return list(tried)


def due(row: WebhookDelivery) -> datetime:
    assert row.next_attempt_at is not None
    return row.next_attempt_at


def refused_url() -> str:
    """A loopback port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


async def test_each_attempt_is_signed_so_the_standardwebhooks_library_verifies_it(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    receiver: WebhookReceiver,
    client: httpx.AsyncClient,
) -> None:
    endpoint_id, secret = await add_endpoint(sessions, clock.now(), receiver.url())
    [member] = await add_members(sessions, clock.now(), 1)
    [event_id] = await add_events(sessions, clock.now(), [member], [endpoint_id])

    tried = await deliver_round(sessions, client, clock)

    assert [t.status_code for t in tried] == [204]
    [got] = receiver.received
    payload = Webhook(secret).verify(got.body, got.headers)
    assert payload["type"] == "points.earned" and payload["id"] == got.message_id
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-timestamp"] == str(int(clock.now().timestamp()))
    assert len(got.headers["webhook-signature"].split(" ")) == 1
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "B" * 32).verify(got.body, got.headers)
    [row] = await deliveries(sessions)
    assert row.status is DeliveryStatus.SUCCEEDED and row.completed_at == clock.now()
    assert row.next_attempt_at is None and row.leased_until is None
    assert row.attempts == [
        {
            "at": clock.now().isoformat(),
            "statusCode": 204,
            "latencyMs": row.attempts[0]["latencyMs"],
            "error": None,
        }
    ]
    assert event_id == row.event_id


async def test_after_a_rotation_both_secrets_sign_until_the_old_one_expires(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    receiver: WebhookReceiver,
    client: httpx.AsyncClient,
) -> None:
    endpoint_id, old = await add_endpoint(sessions, clock.now(), receiver.url())
    async with sessions.begin() as session:
        endpoint = await session.get_one(WebhookEndpoint, endpoint_id)
        new = await rotate_secret(session, endpoint, clock.now())
    [member] = await add_members(sessions, clock.now(), 1)
    await add_events(sessions, clock.now(), [member], [endpoint_id])

    await deliver_round(sessions, client, clock)

    [got] = receiver.received
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(got.body, got.headers)  # receivers not yet updated
    Webhook(new).verify(got.body, got.headers)  # receivers already updated

    # A day later the old secret no longer signs.
    clock.advance(timedelta(hours=24, seconds=1))
    await add_events(sessions, clock.now(), [member], [endpoint_id])
    await deliver_round(sessions, client, clock)
    later = receiver.received[1]
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    assert later.headers["webhook-id"] != got.headers["webhook-id"]
    # (verify() checks the timestamp against the real clock: compare signatures instead.)
    at = datetime.fromtimestamp(int(later.headers["webhook-timestamp"]), UTC)
    assert later.headers["webhook-signature"] == Webhook(new).sign(later.message_id, at, later.body)


async def test_a_receiver_failing_twice_gets_the_event_three_times_with_one_id_then_never_again(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    receiver: WebhookReceiver,
    client: httpx.AsyncClient,
) -> None:
    receiver.script = lambda _request, count: 500 if count < 2 else 200
    endpoint_id, secret = await add_endpoint(sessions, clock.now(), receiver.url())
    [member] = await add_members(sessions, clock.now(), 1)
    await add_events(sessions, clock.now(), [member], [endpoint_id])
    start = clock.now()

    await deliver_round(sessions, client, clock)
    [row] = await deliveries(sessions)
    assert row.status is DeliveryStatus.PENDING
    assert row.attempts[0]["statusCode"] == 500 and row.attempts[0]["error"] == "HTTP 500"
    first_retry = due(row) - start
    assert SCHEDULE[0] * (1 - JITTER) <= first_retry <= SCHEDULE[0] * (1 + JITTER)
    assert (await look_ahead_now(sessions, clock))[1] == row.next_attempt_at

    # Not due yet: nothing is sent.
    assert await deliver_round(sessions, client, clock) == []
    clock.set(due(row))
    await deliver_round(sessions, client, clock)
    [row] = await deliveries(sessions)
    assert len(row.attempts) == 2 and row.status is DeliveryStatus.PENDING
    second_retry = due(row) - clock.now()
    assert SCHEDULE[1] * (1 - JITTER) <= second_retry <= SCHEDULE[1] * (1 + JITTER)

    clock.set(due(row))
    await deliver_round(sessions, client, clock)
    [row] = await deliveries(sessions)
    assert row.status is DeliveryStatus.SUCCEEDED
    assert [a["statusCode"] for a in row.attempts] == [500, 500, 200]

    for _ in range(3):
        clock.advance(timedelta(days=1))
        await deliver_round(sessions, client, clock)
    assert len(receiver.received) == 3
    assert len({r.message_id for r in receiver.received}) == 1
    assert len({r.body for r in receiver.received}) == 1
    for got in receiver.received:  # each attempt signed afresh, at its own time
        at = datetime.fromtimestamp(int(got.headers["webhook-timestamp"]), UTC)
        assert got.headers["webhook-signature"] == Webhook(secret).sign(
            got.message_id, at, got.body
        )
    assert (await endpoint_row(sessions, endpoint_id)).failing_since is None


async def look_ahead_now(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> tuple[bool, datetime | None]:
    async with sessions() as session:
        return await look_ahead(session, clock.now())


async def test_retries_follow_the_schedule_then_the_delivery_fails(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    client: httpx.AsyncClient,
) -> None:
    endpoint_id, _ = await add_endpoint(sessions, clock.now(), refused_url())
    [member] = await add_members(sessions, clock.now(), 1)
    await add_events(sessions, clock.now(), [member], [endpoint_id])
    start = clock.now()

    gaps = []
    while True:
        tried = await deliver_round(sessions, client, clock)
        assert [t.error for t in tried] == ["connection refused"]
        assert tried[0].status_code is None
        [row] = await deliveries(sessions)
        if row.status is not DeliveryStatus.PENDING:
            break
        gaps.append(due(row) - clock.now())
        clock.set(due(row))

    assert row.status is DeliveryStatus.FAILED and row.next_attempt_at is None
    assert len(row.attempts) == len(SCHEDULE) + 1 == 12
    for gap, planned in zip(gaps, SCHEDULE, strict=True):
        assert planned * (1 - JITTER) <= gap <= planned * (1 + JITTER)
    planned = sum(SCHEDULE, timedelta())  # about three days (2 days 22:42)
    assert planned * (1 - JITTER) <= clock.now() - start <= planned * (1 + JITTER)
    # Its endpoint has failed since the first attempt: disabled if that makes three days.
    endpoint = await endpoint_row(sessions, endpoint_id)
    assert endpoint.failing_since == start
    assert endpoint.enabled == (clock.now() - start < timedelta(days=3))


async def test_410_gone_disables_the_endpoint_and_fails_its_pending_deliveries(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    receiver: WebhookReceiver,
    client: httpx.AsyncClient,
) -> None:
    receiver.script = lambda request, _count: 410 if request.path == "/gone" else 200
    gone_id, _ = await add_endpoint(sessions, clock.now(), receiver.url("/gone"))
    other_id, _ = await add_endpoint(sessions, clock.now(), receiver.url("/other"))
    [member] = await add_members(sessions, clock.now(), 1)
    await add_events(sessions, clock.now(), [member], [gone_id, other_id], per_member=3)

    await deliver_round(sessions, client, clock)

    endpoint = await endpoint_row(sessions, gone_id)
    assert not endpoint.enabled
    assert endpoint.disabled_reason.startswith("410 Gone at ")
    gone = await deliveries(sessions, gone_id)
    assert [d.status for d in gone] == [DeliveryStatus.FAILED] * 3
    assert [len(d.attempts) for d in gone] == [1, 0, 0]  # the later two were never sent
    assert all(d.completed_at == clock.now() and d.next_attempt_at is None for d in gone)
    # The other endpoint goes on: the member's three events, one per round, in order.
    for _ in range(2):
        await deliver_round(sessions, client, clock)
    assert [d.status for d in await deliveries(sessions, other_id)] == [
        DeliveryStatus.SUCCEEDED
    ] * 3
    assert len(receiver.on("/gone")) == 1 and len(receiver.on("/other")) == 3
    clock.advance(timedelta(hours=1))
    assert await deliver_round(sessions, client, clock) == []


async def test_an_endpoint_failing_for_three_days_is_disabled_with_its_reason(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    receiver: WebhookReceiver,
    client: httpx.AsyncClient,
) -> None:
    healthy = True
    receiver.script = lambda _request, _count: 204 if healthy else 503
    endpoint_id, _ = await add_endpoint(sessions, clock.now(), receiver.url())
    people = await add_members(sessions, clock.now(), 2 + 3 * 24)
    await add_events(sessions, clock.now(), people[:1], [endpoint_id])
    await deliver_round(sessions, client, clock)
    assert (await endpoint_row(sessions, endpoint_id)).failing_since is None

    # It starts failing; a success two days in ends the streak.
    healthy = False
    await add_events(sessions, clock.now(), people[:2], [endpoint_id])
    await deliver_round(sessions, client, clock)
    began = clock.now()
    assert (await endpoint_row(sessions, endpoint_id)).failing_since == began
    clock.advance(timedelta(days=2))
    healthy = True
    await deliver_round(sessions, client, clock)
    assert (await endpoint_row(sessions, endpoint_id)).failing_since is None

    # Failing again, for three days straight (a new member's event every hour): disabled.
    healthy = False
    await add_events(sessions, clock.now(), people[:2], [endpoint_id])
    await deliver_round(sessions, client, clock)
    began = clock.now()
    for hour in range(3 * 24):
        clock.advance(timedelta(hours=1))
        await add_events(sessions, clock.now(), [people[2 + hour]], [endpoint_id])
        await deliver_round(sessions, client, clock)
        enabled = (await endpoint_row(sessions, endpoint_id)).enabled
        assert enabled == (hour < 3 * 24 - 1)
    endpoint = await endpoint_row(sessions, endpoint_id)
    assert not endpoint.enabled
    assert clock.now() - began == timedelta(days=3)
    assert endpoint.disabled_reason == (
        f"failing since {began:%Y-%m-%d %H:%M} UTC (3 days): HTTP 503"
    )
    left = await deliveries(sessions, endpoint_id)
    assert {d.status for d in left} == {DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED}
    assert not [d for d in left if d.status is DeliveryStatus.PENDING]


async def test_one_members_events_reach_an_endpoint_in_order_under_retries(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    receiver: WebhookReceiver,
    client: httpx.AsyncClient,
) -> None:
    """Ann's first event fails; her second waits behind it, Bob's go on."""
    ann, bob = await add_members(sessions, clock.now(), 2)
    failures = 2

    def script(request: Received, _count: int) -> int:
        nonlocal failures
        if request.json["data"] == {"member": ann, "seq": 0} and failures:
            failures -= 1
            return 500
        return 200

    receiver.script = script
    endpoint_id, _ = await add_endpoint(sessions, clock.now(), receiver.url())
    await add_events(sessions, clock.now(), [ann, bob], [endpoint_id], per_member=3)

    for _ in range(20):
        await deliver_round(sessions, client, clock)
        clock.advance(timedelta(seconds=10))

    seen = [(r.json["data"]["member"], r.json["data"]["seq"]) for r in receiver.received]
    assert [s for m, s in seen if m == bob] == [0, 1, 2]
    assert [s for m, s in seen if m == ann] == [0, 0, 0, 1, 2]
    # Bob was done before Ann's first event got through.
    assert seen.index((bob, 2)) < seen.index((ann, 1))
    assert {d.status for d in await deliveries(sessions)} == {DeliveryStatus.SUCCEEDED}


async def test_a_url_no_longer_allowed_is_not_called_and_is_retried(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    receiver: WebhookReceiver,
    client: httpx.AsyncClient,
) -> None:
    endpoint_id, _ = await add_endpoint(sessions, clock.now(), receiver.url())
    [member] = await add_members(sessions, clock.now(), 1)
    await add_events(sessions, clock.now(), [member], [endpoint_id])
    strict = rules(urls=UrlRules(production=False, allow_private=False))

    [tried] = await deliver_round(sessions, client, clock, strict)

    assert receiver.received == []
    assert tried.status_code is None
    assert tried.error is not None and tried.error.startswith("URL not allowed: 127.0.0.1 ")
    [row] = await deliveries(sessions)
    assert row.status is DeliveryStatus.PENDING and len(row.attempts) == 1


async def test_a_redirect_is_not_followed_and_is_retried(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    receiver: WebhookReceiver,
    client: httpx.AsyncClient,
) -> None:
    receiver.script = lambda _request, _count: 301
    endpoint_id, _ = await add_endpoint(sessions, clock.now(), receiver.url())
    [member] = await add_members(sessions, clock.now(), 1)
    await add_events(sessions, clock.now(), [member], [endpoint_id])

    [tried] = await deliver_round(sessions, client, clock)

    assert tried.error == "HTTP 301 (redirects are not followed)"
    assert len(receiver.received) == 1
    assert (await deliveries(sessions))[0].status is DeliveryStatus.PENDING


async def test_an_endpoint_that_does_not_answer_times_out_and_is_retried(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    receiver: WebhookReceiver,
    client: httpx.AsyncClient,
) -> None:
    receiver.script = lambda _request, _count: HANG
    endpoint_id, _ = await add_endpoint(sessions, clock.now(), receiver.url())
    [member] = await add_members(sessions, clock.now(), 1)
    await add_events(sessions, clock.now(), [member], [endpoint_id])

    [tried] = await deliver_round(sessions, client, clock, rules(timeout=0.3))

    assert tried.error == "timeout after 0.3 s" and tried.status_code is None
    assert 300 <= tried.latency_ms < 2000
    assert (await deliveries(sessions))[0].status is DeliveryStatus.PENDING


async def test_a_claimed_delivery_is_not_claimed_again_until_its_lease_expires(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    receiver: WebhookReceiver,
    client: httpx.AsyncClient,
) -> None:
    endpoint_id, _ = await add_endpoint(sessions, clock.now(), receiver.url())
    [member] = await add_members(sessions, clock.now(), 1)
    await add_events(sessions, clock.now(), [member], [endpoint_id])
    given = rules()
    async with sessions.begin() as session:
        [first] = await claim(session, clock.now(), given)
    async with sessions.begin() as session:
        assert await claim(session, clock.now(), given) == []

    # The first worker died: once the lease is over, another takes the delivery.
    clock.advance(given.lease)
    async with sessions.begin() as session:
        [second] = await claim(session, clock.now(), given)
    assert second.delivery_id == first.delivery_id and second.lease > first.lease

    # The first worker's late answer is not recorded (its lease is gone); the second's is.
    late = await attempt(client, first, clock.now(), given)
    async with sessions.begin() as session:
        await record(session, [(first, late)], clock.now(), given)
    [row] = await deliveries(sessions)
    assert row.attempts == [] and row.leased_until == second.lease
    answer = await attempt(client, second, clock.now(), given)
    async with sessions.begin() as session:
        await record(session, [(second, answer)], clock.now(), given)
    [row] = await deliveries(sessions)
    assert row.status is DeliveryStatus.SUCCEEDED and len(row.attempts) == 1


async def test_each_endpoint_has_its_own_quota_of_attempts_in_flight(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    dead_id, _ = await add_endpoint(sessions, clock.now(), "http://127.0.0.1:9/dead")
    live_id, _ = await add_endpoint(sessions, clock.now(), "http://127.0.0.1:9/live")
    people = await add_members(sessions, clock.now(), 6)
    await add_events(sessions, clock.now(), people, [dead_id])  # the dead one's are older
    clock.advance(timedelta(seconds=1))
    await add_events(sessions, clock.now(), people, [live_id])
    given = rules(per_endpoint=2, in_flight=5)

    async with sessions.begin() as session:
        first = await claim(session, clock.now(), given)
    assert sorted(t.endpoint_id for t in first) == [dead_id, dead_id, live_id, live_id]
    # The dead endpoint's two are still in flight: only the live one gets more room.
    async with sessions.begin() as session:
        second = await claim(session, clock.now(), given, busy={dead_id: 2}, room=1)
    assert [t.endpoint_id for t in second] == [live_id]
    # In all, at most `room`, the soonest due first.
    async with sessions.begin() as session:
        third = await claim(session, clock.now(), given, room=1)
    assert [t.endpoint_id for t in third] == [dead_id]


async def test_a_failing_endpoint_gets_a_smaller_quota(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    failing_id, _ = await add_endpoint(
        sessions, clock.now(), "http://127.0.0.1:9/failing", failing_since=clock.now()
    )
    healthy_id, _ = await add_endpoint(sessions, clock.now(), "http://127.0.0.1:9/healthy")
    people = await add_members(sessions, clock.now(), 6)
    await add_events(sessions, clock.now(), people, [failing_id, healthy_id])

    async with sessions.begin() as session:
        claimed = await claim(
            session, clock.now(), rules(per_endpoint=4, per_failing_endpoint=1, in_flight=10)
        )

    assert sorted(t.endpoint_id for t in claimed) == [failing_id] + [healthy_id] * 4


async def test_disabled_and_deleted_endpoints_get_nothing(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    receiver: WebhookReceiver,
    client: httpx.AsyncClient,
) -> None:
    off, _ = await add_endpoint(sessions, clock.now(), receiver.url("/off"), enabled=False)
    gone, _ = await add_endpoint(sessions, clock.now(), receiver.url("/gone"))
    [member] = await add_members(sessions, clock.now(), 1)
    await add_events(sessions, clock.now(), [member], [off, gone])
    async with sessions.begin() as session:
        endpoint = await session.get_one(WebhookEndpoint, gone)
        endpoint.deleted_at = clock.now()

    assert await deliver_round(sessions, client, clock) == []
    assert receiver.received == []
