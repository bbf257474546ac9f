"""Delivering webhooks: which deliveries are due, leasing them to one worker, one signed attempt
(Standard Webhooks), and what each answer means (the retry schedule, 410 Gone, three days of
failures).

A delivery is due when it is PENDING, the time of its next attempt has come, no worker holds its
lease, and no earlier event of the same member is still pending for the same endpoint (one
member's events reach an endpoint in commit order). Workers claim due deliveries with
`FOR UPDATE SKIP LOCKED` and a lease (on SQLite, the single writer serializes the claim); a
worker that dies lets them go when the lease ends, and another attempts them again: at least
once, duplicates only for what was in flight. The lease is also the fence: an attempt is
recorded only while the delivery still carries the lease it was claimed with. Each endpoint has
its own small quota of attempts in flight, so a slow or dead endpoint never holds the others'.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import (
    ColumnElement,
    Integer,
    ScalarSelect,
    Select,
    Table,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from standardwebhooks import Webhook

from models import DeliveryStatus, MemberEvent, WebhookDelivery, WebhookEndpoint, WebhookEvent
from services.errors import UrlNotAllowed
from services.webhooks import catalog
from services.webhooks.dispatch import live_endpoints
from services.webhooks.signing import signing_secrets
from services.webhooks.urls import UrlRules

# After the n-th failed attempt, the next one comes this much later (±JITTER); after the last,
# the delivery has failed. About three days in all.
SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(hours=24),
    timedelta(hours=24),
)
JITTER = 0.2
TIMEOUT_SECONDS = 10.0
# An endpoint whose attempts have all failed for this long is disabled.
FAILING_LIMIT = timedelta(days=3)
# Of any answer, at most this much is read (and nothing of it is kept).
MAX_RESPONSE_BYTES = 4096
USER_AGENT = "Laurel-Webhooks/1.0"
MAX_REASON = 500
# How many times one claim walks the due deliveries (again when some it found were over their
# endpoint's quota and room is left).
CLAIM_PASSES = 3

# Written into statements (not bound) so the partial indexes `WHERE status = 'PENDING'` serve
# them whatever plan PostgreSQL caches for the prepared statement.
_PENDING: ColumnElement[str] = literal_column("'PENDING'")


@dataclass(frozen=True, slots=True)
class DeliveryRules:
    """How deliveries are attempted (from the settings)."""

    urls: UrlRules = field(default_factory=lambda: UrlRules(production=False, allow_private=False))
    timeout: float = TIMEOUT_SECONDS
    schedule: tuple[timedelta, ...] = SCHEDULE
    # Attempts in flight at once (per worker): per endpoint, per endpoint that is failing
    # (a dead one holds no more than this of the room while it times out), and in all.
    per_endpoint: int = 32
    per_failing_endpoint: int = 2
    in_flight: int = 128

    def quota(self, endpoint: WebhookEndpoint) -> int:
        """How many attempts to the endpoint may be in flight at once."""
        return self.per_failing_endpoint if endpoint.failing_since else self.per_endpoint

    @property
    def lease(self) -> timedelta:
        """How long a claim holds a delivery: well past an attempt's timeout, so a live worker
        records its attempt before anyone else may take the delivery again."""
        return timedelta(seconds=self.timeout * 3 + 5)


@dataclass(frozen=True, slots=True)
class Target:
    """A claimed delivery, with all it takes to attempt it."""

    delivery_id: int
    endpoint_id: int
    url: str
    message_id: str  # the `webhook-id`: the event's global ID
    body: bytes
    signers: tuple[Webhook, ...]
    earlier_attempts: tuple[dict[str, Any], ...]
    lease: datetime  # leased_until as claimed: the fence for recording
    endpoint_failing: bool  # its endpoint had `failing_since` set when claimed


class Verdict(enum.Enum):
    SUCCEEDED = "succeeded"  # a 2xx
    GONE = "gone"  # 410: the receiver wants no more
    RETRY = "retry"  # anything else


@dataclass(frozen=True, slots=True)
class Attempt:
    at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None

    @property
    def verdict(self) -> Verdict:
        if self.status_code is not None and 200 <= self.status_code < 300:
            return Verdict.SUCCEEDED
        if self.status_code == 410:
            return Verdict.GONE
        return Verdict.RETRY

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "statusCode": self.status_code,
            "latencyMs": self.latency_ms,
            "error": self.error,
        }


@dataclass(slots=True)
class Recorded:
    """What recording a batch of attempts did, for the metrics."""

    succeeded: int = 0
    retried: int = 0
    failed: int = 0  # gave up: retries exhausted, 410, or its endpoint was disabled
    disabled_endpoints: list[int] = field(default_factory=list)


# ---------------------------------------------------------------- what is due


# The statements of the claim, built once (they run many times a second) with `now` and
# the rest bound.
_D = WebhookDelivery
_NOW = bindparam("now", type_=_D.next_attempt_at.type)


def _first_pending() -> ScalarSelect[int]:
    """The member's first pending event for the endpoint: a correlated min() is one probe of
    the pending-order index per candidate, whatever the planner believes of the table (an
    anti-join planned on stale statistics scanned every pending row per candidate)."""
    earlier = aliased(WebhookDelivery)
    return (
        select(func.min(earlier.event_id))
        .where(
            earlier.endpoint_id == _D.endpoint_id,
            earlier.member_id == _D.member_id,
            earlier.status == _PENDING,
        )
        .scalar_subquery()
    )


_LEASE_FREE = or_(_D.leased_until.is_(None), _D.leased_until <= _NOW)
_DUE = (
    _D.status == _PENDING,
    _D.next_attempt_at <= _NOW,
    _LEASE_FREE,
    _D.event_id == _first_pending(),
)


def _walk(*, again: bool) -> Select[tuple[int, int]]:
    """One walk of the due index, soonest first, over the endpoints with room: an endpoint
    whose quota is full (a slow or dead one) costs the walk nothing but a filter."""
    stmt = select(_D.id, _D.endpoint_id).where(
        _D.endpoint_id.in_(bindparam("endpoints", expanding=True)), *_DUE
    )
    if again:
        stmt = stmt.where(_D.id.not_in(bindparam("seen", expanding=True)))
    return (
        stmt.order_by(_D.next_attempt_at)
        .limit(bindparam("wanted", type_=Integer))
        .with_for_update(skip_locked=True)
    )


_WALK = _walk(again=False)
_WALK_AGAIN = _walk(again=True)
_LEASE = (
    update(_D)
    .where(_D.id.in_(bindparam("ids", expanding=True)))
    .values(leased_until=bindparam("lease", type_=_D.leased_until.type))
    .returning(_D.id, _D.event_id, _D.endpoint_id, _D.attempts)
)
_EVENTS = select(WebhookEvent).where(WebhookEvent.id.in_(bindparam("ids", expanding=True)))
_LOOK_AHEAD = select(
    select(_D.id).where(_D.status == _PENDING, _D.next_attempt_at <= _NOW, _LEASE_FREE).exists(),
    select(func.min(_D.next_attempt_at))
    .where(_D.status == _PENDING, _D.next_attempt_at > _NOW)
    .scalar_subquery(),
)


async def look_ahead(session: AsyncSession, now: datetime) -> tuple[bool, datetime | None]:
    """Whether a delivery may be due now (its time has come and no lease holds it; it may
    still wait behind an earlier event of its member), and when the next one comes due."""
    row = (await session.execute(_LOOK_AHEAD, {"now": now})).one()
    return bool(row[0]), row[1]


async def claim(
    session: AsyncSession,
    now: datetime,
    rules: DeliveryRules,
    *,
    busy: Mapping[int, int] | None = None,
    room: int | None = None,
) -> list[Target]:
    """Lease due deliveries to this worker: at most `room` (default: `rules.in_flight`), and
    per endpoint at most `rules.per_endpoint` less what the worker has in flight there
    (`busy`), soonest due first. Commit the session to hand them out."""
    busy = busy or {}
    room = rules.in_flight if room is None else room
    endpoints = {e.id: e for e in await live_endpoints(session)}
    quotas = {
        e: min(rules.quota(endpoint) - busy.get(e, 0), room) for e, endpoint in endpoints.items()
    }
    chosen: list[int] = []
    seen: list[int] = []  # locked by this claim (over its endpoint's quota: left for later)
    for _ in range(CLAIM_PASSES):
        open_endpoints = [e for e, quota in quotas.items() if quota > 0]
        wanted = room - len(chosen)
        if not open_endpoints or wanted <= 0:
            break
        found = (
            await session.execute(
                _WALK_AGAIN if seen else _WALK,
                {"now": now, "endpoints": open_endpoints, "wanted": wanted, "seen": seen},
            )
        ).all()
        for row in found:
            seen.append(row.id)
            if quotas[row.endpoint_id] > 0:
                quotas[row.endpoint_id] -= 1
                chosen.append(row.id)
        if len(found) < wanted:
            break  # nothing more is due
    if not chosen:
        return []
    lease = now + rules.lease
    leased = (
        await session.execute(
            _LEASE,
            {"ids": chosen, "lease": lease},
            execution_options={"synchronize_session": False},
        )
    ).all()
    events = {
        e.id: e
        for e in await session.scalars(_EVENTS, {"ids": sorted({row.event_id for row in leased})})
    }
    bodies = {event_id: catalog.body(event) for event_id, event in events.items()}
    signers = {
        endpoint_id: tuple(Webhook(secret) for secret in signing_secrets(endpoint, now))
        for endpoint_id, endpoint in endpoints.items()
    }
    return [
        Target(
            delivery_id=row.id,
            endpoint_id=row.endpoint_id,
            url=endpoints[row.endpoint_id].url,
            message_id=catalog.event_id(row.event_id),
            body=bodies[row.event_id],
            signers=signers[row.endpoint_id],
            earlier_attempts=tuple(row.attempts or ()),
            lease=lease,
            endpoint_failing=endpoints[row.endpoint_id].failing_since is not None,
        )
        for row in sorted(leased, key=lambda r: r.id)
    ]


# ---------------------------------------------------------------- one attempt


def headers(target: Target, at: datetime) -> dict[str, str]:
    """Standard Webhooks headers: the signature of every secret that signs now."""
    signature = " ".join(s.sign(target.message_id, at, target.body) for s in target.signers)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": target.message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


async def attempt(
    client: httpx.AsyncClient, target: Target, at: datetime, rules: DeliveryRules
) -> Attempt:
    """POST the event once; never raises for anything the receiver or the network does."""
    started = time.perf_counter()

    def done(status: int | None, error: str | None) -> Attempt:
        return Attempt(at, status, round((time.perf_counter() - started) * 1000), error)

    try:
        await rules.urls.check(target.url)
    except UrlNotAllowed as exc:
        return done(None, f"URL not allowed: {exc.message}")
    try:
        async with (
            asyncio.timeout(rules.timeout),
            client.stream(
                "POST", target.url, content=target.body, headers=headers(target, at)
            ) as response,
        ):
            status = response.status_code
            read = 0
            async for chunk in response.aiter_raw():  # the connection is reused if drained
                read += len(chunk)
                if read >= MAX_RESPONSE_BYTES:
                    break
    except (TimeoutError, httpx.TimeoutException):
        return done(None, f"timeout after {rules.timeout:g} s")
    except httpx.HTTPError as exc:
        return done(None, _network_error(exc))
    except OSError as exc:
        return done(None, _network_error(exc))
    if 200 <= status < 300:
        return done(status, None)
    if 300 <= status < 400:
        return done(status, f"HTTP {status} (redirects are not followed)")
    return done(status, f"HTTP {status}")


def _network_error(exc: BaseException) -> str:
    """A short reason, without the URL (it may carry a token) or the body."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or (
            isinstance(seen, OSError) and seen.errno == errno.ECONNREFUSED
        ):
            return "connection refused"
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, httpx.ConnectError):
        return "connection failed"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the receiver closed the connection or broke the protocol"
    return f"network error ({type(exc).__name__})"


