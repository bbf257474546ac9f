"""recordPurchase's one-read-one-write path on PostgreSQL writes exactly what the general path
writes, and leaves to it (writing nothing) every purchase it does not cover."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import ChallengeMetric, EntryKind, LedgerEntry, Member, MemberEvent, Purchase
from models.engine import create_engine, session_factory
from services.catalog import Catalog, load_catalog
from services.clock import ManualClock
from services.direct.purchases import RecordedPurchase, member_with_external_id
from services.direct.purchases import record_purchase as record_directly
from services.direct.writer import DirectWriter, breaks_connection
from services.errors import LimitReached
from services.gamification.badges import create_badge
from services.gamification.challenges import create_challenge
from services.ledger.purchases import PurchaseInput, record_purchase
from services.members import enroll
from services.program import create_promotion, create_tier
from tests.conftest import PG_URL
from tests.services.helpers import (
    assert_balances_match_ledger,
    cached_balances,
    configure,
    fund,
    listened_writer,
    new_member,
    rows_of,
)


async def catalog(sessions: async_sessionmaker[AsyncSession], clock: ManualClock) -> Catalog:
    async with sessions() as session:
        return await load_catalog(session, clock.now())


class Direct:
    """The direct path on an engine, remembering which members it told the bus about."""

    def __init__(self, engine: AsyncEngine, clock: ManualClock) -> None:
        self.writer, self.told = listened_writer(engine)
        self.sessions, self.clock = session_factory(engine), clock

    async def record(
        self, member_id: int, order_id: str, amount: float, **given: Any
    ) -> RecordedPurchase | None:
        now = self.clock.now()
        purchase = PurchaseInput.check(
            member_id=member_id,
            order_id=order_id,
            amount=amount,
            occurred_at=given.pop("occurred_at", None),
            now=now,
        )
        current = given.pop("catalog", None) or await catalog(self.sessions, self.clock)
        return await record_directly(self.writer, purchase, now=now, actor="test", catalog=current)


async def general(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    member_id: int,
    order: str,
    amount: float,
    occurred_at: datetime | None = None,
) -> None:
    async with sessions.begin() as session:
        await record_purchase(
            session,
            member_id=member_id,
            order_id=order,
            amount=amount,
            now=clock.now(),
            occurred_at=occurred_at,
            actor="test",
        )


async def written(sessions: async_sessionmaker[AsyncSession], member_id: int) -> dict[str, Any]:
    """Everything a purchase wrote for a member, without ids, order ids or the member's own
    identity: two members given the same purchases must compare equal."""
    async with sessions() as session:
        member = await session.get(Member, member_id)
        assert member is not None
        entries = [
            e
            for e in await rows_of(session, LedgerEntry, member_id)
            if e.kind is EntryKind.PURCHASE
        ]
        purchases = await rows_of(session, Purchase, member_id)
        events = await rows_of(session, MemberEvent, member_id)
        entry_order = {entry.id: n for n, entry in enumerate(entries)}
        return {
            "balances": cached_balances(member),
            "entries": [
                (
                    e.status,
                    e.points,
                    e.remaining,
                    e.description.split(":")[1],
                    e.created_at,
                    e.available_at,
                    e.expires_at,
                    e.breakdown,
                    e.actor,
                    e.reverses_entry_id,
                )
                for e in entries
            ],
            "purchases": [
                (
                    p.amount,
                    p.occurred_at,
                    entry_order[p.entry_id],
                    p.points_earned,
                    p.refunded_amount,
                    p.points_reversed,
                )
                for p in purchases
            ],
            "events": [
                (
                    e.kind,
                    None if e.entry_id is None else entry_order.get(e.entry_id, "other"),
                    e.data,
                )
                for e in events
            ],
        }


async def test_given_tiers_a_promotion_and_pending_days_then_both_paths_write_the_same_rows(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    await configure(sessions, points_per_currency_unit=1.5, pending_days=0, expiry_days=365)
    async with sessions.begin() as session:
        await create_tier(session, name="Silver", threshold=100, multiplier=1.25, benefits=[])
        await create_tier(session, name="Gold", threshold=400, multiplier=1.5, benefits=[])
        now = clock.now()
        await create_promotion(
            session,
            name="Week of x2",
            multiplier=2,
            starts_at=now - timedelta(days=1),
            ends_at=now + timedelta(days=3),
        )
    ann, bob = await new_member(sessions, clock, "ann"), await new_member(sessions, clock, "bob")
    direct = Direct(pg, clock)
    # Entry tier, then crossing into Silver, then into Gold (a TIER_CHANGED each), then 0.
    amounts = [12.34, 40.0, 99.99, 0.0, 7.5]
    for n, amount in enumerate(amounts):
        await general(sessions, clock, ann, f"ann-{n}", amount)
        assert await direct.record(bob, f"bob-{n}", amount) is not None
        clock.advance(timedelta(minutes=5))
    # Pending points (reported two days late): the lot waits, and settling is scheduled.
    await configure(sessions, pending_days=14)
    late = clock.now() - timedelta(days=2)
    await general(sessions, clock, ann, "ann-pending", 20.0, occurred_at=late)
    assert await direct.record(bob, "bob-pending", 20.0, occurred_at=late) is not None

    ann_rows = await written(sessions, ann)
    assert len(ann_rows["entries"]) == 6 and ann_rows["balances"][2] > 0
    assert ann_rows == await written(sessions, bob)
    bob_rows = await written(sessions, bob)
    assert [kind for kind, _, _ in bob_rows["events"]].count("TIER_CHANGED") == 2
    await assert_balances_match_ledger(sessions, bob)
    assert direct.told == [frozenset({bob})] * 6


async def test_the_answer_is_what_was_written(pg: AsyncEngine, clock: ManualClock) -> None:
    sessions = session_factory(pg)
    member = await new_member(sessions, clock)
    recorded = await Direct(pg, clock).record(member, "o-1", 25.0)
    assert recorded is not None
    async with sessions() as session:
        entry = await session.get(LedgerEntry, recorded.entry.id)
        row = await session.get(Member, member)
    assert entry is not None and row is not None
    answer = recorded.entry
    assert (answer.kind, answer.status, answer.points, answer.description, answer.breakdown) == (
        entry.kind,
        entry.status,
        entry.points,
        entry.description,
        entry.breakdown,
    )
    assert (answer.created_at, answer.available_at, answer.expires_at, answer.reference) == (
        entry.created_at,
        entry.available_at,
        entry.expires_at,
        entry.reference,
    )
    assert (recorded.member.available, recorded.member.tier_id, recorded.member.email) == (
        row.available,
        row.tier_id,
        row.email,
    )


async def test_given_a_recorded_order_then_the_direct_path_leaves_the_replay_to_the_general_one(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    member = await new_member(sessions, clock)
    direct = Direct(pg, clock)
    assert await direct.record(member, "o-1", 10.0) is not None
    assert await direct.record(member, "o-1", 10.0) is None
    assert direct.told == [frozenset({member})]
    assert (await written(sessions, member))["balances"][1] == 10


async def test_twenty_concurrent_uses_of_one_order_id_credit_once(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    member = await new_member(sessions, clock)
    direct = Direct(pg, clock)
    current = await catalog(sessions, clock)
    results = await asyncio.gather(
        *(direct.record(member, "same", 10.0, catalog=current) for _ in range(20))
    )
    assert sum(result is not None for result in results) == 1
    assert (await written(sessions, member))["balances"][1] == 10
    await assert_balances_match_ledger(sessions, member)


async def test_given_points_due_to_settle_then_the_general_path_settles_them(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    await configure(sessions, pending_days=3)
    member = await new_member(sessions, clock)
    direct = Direct(pg, clock)
    assert await direct.record(member, "o-1", 10.0) is not None  # pending until 3 days on
    clock.advance(timedelta(days=4))
    assert await direct.record(member, "o-2", 10.0) is None
    assert (await written(sessions, member))["balances"][1:3] == (0, 10)  # nothing written


async def test_given_an_unpaid_referral_then_the_general_path_pays_it(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    async with sessions.begin() as session:
        referrer = await enroll(session, email="r@example.com", display_name="R", now=clock.now())
        referred = await enroll(
            session,
            email="n@example.com",
            display_name="N",
            referral_code=referrer.referral_code,
            now=clock.now(),
        )
        referred_id = referred.id
    assert await Direct(pg, clock).record(referred_id, "first", 10.0) is None


async def test_given_a_stale_catalog_a_badge_a_tier_window_or_no_member_then_nothing_written(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    member = await new_member(sessions, clock)
    direct = Direct(pg, clock)
    stale = await catalog(sessions, clock)
    async with sessions.begin() as session:
        await create_tier(session, name="Silver", threshold=100, multiplier=2, benefits=[])
    assert await direct.record(member, "o-1", 10.0, catalog=stale) is None
    assert await direct.record(member + 1000, "o-2", 10.0) is None  # NotFound from the general
    await configure(sessions, tier_window_days=365)
    assert await direct.record(member, "o-3", 10.0) is None
    await configure(sessions, tier_window_days=None)
    async with sessions.begin() as session:
        await create_badge(
            session,
            name="Big spender",
            description="",
            image_url=None,
            metric=ChallengeMetric.POINTS_EARNED,
            threshold=1_000,
            now=clock.now(),
        )
    assert await direct.record(member, "o-4", 10.0) is None
    assert direct.told == []
    async with sessions() as session:
        assert await session.scalar(select(Purchase.id)) is None


async def test_given_a_full_balance_then_limit_reached_and_the_order_id_stays_free(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    member = await new_member(sessions, clock)
    for _ in range(20):
        await fund(sessions, clock, member, 100_000_000)
        clock.advance(timedelta(seconds=1))
    direct = Direct(pg, clock)
    with pytest.raises(LimitReached):
        await direct.record(member, "o-1", 100_000.0)
    assert direct.told == []
    await fund(sessions, clock, member, -1_000_000)
    assert await direct.record(member, "o-1", 100_000.0) is not None


async def test_a_purchase_cancelled_while_it_waits_writes_nothing_and_leaves_no_transaction(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    member = await new_member(sessions, clock)
    direct = Direct(pg, clock)
    current = await catalog(sessions, clock)
    async with pg.connect() as holder:  # another writer holds the member's row lock
        await holder.execute(text("BEGIN"))
        await holder.execute(
            text("SELECT id FROM members WHERE id = :id FOR UPDATE"), {"id": member}
        )
        waiting = asyncio.create_task(direct.record(member, "o-1", 10.0, catalog=current))
        await asyncio.sleep(0.3)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # The write is one statement: the cancel request asyncpg sends stops it while it
        # waits for the lock (once the statement is through, a cancel can only come too late,
        # and the purchase is then written whole). Let the request reach the server first.
        await asyncio.sleep(0.5)
    async with pg.connect() as connection:
        stuck = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
            )
        )
    assert stuck == 0
    assert (await written(sessions, member))["purchases"] == []
    assert await direct.record(member, "o-1", 10.0, catalog=current) is not None
    assert (await written(sessions, member))["balances"][1] == 10


async def test_a_member_is_found_by_the_merchants_external_id(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    async with sessions.begin() as session:
        member = await enroll(
            session, email="x@example.com", display_name="X", external_id="shop-42", now=clock.now()
        )
        member_id = member.id
    writer = Direct(pg, clock).writer
    assert await member_with_external_id(writer, "shop-42") == member_id
    assert await member_with_external_id(writer, "shop-43") is None


async def test_a_connection_lost_in_the_pool_is_replaced_without_failing_the_purchase(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    member = await new_member(sessions, clock)
    current = await catalog(sessions, clock)
    small = create_engine(pg.url.render_as_string(hide_password=False), pool_size=1)
    try:
        direct = Direct(small, clock)
        assert await direct.record(member, "o-1", 10.0, catalog=current) is not None
        pid = await direct.writer.read_value("SELECT pg_backend_pid()")
        async with pg.connect() as admin:  # the server goes away under the pooled connection
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        # However asyncpg learns it (before, during or after the checkout), the purchase is
        # made on a new connection.
        assert await direct.record(member, "o-2", 10.0, catalog=current) is not None
        assert await direct.writer.read_value("SELECT pg_backend_pid()") != pid
    finally:
        await small.dispose()
    assert (await written(sessions, member))["balances"][1] == 20


def pg_dsn() -> str:
    return PG_URL.replace("postgresql+asyncpg://", "postgresql://")


async def _terminate_pool(writer: DirectWriter, size: int) -> None:
    """Every backend of `writer`'s pool (its `size` connections, each held at once so that
    they are distinct) is terminated by the server, as in a failover."""
    hold = "SELECT pg_backend_pid() FROM pg_sleep(0.05)"
    pids = await asyncio.gather(*(writer.read_value(hold) for _ in range(size)))
    assert len(set(pids)) == size
    admin = await asyncpg.connect(dsn=pg_dsn())
    try:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids)
    finally:
        await admin.close()


async def test_backends_terminated_under_concurrent_purchases_fail_none_and_credit_each_once(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    """The black-box run's fault: pooled connections ended by the server while purchases
    start. Before the fix some failed, among them with asyncpg's InternalClientError
    "cannot switch to state 12; another operation (2) is in progress" (see
    DroppedConnection)."""
    sessions = session_factory(pg)
    ids = [await new_member(sessions, clock, f"m{n}") for n in range(12)]  # no lock waits
    current = await catalog(sessions, clock)
    size = 6
    small = create_engine(pg.url.render_as_string(hide_password=False), pool_size=size)
    try:
        direct = Direct(small, clock)
        for attempt in range(6):
            await _terminate_pool(direct.writer, size)
            # At once: some purchases take a connection before its end reaches asyncpg,
            # some as it does, some after.
            recorded = await asyncio.gather(
                *(
                    direct.record(member, f"o-{attempt}-{n}", 10.0, catalog=current)
                    for n, member in enumerate(ids)
                ),
                return_exceptions=True,
            )
            failed = [r for r in recorded if not isinstance(r, RecordedPurchase)]
            assert failed == [], failed
    finally:
        await small.dispose()
    for member in ids:
        rows = await written(sessions, member)
        assert rows["balances"][1] == 6 * 10 and len(rows["purchases"]) == 6
        await assert_balances_match_ledger(sessions, member)


@pytest.mark.parametrize(
    ("error", "breaks"),
    [
        (asyncpg.UniqueViolationError("duplicate"), False),
        (asyncpg.SerializationError("retry"), False),
        (LimitReached("full"), False),
        (asyncio.CancelledError(), False),
        (asyncpg.AdminShutdownError("terminated"), True),
        (asyncpg.ConnectionDoesNotExistError("gone"), True),
        (asyncpg.InterfaceError("closed"), True),
        (asyncpg.InternalClientError("state"), True),
        (OSError("reset"), True),
    ],
)
def test_only_errors_that_may_end_the_connection_discard_it(
    error: BaseException, breaks: bool
) -> None:
    assert breaks_connection(error) is breaks


async def test_thirty_concurrent_orders_of_one_member_each_credit_once(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    member = await new_member(sessions, clock)
    direct = Direct(pg, clock)
    current = await catalog(sessions, clock)

    async def record(order: str) -> str:
        """As the API does: the direct path, else the general one."""
        if await direct.record(member, order, 10.0, catalog=current) is not None:
            return "direct"
        await general(sessions, clock, member, order, 10.0)
        return "general"

    paths = await asyncio.gather(*(record(f"o-{n}") for n in range(30)))
    assert "direct" in paths  # a member this busy sends some to the general path's queue
    rows = await written(sessions, member)
    assert rows["balances"][1] == 300 and len(rows["purchases"]) == 30
    assert [kind for kind, _, _ in rows["events"]].count("POINTS_UPDATED") == 30
    await assert_balances_match_ledger(sessions, member)


async def changed_while_writing(
    pg: AsyncEngine, direct: Direct, member: int, current: Catalog
) -> RecordedPurchase | None:
    """Record a purchase whose write waits on the member's row while another writer changes
    the row (after the purchase read it) and commits."""
    async with pg.connect() as holder:
        await holder.execute(text("BEGIN"))
        await holder.execute(
            text("UPDATE members SET display_name = 'Renamed' WHERE id = :id"), {"id": member}
        )
        waiting = asyncio.create_task(direct.record(member, "o-1", 10.0, catalog=current))
        await asyncio.sleep(0.3)
        await holder.commit()
    return await waiting


async def test_given_the_member_changed_after_it_was_read_then_the_purchase_is_worked_out_again(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    member = await new_member(sessions, clock)
    direct = Direct(pg, clock)
    recorded = await changed_while_writing(pg, direct, member, await catalog(sessions, clock))
    assert recorded is not None
    assert recorded.member.display_name == "Renamed"  # read again after the change
    assert (await written(sessions, member))["balances"][1] == 10
    await assert_balances_match_ledger(sessions, member)


async def test_given_a_member_changing_at_every_attempt_then_nothing_written_and_the_order_free(
    pg: AsyncEngine, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = session_factory(pg)
    member = await new_member(sessions, clock)
    direct = Direct(pg, clock)
    monkeypatch.setattr("services.direct.purchases.ATTEMPTS", 1)
    assert await changed_while_writing(pg, direct, member, await catalog(sessions, clock)) is None
    assert direct.told == []
    async with sessions() as session:  # the declined write took its claim back with it
        assert await session.scalar(text("SELECT count(*) FROM idempotency_records")) == 0
    assert (await written(sessions, member))["purchases"] == []
    await general(sessions, clock, member, "o-1", 10.0)
    assert (await written(sessions, member))["balances"][1] == 10


async def test_an_ended_challenge_leaves_purchases_on_the_direct_path(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    member = await new_member(sessions, clock)
    now = clock.now()
    async with sessions.begin() as session:
        await create_challenge(
            session,
            name="Last month's",
            description="",
            metric=ChallengeMetric.PURCHASE_COUNT,
            goal=1,
            reward_points=50,
            badge_id=None,
            starts_at=now - timedelta(days=40),
            ends_at=now - timedelta(days=10),
            recurrence=None,
            now=now,
        )
    assert await Direct(pg, clock).record(member, "o-1", 10.0) is not None
