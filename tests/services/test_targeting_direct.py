"""The direct path's membership statement (services.targeting.MembershipQuery, compiled once
with the member and the moment as parameters) decides every kind of condition exactly as the
general path's `segments_containing` does, on the segment tests' seeded program."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services import segments, targeting
from services.global_ids import encode_id
from tests.services.test_segments import NOW, Program, program  # noqa: F401 (the fixture)


@pytest.fixture
def engine(pg: AsyncEngine) -> AsyncEngine:
    """PostgreSQL only: the direct path's statement is asyncpg's."""
    return pg


def rules(seeded: Program) -> list[dict[str, Any]]:
    joined = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    conditions: list[dict[str, Any]] = [
        {"availablePoints": {"min": 100}},
        {"lifetimePoints": {"min": 40, "max": 40}},
        {"purchaseCount": {"lastDays": 30, "min": 3}},
        {"purchaseCount": {"lastDays": 30, "max": 0}},
        {"purchaseAmount": {"lastDays": 30, "min": 100}},
        {"purchaseAmount": {"lastDays": 60, "max": 39.99}},
        {"daysSinceLastPurchase": {"max": 7}},
        {"daysSinceLastPurchase": {"min": 3, "max": 39}},
        {"joinedAfter": joined},
        {"joinedBefore": joined},
        {"birthdayMonth": 7},
        {"attribute": {"key": "vip", "equals": "true"}},
        {"attribute": {"key": "size", "equals": "38"}},
        {"tierIn": [encode_id("Tier", seeded.silver)]},
        {"hasBadge": encode_id("Badge", seeded.badge)},
    ]
    return [{"all": [c]} for c in conditions] + [
        {"any": [{"birthdayMonth": 7}, {"availablePoints": {"min": 70, "max": 80}}]}
    ]


async def test_the_direct_statement_agrees_with_the_general_path_on_every_condition(
    program: Program,  # noqa: F811 (the segment tests' fixture)
    pg: AsyncEngine,
) -> None:
    seeded = program
    async with seeded.sessions.begin() as session:
        ids = [
            (await segments.create_segment(session, name=f"s{n}", rule=rule, now=NOW)).id
            for n, rule in enumerate(rules(seeded))
        ]
        nested = await segments.create_segment(
            session,
            name="nested",
            rule={"all": [{"inSegment": encode_id("Segment", ids[2])}]},
            now=NOW,
        )
        ids.append(nested.id)
    async with seeded.sessions() as session:
        every_rule = await segments.all_rules(session)
        expected = {
            name: await segments.segments_containing(session, pk, ids, NOW)
            for name, pk in seeded.ids.items()
        }
    membership, order = targeting.MembershipQuery(every_rule).statement(ids)
    assert membership is not None
    pooled = await pg.raw_connection()
    try:
        found = {}
        for name, pk in seeded.ids.items():
            driver: Any = pooled.driver_connection
            row = await driver.fetchrow(
                membership.sql, *membership.arguments({"member_id": pk, "now": NOW})
            )
            found[name] = frozenset(i for i, inside in zip(order, row, strict=True) if inside)
    finally:
        pooled.close()
    assert found == expected
    # Not vacuous: every member is in some segments and out of others.
    assert all(0 < len(segs) < len(ids) for segs in expected.values()), expected