# ---------------------------------------------------------------- recording


def retry_delay(attempts_made: int, rules: DeliveryRules, rng: random.Random) -> timedelta | None:
    """How long after the `attempts_made`-th failed attempt the next comes (None: no more)."""
    if attempts_made > len(rules.schedule):
        return None
    return rules.schedule[attempts_made - 1] * rng.uniform(1 - JITTER, 1 + JITTER)


_DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[assignment]
_RECORD = (
    update(_DELIVERIES)
    .where(
        _DELIVERIES.c.id == bindparam("b_id"),
        _DELIVERIES.c.leased_until == bindparam("b_lease", type_=_DELIVERIES.c.leased_until.type),
        _DELIVERIES.c.status == _PENDING,
    )
    .values(
        status=bindparam("b_status", type_=_DELIVERIES.c.status.type),
        attempts=bindparam("b_attempts", type_=_DELIVERIES.c.attempts.type),
        next_attempt_at=bindparam("b_next", type_=_DELIVERIES.c.next_attempt_at.type),
        completed_at=bindparam("b_completed", type_=_DELIVERIES.c.completed_at.type),
        leased_until=None,
    )
)


async def record(
    session: AsyncSession,
    outcomes: Sequence[tuple[Target, Attempt]],
    now: datetime,
    rules: DeliveryRules,
    *,
    rng: random.Random | None = None,
) -> Recorded:
    """Write each attempt on its delivery (if the worker still holds it), schedule the retries,
    and what the answers mean for the endpoints: a success ends their failing streak, a 410 or
    three days of failures disable them (their pending deliveries fail)."""
    rng = rng or random.Random()
    recorded = Recorded()
    rows = []
    streaks: dict[int, list[Attempt]] = {}
    gone: dict[int, Attempt] = {}
    for target, tried in outcomes:
        made = len(target.earlier_attempts) + 1
        status, next_at, completed = DeliveryStatus.PENDING, None, None
        verdict = tried.verdict
        if verdict is Verdict.SUCCEEDED:
            status, completed = DeliveryStatus.SUCCEEDED, now
            recorded.succeeded += 1
        elif verdict is Verdict.GONE:
            status, completed = DeliveryStatus.FAILED, now
            gone.setdefault(target.endpoint_id, tried)
            recorded.failed += 1
        else:
            delay = retry_delay(made, rules, rng)
            if delay is None:
                status, completed = DeliveryStatus.FAILED, now
                recorded.failed += 1
            else:
                next_at = now + delay
                recorded.retried += 1
        if verdict is Verdict.RETRY or (verdict is Verdict.SUCCEEDED and target.endpoint_failing):
            streaks.setdefault(target.endpoint_id, []).append(tried)
        rows.append(
            {
                "b_id": target.delivery_id,
                "b_lease": target.lease,
                "b_status": status,
                "b_attempts": [*target.earlier_attempts, tried.as_json()],
                "b_next": next_at,
                "b_completed": completed,
            }
        )
    if rows:
        await session.execute(_RECORD, rows)
    reasons = {
        endpoint_id: f"410 Gone at {_minute(tried.at)}: the receiver asked for no more deliveries"
        for endpoint_id, tried in gone.items()
    }
    reasons |= await _failing_streaks(session, streaks, now)
    if reasons:
        recorded.disabled_endpoints = await disable(session, reasons, now)
        recorded.failed += await fail_pending(session, recorded.disabled_endpoints, now)
    return recorded


