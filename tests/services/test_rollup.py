"""The charts' rollup (models.rollup, kept by triggers of migration 0020) against the ledger,
on both backends, through the real app: after purchases (the direct path's one-statement
write on PostgreSQL, the general path with lines, referrals), full and line refunds,
redemptions and a cancellation, expiry, adjustments either way, an activity, an erasure and
concurrent purchases, the rollup equals a computation from the ledger done here, the same
again after folding and after `rollup.rebuild`; and the charts read from it equal
programStats over every bucket, whole or cut at the window's edges."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from models import (
    ActiveMembers,
    ActiveMembersChange,
    KeyRole,
    LedgerDay,
    LedgerDayChange,
    LedgerEntry,
    MemberDay,
)
from services import rollup
from services.stats import ACTIVE_KINDS
from tests.conftest import Api
from tests.graphql.test_earning_rules_api import AMOUNT, LINES
from tests.graphql.test_member_admin import ERASE
from tests.graphql.test_mutations import ACTIVITY, PURCHASE, REFUND, enroll, ok
from tests.graphql.test_program_timeline import STATS, TIMELINE
from tests.graphql.test_rewards_api import (
    CANCEL,
    UPDATE_PROGRAM,
    adjust,
    call,
    new_member,
    new_reward,
    pk_of,
    query,
    redeemed,
)

START = datetime(2026, 1, 28, 9, tzinfo=UTC)  # a Wednesday, days before a month's end


def expected(
    entries: list[tuple[Any, ...]],
) -> tuple[dict[Any, list[int]], dict[Any, int], set[Any]]:
    """The rollup computed here from the ledger's rows: sums by (day, kind), active members
    by (period, start), and the members' active days."""
    sums: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    days: set[tuple[int, date]] = set()
    for member_id, kind, status, points, created_at in entries:
        if status == "VOIDED":
            continue
        day = created_at.astimezone(UTC).date()
        sums[day, kind][0 if points > 0 else 1] += points
        if kind in ACTIVE_KINDS:
            days.add((member_id, day))
    periods: dict[Any, set[int]] = defaultdict(set)
    for member_id, day in days:
        periods["D", day].add(member_id)
        periods["W", day - timedelta(days=day.weekday())].add(member_id)
        periods["M", day.replace(day=1)].add(member_id)
    nonzero = {key: sum_ for key, sum_ in sums.items() if sum_ != [0, 0]}  # 0-point entries
    return nonzero, {key: len(ids) for key, ids in periods.items()}, days


async def held(api: Api) -> tuple[dict[Any, list[int]], dict[Any, int], set[Any]]:
    """What the rollup holds, its summaries and not yet folded changes added up."""
    async with api.sessions() as session:
        sums: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
        for table in (LedgerDay, LedgerDayChange):
            for day, kind, credited, debited in await session.execute(
                select(table.day, table.kind, table.credited, table.debited)
            ):
                sums[day, kind.value][0] += credited
                sums[day, kind.value][1] += debited
        active: Counter[Any] = Counter()
        for counts in (ActiveMembers, ActiveMembersChange):
            for period, starts, members in await session.execute(
                select(counts.period, counts.starts, counts.members)
            ):
                active[period, starts] += members
        days = set((await session.execute(select(MemberDay.member_id, MemberDay.day))).tuples())
    return {k: v for k, v in sums.items() if v != [0, 0]}, dict(+active), days


async def ledger(api: Api) -> list[tuple[Any, ...]]:
    async with api.sessions() as session:
        e = LedgerEntry
        rows = await session.execute(select(e.member_id, e.kind, e.status, e.points, e.created_at))
        return [(m, k.value, s.value, p, c) for m, k, s, p, c in rows]


