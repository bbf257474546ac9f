"""Segment membership, condition by condition, against expectations worked out by hand from a
small seeded program; rules refused with the field named; counts, pages and one member's
segments agreeing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import Segment
from models.engine import session_factory
from services import audit, member_profile, members, segments
from services.clock import ManualClock
from services.errors import AlreadyExists, Invalid
from services.gamification.badges import award, create_badge
from services.global_ids import encode_id
from services.ledger.entries import lock_member
from services.ledger.purchases import record_purchase, refund_purchase
from services.program import create_tier
from tests.services.helpers import fund

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@dataclass
class Program:
    sessions: async_sessionmaker[AsyncSession]
    clock: ManualClock
    ids: dict[str, int]
    silver: int
    badge: int


@pytest.fixture
async def program(engine: AsyncEngine) -> Program:
    """ann: Silver (800 earned), 3 purchases in the last 30 days (150 less a 20 refund), the
    last 2 days ago, joined 2025-06-01, born in March, holds the badge, attributes store=Leeds,
    vip=true, size=38. bob: 1 purchase of 40, 40 days ago, joined 2026-01-01, born in July,
    store=York. cat: no purchase, joined 2026-06-10, no birthday, 75 points by adjustment."""
    sessions = session_factory(engine)
    clock = ManualClock(datetime(2025, 6, 1, 9, 0, tzinfo=UTC))
    async with sessions.begin() as session:
        silver = (
            await create_tier(session, name="Silver", threshold=500, multiplier=1, benefits=[])
        ).id
        badge = (
            await create_badge(
                session,
                name="Regular",
                description="",
                image_url=None,
                metric=None,
                threshold=None,
                now=clock.now(),
            )
        ).id
    ids: dict[str, int] = {}

    async def enrol(name: str, at: datetime, birthday: date | None) -> None:
        clock.set(at)
        async with sessions.begin() as session:
            member = await members.enroll(
                session,
                email=f"{name}@example.com",
                display_name=name.title(),
                birthday=birthday,
                now=at,
            )
            ids[name] = member.id

    async def buy(name: str, order: str, amount: float, at: datetime) -> None:
        clock.set(at)
        async with sessions.begin() as session:
            await record_purchase(
                session, member_id=ids[name], order_id=order, amount=amount, now=at
            )

    await enrol("ann", datetime(2025, 6, 1, 9, 0, tzinfo=UTC), date(1990, 3, 4))
    await enrol("bob", datetime(2026, 1, 1, 9, 0, tzinfo=UTC), date(1985, 7, 9))
    await enrol("cat", datetime(2026, 6, 10, 9, 0, tzinfo=UTC), None)
    await buy("ann", "a-old", 650, NOW - timedelta(days=200))  # Silver
    await buy("bob", "b-1", 40, NOW - timedelta(days=40))
    for n, days in enumerate((20, 9, 2)):
        await buy("ann", f"a-{n}", 50, NOW - timedelta(days=days, hours=1))
    clock.set(NOW - timedelta(days=1))
    async with sessions.begin() as session:
        await refund_purchase(session, order_id="a-0", refund_id="r", amount=20, now=clock.now())
        await award(session, await lock_member(session, ids["ann"]), badge, clock.now())
    await fund(sessions, clock, ids["cat"], 75)
    for name, attributes in (
        ("ann", {"store": "Leeds", "vip": True, "size": 38}),
        ("bob", {"store": "York"}),
    ):
        async with sessions.begin() as session:
            await member_profile.update_member(
                session,
                member_id=ids[name],
                changes={"attributes": attributes},
                actor=audit.COMMAND_LINE,
                now=clock.now(),
            )
    clock.set(NOW)
    return Program(sessions, clock, ids, silver, badge)


async def matching(program: Program, rule: dict[str, Any]) -> set[str]:
    """The names of the members a new segment with this rule counts, lists and finds."""
    async with program.sessions.begin() as session:
        segment = await segments.create_segment(
            session, name=f"s{len(program.ids)}-{id(rule)}", rule=rule, now=NOW
        )
        count = await segments.member_count(session, segment, NOW)
        listed = await segments.members_page(session, segment, NOW, first=100, after=None)
        found = {
            name
            for name, pk in program.ids.items()
            if await segments.is_member(session, segment.id, pk, NOW)
        }
        await session.rollback()
    names = {row.display_name.lower() for row in listed}
    assert names == found and count == len(found), (names, found, count)
    return found


def tier(pk: int) -> str:
    return encode_id("Tier", pk)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"availablePoints": {"min": 100}}, {"ann"}),
        ({"availablePoints": {"max": 100}}, {"bob", "cat"}),
        ({"lifetimePoints": {"min": 40, "max": 40}}, {"bob"}),
        ({"purchaseCount": {"lastDays": 30, "min": 3}}, {"ann"}),
        ({"purchaseCount": {"lastDays": 30, "max": 0}}, {"bob", "cat"}),
        ({"purchaseCount": {"lastDays": 60, "min": 1, "max": 1}}, {"bob"}),
        ({"purchaseAmount": {"lastDays": 30, "min": 100}}, {"ann"}),  # 150 less 20 refunded
        ({"purchaseAmount": {"lastDays": 30, "min": 130}}, {"ann"}),  # exactly: cents compared
        ({"purchaseAmount": {"lastDays": 30, "min": 130.01}}, set()),
        ({"purchaseAmount": {"lastDays": 30, "min": 131}}, set()),
        ({"purchaseAmount": {"lastDays": 60, "max": 39.99}}, {"cat"}),
        ({"daysSinceLastPurchase": {"max": 7}}, {"ann"}),
        ({"daysSinceLastPurchase": {"min": 30}}, {"bob"}),
        ({"daysSinceLastPurchase": {"min": 3, "max": 39}}, set()),
        ({"joinedAfter": datetime(2026, 1, 1, 9, 0, tzinfo=UTC)}, {"bob", "cat"}),
        ({"joinedBefore": datetime(2026, 1, 1, 9, 0, tzinfo=UTC)}, {"ann"}),
        ({"birthdayMonth": 7}, {"bob"}),
        ({"birthdayMonth": 12}, set()),
        ({"attribute": {"key": "store", "equals": "Leeds"}}, {"ann"}),
        ({"attribute": {"key": "vip", "equals": "true"}}, {"ann"}),
        ({"attribute": {"key": "size", "equals": "38"}}, {"ann"}),
        ({"attribute": {"key": "store", "equals": "leeds"}}, set()),
    ],
)
async def test_each_condition_matches_whom_it_should(
    program: Program, condition: dict[str, Any], expected: set[str]
) -> None:
    assert await matching(program, {"all": [condition]}) == expected


async def test_tiers_badges_groups_and_nested_segments(program: Program) -> None:
    assert await matching(program, {"all": [{"tierIn": [tier(program.silver)]}]}) == {"ann"}
    assert await matching(program, {"all": [{"hasBadge": encode_id("Badge", program.badge)}]}) == {
        "ann"
    }
    either = {"any": [{"birthdayMonth": 7}, {"availablePoints": {"min": 70, "max": 80}}]}
    assert await matching(program, either) == {"bob", "cat"}
    both = {"all": [{"joinedAfter": datetime(2026, 1, 1, tzinfo=UTC)}], **either}
    assert await matching(program, both) == {"bob", "cat"}
    async with program.sessions.begin() as session:
        inner = await segments.create_segment(
            session,
            name="Recent buyers",
            rule={"all": [{"purchaseCount": {"lastDays": 60, "min": 1}}]},
            now=NOW,
        )
        inner_id = encode_id("Segment", inner.id)
    nested = {"all": [{"inSegment": inner_id}, {"birthdayMonth": 7}]}
    assert await matching(program, nested) == {"bob"}
    async with program.sessions() as session:
        found = await segments.segments_of(session, program.ids["bob"], NOW)
    assert [s.name for s in found] == ["Recent buyers"]


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({}, ["input", "rule"]),
        ({"all": []}, ["input", "rule", "all"]),
        ({"all": [{}]}, ["input", "rule", "all", "0"]),
        ({"all": [{"birthdayMonth": 1, "joinedAfter": NOW}]}, ["input", "rule", "all", "0"]),
        ({"any": [{"availablePoints": {}}]}, ["input", "rule", "any", "0", "availablePoints"]),
        (
            {"all": [{"availablePoints": {"min": -1}}]},
            ["input", "rule", "all", "0", "availablePoints", "min"],
        ),
        (
            {"all": [{"lifetimePoints": {"min": 5, "max": 2}}]},
            ["input", "rule", "all", "0", "lifetimePoints", "min"],
        ),
        (
            {"all": [{"purchaseCount": {"lastDays": 0, "min": 1}}]},
            ["input", "rule", "all", "0", "purchaseCount", "lastDays"],
        ),
        ({"all": [{"birthdayMonth": 13}]}, ["input", "rule", "all", "0", "birthdayMonth"]),
        ({"all": [{"tierIn": [encode_id("Tier", 999)]}]}, ["input", "rule", "all", "0", "tierIn"]),
        ({"all": [{"tierIn": ["nonsense"]}]}, ["input", "rule", "all", "0", "tierIn"]),
        (
            {"all": [{"hasBadge": encode_id("Badge", 999)}]},
            ["input", "rule", "all", "0", "hasBadge"],
        ),
        (
            {"all": [{"inSegment": encode_id("Segment", 999)}]},
            ["input", "rule", "all", "0", "inSegment"],
        ),
        (
            {"all": [{"attribute": {"key": "", "equals": "x"}}]},
            ["input", "rule", "all", "0", "attribute", "key"],
        ),
    ],
)
async def test_bad_rules_are_refused_naming_the_field(
    program: Program, rule: dict[str, Any], field: list[str]
) -> None:
    async with program.sessions.begin() as session:
        with pytest.raises(Invalid) as refused:
            await segments.create_segment(session, name="bad", rule=rule, now=NOW)
    assert refused.value.field == field


async def test_a_segment_cannot_contain_itself_or_make_a_cycle(program: Program) -> None:
    async with program.sessions.begin() as session:
        a = await segments.create_segment(
            session, name="A", rule={"all": [{"birthdayMonth": 1}]}, now=NOW
        )
        b = await segments.create_segment(
            session, name="B", rule={"all": [{"inSegment": encode_id("Segment", a.id)}]}, now=NOW
        )
        for target in (a.id, b.id):
            with pytest.raises(Invalid) as refused:
                await segments.update_segment(
                    session,
                    a,
                    name=None,
                    rule={"all": [{"inSegment": encode_id("Segment", target)}]},
                    now=NOW,
                )
            assert refused.value.field == ["input", "rule", "all", "0", "inSegment"]
        assert [s.name for s in await segments.users_of(session, a.id)] == ["B"]
        with pytest.raises(AlreadyExists):
            await segments.create_segment(
                session, name="A", rule={"all": [{"birthdayMonth": 2}]}, now=NOW
            )


async def test_members_page_by_join_date_without_gaps(program: Program) -> None:
    async with program.sessions.begin() as session:
        everyone = await segments.create_segment(
            session, name="Everyone", rule={"any": [{"availablePoints": {"min": 0}}]}, now=NOW
        )
        first = await segments.members_page(session, everyone, NOW, first=2, after=None)
        rest = await segments.members_page(
            session, everyone, NOW, first=2, after=(first[-1].joined_at, first[-1].id)
        )
    assert [r.display_name for r in [*first, *rest]] == ["Ann", "Bob", "Cat"]
    assert isinstance(everyone, Segment)