async def _failing_streaks(
    session: AsyncSession, streaks: Mapping[int, list[Attempt]], now: datetime
) -> dict[int, str]:
    """Keep each endpoint's `failing_since` (its first failure since its last success); the
    reasons to disable those failing for FAILING_LIMIT."""
    recovered, failing, restarted, last_error = [], [], [], {}
    for endpoint_id, attempts in streaks.items():
        attempts = sorted(attempts, key=lambda a: a.at)
        if attempts[-1].verdict is Verdict.SUCCEEDED:
            recovered.append(endpoint_id)
            continue
        last_error[endpoint_id] = attempts[-1].error or "failed"
        if any(a.verdict is Verdict.SUCCEEDED for a in attempts):
            restarted.append(endpoint_id)
        else:
            failing.append(endpoint_id)
    endpoints = WebhookEndpoint
    if recovered:
        await session.execute(
            update(endpoints)
            .where(endpoints.id.in_(recovered), endpoints.failing_since.is_not(None))
            .values(failing_since=None),
            execution_options={"synchronize_session": False},
        )
    if restarted:
        await session.execute(
            update(endpoints).where(endpoints.id.in_(restarted)).values(failing_since=now),
            execution_options={"synchronize_session": False},
        )
    if not failing:
        return {}
    await session.execute(
        update(endpoints)
        .where(endpoints.id.in_(failing), endpoints.failing_since.is_(None))
        .values(failing_since=now),
        execution_options={"synchronize_session": False},
    )
    too_long = await session.execute(
        select(endpoints.id, endpoints.failing_since).where(
            endpoints.id.in_(failing),
            endpoints.enabled.is_(True),
            endpoints.failing_since <= now - FAILING_LIMIT,
        )
    )
    return {
        row.id: f"failing since {_minute(row.failing_since)} (3 days): {last_error[row.id]}"
        for row in too_long
    }