async def history(api: Api) -> tuple[str, str]:
    """Five weeks of everything that writes entries, across a month's end; the admin and
    service keys."""
    clock = api.clock
    clock.set(START)
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    ok(
        await call(api, UPDATE_PROGRAM, admin, expiryDays=3, signupBonus=5, referralBonus=7),
        "updateProgram",
    )
    ann = await new_member(api, admin, "ann")
    bob = await enroll(api, service, "bob@example.com")
    reward = await new_reward(api, admin, cost=20)
    orders = 0

    async def buy(member_id: str, amount: float, **more: object) -> str:
        nonlocal orders
        orders += 1
        order = {"memberId": member_id, "orderId": f"o-{orders}", "amount": amount, **more}
        ok(await api.gql(PURCHASE, {"input": order}, token=service), "recordPurchase")
        return f"o-{orders}"

    for week in range(5):
        clock.set(START + timedelta(days=7 * week, hours=week))
        first = await buy(ann.id, 40 + week)
        await buy(bob["id"], AMOUNT, lines=LINES) if week == 1 else await buy(bob["id"], 30)
        clock.set(clock.now() + timedelta(days=1, hours=5))
        if week == 1:
            refund: dict[str, Any] = {
                "orderId": "o-4",
                "refundId": "r-line",
                "lines": [{"lineId": "MUG-1", "quantity": 1}],
            }
            ok(await api.gql(REFUND, {"input": refund}, token=service), "refundPurchase")
        refund = {"orderId": first, "refundId": f"r-{week}", "amount": 10}
        ok(await api.gql(REFUND, {"input": refund}, token=service), "refundPurchase")
        token = api.member_token(pk_of(ann.id))  # a fresh one: the clock moves on
        taken = await redeemed(api, token, reward["id"])
        if week % 2:
            ok(await call(api, CANCEL, service, id=taken["id"]), "cancelRedemption")
        await adjust(api, admin, bob["id"], 15 if week % 2 else -5)
        review = {"memberId": ann.id, "kind": "REVIEW", "reference": f"review-{week}"}
        ok(await api.gql(ACTIVITY, {"input": review}, token=service), "recordActivity")
    # A referred member's first purchase pays its referrer; then the referrer is erased.
    cy = await enroll(
        api, service, "cy@example.com", referralCode=await referral_code(api, admin, ann.id)
    )
    await buy(cy["id"], 25)
    erase: dict[str, Any] = {"input": {"memberId": ann.id, "reason": "test"}}
    ok(await api.gql(ERASE, erase, token=admin), "eraseMember")
    # Lots left unspent expire when the members are next written to.
    clock.set(clock.now() + timedelta(days=5))
    await adjust(api, admin, bob["id"], 1)
    await adjust(api, admin, cy["id"], 1)
    # Concurrent purchases, several by one member, written on the same day.
    dee = [await enroll(api, service, f"dee{i}@example.com") for i in range(4)]
    await asyncio.gather(*(buy(dee[i % 4]["id"], 10 + i) for i in range(12)))
    return admin, service


async def referral_code(api: Api, admin: str, member_id: str) -> str:
    body = await query(
        api, "query($id: ID!) { member(id: $id) { referralCode } }", admin, id=member_id
    )
    return str(body["member"]["referralCode"])


async def test_the_rollup_equals_the_ledger_summed_after_every_kind_of_write(api: Api) -> None:
    await history(api)
    entries = await ledger(api)
    kinds = {kind for _, kind, *_ in entries}
    assert {"PURCHASE", "REVERSAL", "REDEMPTION", "EXPIRATION", "ADJUSTMENT", "REVIEW"} <= kinds
    assert {"SIGNUP", "REFERRAL"} <= kinds
    want = expected(entries)
    sums, active, days = await held(api)
    assert sums == want[0]
    assert days == want[2]
    assert active == want[1]

    async with api.sessions.begin() as session:
        await rollup.fold(session)
    assert await held(api) == want
    async with api.sessions() as session:  # folded: nothing left in the change tables
        assert await session.scalar(select(func.count()).select_from(LedgerDayChange)) == 0

    async with api.sessions.begin() as session:
        await rollup.rebuild(session)
    assert await held(api) == want
    async with api.sessions.begin() as session:  # from a day on: the same again
        await rollup.rebuild(session, since=(START + timedelta(days=9)).date())
    assert await held(api) == want


async def test_charts_from_the_rollup_equal_program_stats_over_every_bucket(api: Api) -> None:
    admin, _ = await history(api)
    # Windows cut inside days, weeks and months, and windows on whole ones.
    windows = [
        (START - timedelta(hours=3), START + timedelta(days=40, hours=2), "DAY"),
        (START - timedelta(days=2, hours=1), START + timedelta(days=41), "WEEK"),
        (START + timedelta(hours=7), START + timedelta(days=45, hours=3), "MONTH"),
        (datetime(2026, 1, 26, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC), "WEEK"),
        (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), "MONTH"),
    ]
    for start, end, interval in windows:
        variables = {"from": start.isoformat(), "to": end.isoformat(), "interval": interval}
        timeline = (await query(api, TIMELINE, admin, **variables))["programTimeline"]
        for points, members in zip(timeline["points"], timeline["members"], strict=True):
            bucket = {"from": points["start"], "to": points["end"]}
            stats = (await query(api, STATS, admin, **bucket))["programStats"]
            assert (points["issued"], points["redeemed"], points["expired"], members["active"]) == (
                stats["pointsIssued"],
                stats["pointsRedeemed"],
                stats["pointsExpired"],
                stats["activeMembers"],
            ), (interval, points["start"])
