"""Promotion experiments: assignment by a hash of (promotion, member) that every process agrees
on, control members earning as if the promotion did not exist on both purchase paths, and
results read from the ledger that add up to it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from sqlalchemy import BigInteger, ColumnClause, func, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import EntryKind, LedgerEntry, Member, Promotion, Purchase
from models.engine import session_factory
from services import experiments
from services.catalog import load_catalog
from services.clock import ManualClock
from services.errors import Invalid
from services.experiments import ExperimentGroup, assigned, position
from services.ledger.purchases import Order, preview_order, record_purchase, refund_purchase
from services.members import enroll
from services.program import create_promotion
from services.segments import create_segment
from tests.services.helpers import configure
from tests.services.test_direct_purchases import Direct

ROOT = Path(__file__).resolve().parents[2]


async def experiment(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    share: float | None = 0.5,
    multiplier: float = 2,
) -> Promotion:
    """A promotion running from a day ago for ten days, held out for `share` of members."""
    async with sessions.begin() as session:
        return await create_promotion(
            session,
            name="Double points",
            multiplier=multiplier,
            starts_at=clock.now() - timedelta(days=1),
            ends_at=clock.now() + timedelta(days=10),
            control_share=share,
        )


async def members(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    count: int,
    prefix: str = "m",
    **given: object,
) -> list[int]:
    ids = []
    async with sessions.begin() as session:
        for n in range(count):
            member = await enroll(
                session,
                email=f"{prefix}{n}@example.com",
                display_name=f"M{n}",
                now=clock.now(),
                **given,  # type: ignore[arg-type]
            )
            ids.append(member.id)
    return ids


def split(promotion: Promotion, ids: list[int]) -> tuple[list[int], list[int]]:
    """(treatment, control) among `ids`."""
    share = promotion.experiment_control_share
    control = [m for m in ids if assigned(share, promotion.id, m) is ExperimentGroup.CONTROL]
    return [m for m in ids if m not in control], control


async def buy(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    member_id: int,
    order: str,
    amount: float,
    occurred_at: datetime | None = None,
) -> int:
    async with sessions.begin() as session:
        result = await record_purchase(
            session,
            member_id=member_id,
            order_id=order,
            amount=amount,
            now=clock.now(),
            occurred_at=occurred_at,
            actor="test",
        )
    return result.entry.points


# ---------------------------------------------------------------- assignment


def test_position_is_the_documented_hash() -> None:
    digest = hashlib.sha256(b"7:12345").digest()
    assert position(7, 12345) == int.from_bytes(digest[:8], "big")
    # CONTROL exactly when position / 2^64 < controlShare (compared without rounding).
    for share in (0.1, 0.3, 0.5, 0.77):
        for member_id in range(1, 300):
            below = Fraction(position(7, member_id), 2**64) < Fraction(share)
            assert (assigned(share, 7, member_id) is ExperimentGroup.CONTROL) == below


def test_assignment_is_stable_and_close_to_the_control_share_on_1000_members() -> None:
    groups = [assigned(0.2, 42, member_id) for member_id in range(1, 1001)]
    assert groups == [assigned(0.2, 42, member_id) for member_id in range(1, 1001)]
    control = groups.count(ExperimentGroup.CONTROL)
    # Binomial(1000, 0.2): standard deviation 12.6; 40 is over three of them.
    assert 160 <= control <= 240, control
    # Another promotion shuffles members independently of this one.
    other = [assigned(0.2, 43, member_id) for member_id in range(1, 1001)]
    assert other != groups
    # No experiment: everyone is treated.
    assert {assigned(None, 42, m) for m in range(1, 1001)} == {ExperimentGroup.TREATMENT}


def test_another_process_assigns_every_member_the_same_way() -> None:
    script = (
        "from services.experiments import assigned\n"
        "print(''.join(assigned(0.3, 9, m).value[0] for m in range(1, 1001)))\n"
    )
    # A different string-hash seed: nothing may depend on Python's per-process hash().
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(  # noqa: S603 (our own interpreter)
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    here = "".join(assigned(0.3, 9, m).value[0] for m in range(1, 1001))
    assert other == here and set(here) == {"T", "C"}


@pytest.mark.parametrize("share", [0.3, 0.77])
async def test_postgresql_assigns_every_member_as_python_does(
    pg: AsyncEngine, share: float
) -> None:
    ids = [*range(1, 1001), 2**40 + 7, 2**62 + 1]
    member: ColumnClause[int] = literal_column("n", BigInteger)
    stmt = select(member, experiments.held_out_in_sql(9, share, member)).select_from(
        text(f"unnest(ARRAY{ids}::bigint[]) AS n")
    )
    async with session_factory(pg)() as session:
        in_sql = {n: held_out for n, held_out in (await session.execute(stmt)).tuples()}
    here = {n: assigned(share, 9, n) is ExperimentGroup.CONTROL for n in ids}
    assert in_sql == here and set(here.values()) == {True, False}


@pytest.mark.parametrize("share", [0.0, 1.0, -0.1, 1.5, float("nan")])
async def test_a_control_share_outside_0_and_1_is_refused_and_nothing_written(
    engine: AsyncEngine, clock: ManualClock, share: float
) -> None:
    sessions = session_factory(engine)
    with pytest.raises(Invalid) as refused:
        await experiment(sessions, clock, share=share)
    assert refused.value.field == ["input", "experiment", "controlShare"]
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Promotion)) == 0


# ---------------------------------------------------------------- earning


async def test_control_members_earn_as_if_the_promotion_did_not_exist(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    promotion = await experiment(sessions, clock, share=0.5)
    treatment, control = split(promotion, await members(sessions, clock, 12))
    assert treatment and control
    assert await buy(sessions, clock, treatment[0], "t-1", 25) == 50
    assert await buy(sessions, clock, control[0], "c-1", 25) == 25
    # previewPurchase quotes the same way, and names the promotion only for the treated.
    async with sessions() as session:
        catalog = await load_catalog(session, clock.now())
        rows = {m: await session.get(Member, m) for m in (treatment[1], control[1])}
        order = Order(Decimal(10))
        quoted = await preview_order(session, catalog, rows[treatment[1]], order, clock.now())
        assert quoted.points == 20 and any("Double points" in c.label for c in quoted.components)
        quoted = await preview_order(session, catalog, rows[control[1]], order, clock.now())
        assert quoted.points == 10 and not any("Double" in c.label for c in quoted.components)


async def test_the_direct_path_keeps_recording_experiment_purchases_and_holds_control_out(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    promotion = await experiment(sessions, clock, share=0.5)
    treatment, control = split(promotion, await members(sessions, clock, 12))
    direct = Direct(pg, clock)
    treated_purchase = await direct.record(treatment[0], "t-1", 25)
    control_purchase = await direct.record(control[0], "c-1", 25)
    assert treated_purchase is not None and control_purchase is not None  # no decline
    assert (treated_purchase.entry.points, control_purchase.entry.points) == (50, 25)


# ---------------------------------------------------------------- results


async def results_scenario(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> tuple[Promotion, list[int], list[int]]:
    """Two treated and three control members (the hash of ids 1-5 with promotion 1) and
    purchases whose figures are worked out by hand in the test below."""
    promotion = await experiment(sessions, clock, share=0.5)
    treatment, control = split(promotion, await members(sessions, clock, 5))
    assert (len(treatment), len(control)) == (2, 3), (promotion.id, treatment, control)
    t_a, t_b = treatment
    c_a, c_b, _ = control
    assert await buy(sessions, clock, t_a, "ta-1", 100) == 200
    assert await buy(sessions, clock, t_b, "tb-1", 50) == 100
    assert await buy(sessions, clock, t_b, "tb-2", 30) == 60
    async with sessions.begin() as session:  # tb-2 refunded in full: 60 points back
        await refund_purchase(
            session, order_id="tb-2", refund_id="r-1", amount=None, now=clock.now()
        )
    assert await buy(sessions, clock, c_a, "ca-1", 80) == 80
    before = promotion.starts_at - timedelta(hours=1)  # outside the window: not counted
    assert await buy(sessions, clock, c_b, "cb-0", 40, occurred_at=before) == 40
    assert await buy(sessions, clock, c_b, "cb-1", 20) == 20
    return promotion, treatment, control


async def test_results_per_group_hand_checked(engine: AsyncEngine, clock: ManualClock) -> None:
    sessions = session_factory(engine)
    promotion, _, _ = await results_scenario(sessions, clock)
    async with sessions() as session:
        found = await experiments.promotion_results(session, promotion, clock.now())
    treatment, control = found.groups
    assert (treatment.group, control.group) == (ExperimentGroup.TREATMENT, ExperimentGroup.CONTROL)
    # Treatment: revenue 100 and 50 + 30 - 30; purchases 1 and 2; points 200 + 100 + 60 - 60.
    assert (treatment.members, treatment.buyers, treatment.points_cost) == (2, 2, 300)
    assert treatment.purchases_per_member == 1.5
    assert treatment.revenue_per_member == 75
    # Control: revenue 80, 20 and 0 (cb-0 happened before the promotion); points 80 + 20.
    assert (control.members, control.buyers, control.points_cost) == (3, 2, 100)
    assert control.purchases_per_member == pytest.approx(2 / 3)
    assert control.revenue_per_member == pytest.approx(100 / 3)
    # Revenue: variances 1250 (100, 50) and 5200/3 (80, 20, 0); se = sqrt(625 + 5200/9).
    revenue = found.revenue_uplift
    assert revenue is not None
    assert revenue.estimate == pytest.approx(75 - 100 / 3)
    assert revenue.low == pytest.approx(41.6667 - 1.96 * 34.6811, abs=0.01)
    assert revenue.high == pytest.approx(41.6667 + 1.96 * 34.6811, abs=0.01)
    # Purchases: variances 1/2 (1, 2) and 1/3 (1, 1, 0); se = sqrt(1/4 + 1/9).
    purchases = found.purchases_uplift
    assert purchases is not None
    assert purchases.estimate == pytest.approx(1.5 - 2 / 3)
    assert purchases.high - purchases.estimate == pytest.approx(1.959964 * (13 / 36) ** 0.5)
    assert "Welch" in found.method


async def test_results_add_up_to_the_ledger(engine: AsyncEngine, clock: ManualClock) -> None:
    sessions = session_factory(engine)
    promotion, _, _ = await results_scenario(sessions, clock)
    async with sessions() as session:
        found = await experiments.promotion_results(session, promotion, clock.now())
        everyone = await session.scalar(select(func.count()).select_from(Member))
        in_window = (
            select(Purchase.entry_id)
            .where(Purchase.occurred_at >= promotion.starts_at)
            .where(Purchase.occurred_at < promotion.ends_at)
        )
        earned = await session.scalar(
            select(func.sum(LedgerEntry.points)).where(
                LedgerEntry.kind == EntryKind.PURCHASE, LedgerEntry.id.in_(in_window)
            )
        )
        reversed_ = await session.scalar(
            select(func.sum(LedgerEntry.points)).where(
                LedgerEntry.kind == EntryKind.REVERSAL,
                LedgerEntry.reverses_entry_id.in_(in_window),
            )
        )
    assert sum(g.members for g in found.groups) == everyone
    assert earned is not None and reversed_ is not None
    assert sum(g.points_cost for g in found.groups) == earned + reversed_ == 400


async def test_postgresql_groups_in_sql_exactly_what_streaming_members_gives(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    promotion, _, _ = await results_scenario(sessions, clock)
    await members(sessions, clock, 40, "more")
    async with sessions() as session:
        in_sql = await experiments.promotion_results(session, promotion, clock.now(), in_sql=True)
        streamed = await experiments.promotion_results(
            session, promotion, clock.now(), in_sql=False
        )
    assert in_sql == streamed
    assert sum(g.members for g in in_sql.groups) == 45


async def test_without_an_experiment_everyone_is_treatment_and_there_is_no_uplift(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    promotion = await experiment(sessions, clock, share=None)
    ids = await members(sessions, clock, 3)
    assert await buy(sessions, clock, ids[0], "o-1", 10) == 20
    async with sessions() as session:
        found = await experiments.promotion_results(session, promotion, clock.now())
        group = await experiments.experiment_group(session, promotion.id, ids[0], clock.now())
    assert [(g.group, g.members, g.buyers, g.points_cost) for g in found.groups] == [
        (ExperimentGroup.TREATMENT, 3, 1, 20)
    ]
    assert found.revenue_uplift is None and found.purchases_uplift is None
    assert group is None  # no experiment: no group


async def test_a_segment_targeted_experiment_counts_only_the_segment(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    """Segment targeting (promotions.segment_id) comes with another change; eligibility reads
    it where it exists, here set on the loaded promotion."""
    sessions = session_factory(engine)
    await configure(sessions, pending_days=0)
    promotion = await experiment(sessions, clock, share=0.5)
    may = await members(sessions, clock, 4, "may", birthday=date(1990, 5, 1))
    others = await members(sessions, clock, 3)
    async with sessions.begin() as session:
        segment = await create_segment(
            session, name="May", rule={"all": [{"birthdayMonth": 5}]}, now=clock.now()
        )
    async with sessions() as session:
        loaded = await session.get(Promotion, promotion.id)
        assert loaded is not None
        loaded.segment_id = segment.id
        found = await experiments.promotion_results(session, loaded, clock.now())
        inside = await experiments.experiment_group(session, promotion.id, may[0], clock.now())
        outside = await experiments.experiment_group(session, promotion.id, others[0], clock.now())
    assert sum(g.members for g in found.groups) == len(may)
    assert inside == assigned(0.5, promotion.id, may[0]) and outside is None