async def disable(session: AsyncSession, reasons: Mapping[int, str], now: datetime) -> list[int]:
    """Disable these endpoints (those still enabled), each with its reason; their ids."""
    disabled = []
    for endpoint_id, reason in sorted(reasons.items()):
        done = await session.scalar(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled.is_(True))
            .values(enabled=False, disabled_reason=reason[:MAX_REASON])
            .returning(WebhookEndpoint.id),
            execution_options={"synchronize_session": False},
        )
        if done is not None:
            disabled.append(endpoint_id)
    return disabled


async def fail_pending(session: AsyncSession, endpoint_ids: Sequence[int], now: datetime) -> int:
    """Every pending delivery to these endpoints has failed (attempts in flight elsewhere find
    them so and record nothing); how many."""
    if not endpoint_ids:
        return 0
    failed = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id.in_(endpoint_ids), WebhookDelivery.status == _PENDING)
        .values(
            status=DeliveryStatus.FAILED, next_attempt_at=None, leased_until=None, completed_at=now
        )
        .returning(WebhookDelivery.id),
        execution_options={"synchronize_session": False},
    )
    return len(failed.all())


def _minute(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------- the backlog


@dataclass(frozen=True, slots=True)
class Backlog:
    """When the oldest undelivered work was created (None: there is none)."""

    oldest_pending: datetime | None  # the oldest delivery still PENDING
    oldest_undispatched: datetime | None  # the oldest member event not dispatched yet


async def backlog(session: AsyncSession) -> Backlog:
    pending = (
        select(func.min(WebhookDelivery.created_at))
        .where(WebhookDelivery.status == _PENDING)
        .scalar_subquery()
    )
    undispatched = (
        select(MemberEvent.created_at)
        .where(MemberEvent.dispatched.is_(False))
        .order_by(MemberEvent.id)
        .limit(1)
        .scalar_subquery()
    )
    row = (await session.execute(select(pending, undispatched))).one()
    return Backlog(row[0], row[1])
