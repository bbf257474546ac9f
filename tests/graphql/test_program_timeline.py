"""programTimeline over HTTP on the real app, both backends: the figures of each bucket against a
history computed by hand, the buckets against programStats over the same windows, members by
tier and top rewards, one statement per figure family, and what is refused.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event

from models import KeyRole
from tests.conftest import Api
from tests.graphql.test_rewards_api import (
    CANCEL,
    PURCHASE,
    REFUND,
    UPDATE_PROGRAM,
    Someone,
    adjust,
    call,
    error_code,
    new_member,
    new_reward,
    new_tier,
    ok,
    post,
    query,
    redeemed,
)

TIMELINE = """query($from: DateTime!, $to: DateTime!, $interval: TimelineInterval!) {
  programTimeline(from: $from, to: $to, interval: $interval) {
    from to interval
    points { start end issued redeemed expired outstanding liability }
    members { start end active joined enrolled }
    redemptions { start redemptions points byKind { kind redemptions points } }
  }
}"""
STATS = """query($from: DateTime!, $to: DateTime!) { programStats(from: $from, to: $to) {
  members activeMembers pointsIssued pointsRedeemed pointsExpired outstandingPoints liability } }"""
SNAPSHOT = """query($from: DateTime!, $to: DateTime!, $first: Int!) {
  programTimeline(from: $from, to: $to) {
    membersByTier { tier { name rank } members }
    topRewards(first: $first) { reward { name kind } redemptions points }
  }
}"""
MONDAY = datetime(2026, 1, 5, tzinfo=UTC)  # START's day (START is Monday 2026-01-05 12:00 UTC)


def day(offset: float, hours: float = 0) -> datetime:
    return MONDAY + timedelta(days=offset, hours=hours)


async def history(api: Api) -> tuple[str, Someone]:
    """A known history (a service key does the merchant's calls), returning the admin key:

    * Sat 3 Jan: Ann and Bob enrol; Ann buys for 100 (100 points).
    * Mon 5 Jan: Bob buys for 80 (lots expire after a day, for this purchase only); Cy enrols
      and gets a 20-point adjustment; Ann redeems a free coffee (60) and a tasting (30), the
      tasting is cancelled.
    * Tue 6 Jan: Bob's order is refunded for 30 (-30) at 06:00; the rest of his lot (50)
      expires, settled when staff read him at 13:00.
    * Thu 8 Jan, after the windows below: Dee enrols and buys for 10.
    """
    api.clock.set(day(-2, 10))
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    ann, bob = [await new_member(api, service, name) for name in ("ann", "bob")]
    ok(
        await call(api, PURCHASE, service, memberId=ann.id, orderId="a-1", amount=100),
        "recordPurchase",
    )

    api.clock.set(day(0, 12))
    ok(await call(api, UPDATE_PROGRAM, admin, expiryDays=1), "updateProgram")
    ok(
        await call(api, PURCHASE, service, memberId=bob.id, orderId="b-1", amount=80),
        "recordPurchase",
    )
    ok(await call(api, UPDATE_PROGRAM, admin, expiryDays=None), "updateProgram")
    cy = await new_member(api, service, "cy")
    await adjust(api, admin, cy.id, 20)
    coffee = await new_reward(api, admin, name="Coffee", kind="FREE_PRODUCT", cost=60)
    tasting = await new_reward(api, admin, name="Tasting", kind="EXPERIENCE", cost=30)
    await redeemed(api, ann.token, coffee["id"])
    cancelled = await redeemed(api, ann.token, tasting["id"])
    ok(await call(api, CANCEL, service, id=cancelled["id"]), "cancelRedemption")

    api.clock.set(day(1, 6))
    refund = {"orderId": "b-1", "refundId": "r-1", "amount": 30}
    ok(await call(api, REFUND, service, **refund), "refundPurchase")
    api.clock.set(day(1, 13))
    read = "query($id: ID!) { member(id: $id) { balance { expired } } }"
    assert (await query(api, read, service, id=bob.id))["member"]["balance"]["expired"] == 50

    api.clock.set(day(3, 9))
    dee = await new_member(api, service, "dee")
    ok(
        await call(api, PURCHASE, service, memberId=dee.id, orderId="d-1", amount=10),
        "recordPurchase",
    )
    return admin, ann


def window(start: datetime, end: datetime, interval: str = "DAY") -> dict[str, Any]:
    return {"from": start.isoformat(), "to": end.isoformat(), "interval": interval}


def figures(buckets: list[dict[str, Any]], *names: str) -> list[tuple[Any, ...]]:
    return [tuple(bucket[name] for name in names) for bucket in buckets]


async def test_daily_buckets_hold_the_figures_of_a_known_history(api: Api) -> None:
    admin, _ = await history(api)

    timeline = (await query(api, TIMELINE, admin, **window(day(-2), day(2))))["programTimeline"]

    days = [day(offset).isoformat() for offset in (-2, -1, 0, 1, 2)]
    assert (timeline["from"], timeline["to"], timeline["interval"]) == (days[0], days[-1], "DAY")
    assert figures(timeline["points"], "start", "end") == list(itertools.pairwise(days))
    # issued, redeemed, expired, outstanding at the bucket's end (Dee's later 10 not included)
    assert figures(timeline["points"], "issued", "redeemed", "expired", "outstanding") == [
        (100, 0, 0, 100),  # Sat: Ann's purchase
        (0, 0, 0, 100),  # Sun: nothing
        (80 + 20, 60, 0, 140),  # Mon: the cancelled tasting gave its 30 back the same day
        (-30, 0, 50, 60),  # Tue: the refund's reversal counts against issued points
    ]
    assert [bucket["liability"] for bucket in timeline["points"]] == [1.0, 1.0, 1.4, 0.6]
    # active (earned or redeemed), joined, enrolled by the bucket's end
    assert figures(timeline["members"], "active", "joined", "enrolled") == [
        (1, 2, 2),  # Ann bought; Ann and Bob joined
        (0, 0, 2),
        (2, 1, 3),  # Bob bought, Ann redeemed (Cy's adjustment makes no one active); Cy joined
        (0, 0, 3),  # a reversal or an expiry makes no one active
    ]
    assert [bucket["byKind"] for bucket in timeline["redemptions"]] == [
        [],
        [],
        [{"kind": "FREE_PRODUCT", "redemptions": 1, "points": 60}],  # the tasting was cancelled
        [],
    ]
    assert figures(timeline["redemptions"], "redemptions", "points") == [(0, 0)] * 2 + [
        (1, 60),
        (0, 0),
    ]


async def test_weeks_and_months_are_cut_at_the_window_edges(api: Api) -> None:
    admin, _ = await history(api)

    weekly = await query(api, TIMELINE, admin, **window(day(-2, 12), day(2), "WEEK"))
    monthly = await query(api, TIMELINE, admin, **window(day(-21), day(2), "MONTH"))

    weeks = weekly["programTimeline"]["points"]
    months = monthly["programTimeline"]["members"]
    assert figures(weeks, "start", "end", "issued", "outstanding") == [
        # from Saturday noon to Monday 00:00 (the week of 29 December), then the new week
        (day(-2, 12).isoformat(), day(0).isoformat(), 0, 100),  # Ann bought at 10:00
        (day(0).isoformat(), day(2).isoformat(), 70, 60),
    ]
    assert figures(months, "start", "end", "active", "joined", "enrolled") == [
        (day(-21).isoformat(), "2026-01-01T00:00:00+00:00", 0, 0, 0),
        ("2026-01-01T00:00:00+00:00", day(2).isoformat(), 2, 3, 3),  # Ann, Bob; Ann, Bob, Cy
    ]


async def test_each_bucket_agrees_with_program_stats_over_the_same_window(api: Api) -> None:
    admin, _ = await history(api)
    api.clock.set(day(3, 10))  # the last bucket ends now: outstanding is what members hold

    hours = await query(api, TIMELINE, admin, **window(day(-3, 7), day(3, 10)))

    timeline = hours["programTimeline"]
    assert len(timeline["points"]) == 7
    for points, members in zip(timeline["points"], timeline["members"], strict=True):
        stats = await query(api, STATS, admin, **{"from": points["start"], "to": points["end"]})
        figures_of_stats = stats["programStats"]
        assert (
            points["issued"],
            points["redeemed"],
            points["expired"],
            members["active"],
        ) == (
            figures_of_stats["pointsIssued"],
            figures_of_stats["pointsRedeemed"],
            figures_of_stats["pointsExpired"],
            figures_of_stats["activeMembers"],
        ), points["start"]
        assert members["enrolled"] == figures_of_stats["members"], points["start"]
    last = timeline["points"][-1]
    assert (last["outstanding"], last["liability"]) == (
        figures_of_stats["outstandingPoints"],
        figures_of_stats["liability"],
    )
    assert last["outstanding"] == 60 + 10  # Dee's purchase, before now, is held too
    whole = await query(api, STATS, admin, **{"from": timeline["from"], "to": timeline["to"]})
    assert sum(p["issued"] for p in timeline["points"]) == whole["programStats"]["pointsIssued"]


async def test_members_active_at_the_edges_are_counted_in_their_own_bucket(api: Api) -> None:
    """Buckets cut at both edges of a window count different members, each from its whole
    days and its parts of days: a count that mixed the cut buckets up (or read one's range
    for the other) shows here."""
    api.clock.set(day(-10))
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    people = [await new_member(api, service, f"edge{n}") for n in range(9)]
    purchases = {  # member: when it bought (days after MONDAY, hour)
        0: [(2, 9), (2, 11)],  # before the window, then in its first part of a day
        1: [(4, 12)],  # a whole day of the first week
        2: [(2, 11), (5, 8)],  # twice in the first bucket: counted once
        3: [(9, 12)],  # the whole middle week
        4: [(16, 14)],  # the last part of a day
        5: [(14, 10), (16, 16)],  # a whole day of the last bucket; then after the window
        6: [(2, 9), (16, 16)],  # only outside the window
        7: [(15, 12), (16, 1)],  # a whole day and the last part of a day
        8: [(3, 0)],  # at the first midnight inside the window
    }
    for n, moments in purchases.items():
        for k, (offset, hour) in enumerate(moments):
            api.clock.set(day(offset, hour))
            bought = await call(
                api, PURCHASE, service, memberId=people[n].id, orderId=f"e{n}-{k}", amount=10
            )
            ok(bought, "recordPurchase")
    api.clock.set(day(20))
    start, end = day(2, 10), day(16, 15)  # Wednesday 10:00 to Wednesday 15:00, two weeks on

    active = {}
    for interval in ("DAY", "WEEK", "MONTH"):
        body = await query(api, TIMELINE, admin, **window(start, end, interval))
        buckets = body["programTimeline"]["members"]
        active[interval] = [bucket["active"] for bucket in buckets]
        for bucket in buckets:
            stats = await query(api, STATS, admin, **{"from": bucket["start"], "to": bucket["end"]})
            assert bucket["active"] == stats["programStats"]["activeMembers"], bucket["start"]

    assert active["WEEK"] == [4, 1, 3]  # 0, 1, 2, 8 | 3 | 4, 5, 7
    assert active["MONTH"] == [8]  # everyone but 6
    days = active["DAY"]
    assert (len(days), days[0], days[1], days[-1], sum(days)) == (15, 2, 1, 2, 10)  # member-days


async def test_members_by_tier_and_top_rewards(api: Api) -> None:
    admin, ann = await history(api)
    await new_tier(api, admin, "Gold", 1000)
    api.clock.set(day(3, 12))
    espresso = await new_reward(api, admin, name="Espresso", kind="FREE_PRODUCT", cost=5)
    for _ in range(2):
        await redeemed(api, ann.token, espresso["id"])

    week = {"from": day(-2).isoformat(), "to": day(5).isoformat()}
    top = await query(api, SNAPSHOT, admin, **week, first=5)
    first_only = await query(api, SNAPSHOT, admin, **week, first=1)
    before = {"from": day(-2).isoformat(), "to": day(3).isoformat()}
    before_espresso = await query(api, SNAPSHOT, admin, **before, first=5)

    snapshot = top["programTimeline"]
    tiers = [
        (t["tier"]["rank"], t["tier"]["name"], t["members"]) for t in snapshot["membersByTier"]
    ]
    assert [(rank, members) for rank, _, members in tiers] == [(0, 4), (1, 0)]  # Gold: nobody
    assert tiers[1][1] == "Gold"
    assert snapshot["topRewards"] == [  # by redemptions; the cancelled tasting is not there
        {"reward": {"name": "Espresso", "kind": "FREE_PRODUCT"}, "redemptions": 2, "points": 10},
        {"reward": {"name": "Coffee", "kind": "FREE_PRODUCT"}, "redemptions": 1, "points": 60},
    ]
    assert [r["reward"]["name"] for r in first_only["programTimeline"]["topRewards"]] == [
        "Espresso"
    ]
    assert [r["reward"]["name"] for r in before_espresso["programTimeline"]["topRewards"]] == [
        "Coffee"
    ]


async def test_each_figure_family_is_one_statement_whatever_the_buckets(api: Api) -> None:
    admin, _ = await history(api)
    engine = api.app.state.laurel.engine.sync_engine
    counts = []
    for start, interval in ((day(-2), "DAY"), (day(-300), "DAY"), (day(-3000), "MONTH")):
        seen: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            seen.append(statement)  # noqa: B023 (each run has its own list and listener)

        event.listen(engine, "before_cursor_execute", record)
        try:
            await query(api, TIMELINE, admin, **window(start, day(2), interval))
        finally:
            event.remove(engine, "before_cursor_execute", record)
        read = ("ledger_entries", "ledger_days", "member_days", "redemptions")
        counts.append(sum(any(table in s for table in read) for s in seen))

    assert counts == [3, 3, 3]  # points, members, redemptions


async def test_absurd_or_empty_windows_and_other_roles_are_refused(api: Api) -> None:
    admin, ann = await history(api)
    member = ann.token
    naive = {**window(day(-1), day(0)), "from": "2026-01-04T00:00:00"}
    before = {"from": day(-1).isoformat(), "to": day(0).isoformat()}

    refused = [
        await post(api, TIMELINE, admin, **window(day(0), day(0))),  # empty
        await post(api, TIMELINE, admin, **window(day(1), day(0))),  # reversed
        await post(api, TIMELINE, admin, **window(day(-401), day(0))),  # 401 days
        await post(api, TIMELINE, admin, **window(day(-401 * 7), day(0), "WEEK")),
        await post(api, TIMELINE, admin, **window(datetime(1, 1, 1, tzinfo=UTC), day(0))),
        await post(api, TIMELINE, admin, **naive),  # no time zone
        await post(api, SNAPSHOT, admin, **before, first=0),
    ]
    widest = await query(api, TIMELINE, admin, **window(day(-400), day(0)))
    by_member = await post(api, TIMELINE, member, **window(day(-2), day(0)))
    anonymous = await post(api, TIMELINE, None, **window(day(-2), day(0)))

    assert [error_code(body) for body in refused] == ["BAD_USER_INPUT"] * len(refused)
    assert [body["data"] for body in refused] == [None] * len(refused)
    assert len(widest["programTimeline"]["points"]) == 400
    assert (error_code(by_member), error_code(anonymous)) == ("FORBIDDEN", "UNAUTHENTICATED")
