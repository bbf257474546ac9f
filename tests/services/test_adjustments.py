"""Debits never overdraw, whatever the concurrency; adjustments are idempotent per caller."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from models import EntryKind, LedgerEntry
from models.engine import session_factory
from services.clock import ManualClock
from services.errors import IdempotencyConflict, InsufficientPoints
from services.ledger.adjustments import adjust_points
from tests.services.helpers import assert_balances_match_ledger, fund, new_member


async def _debit(sessions, clock, member_id: int, points: int, key: str) -> str:
    try:
        async with sessions.begin() as session:
            await adjust_points(
                session,
                member_id=member_id,
                points=-points,
                reason="spend",
                idempotency_key=key,
                actor="admin",
                now=clock.now(),
            )
        return "ok"
    except InsufficientPoints:
        return "INSUFFICIENT_POINTS"


async def test_concurrent_debits_never_overdraw(pg: AsyncEngine, clock: ManualClock) -> None:
    # given 1,000 points and 50 concurrent debits of 70 (only 14 of them are covered)
    sessions = session_factory(pg)
    member_id = await new_member(sessions, clock)
    await fund(sessions, clock, member_id, 1000)

    # when they all run at once
    outcomes = await asyncio.gather(
        *(_debit(sessions, clock, member_id, 70, f"debit-{i}") for i in range(50))
    )

    # then exactly the covered number succeed and the balance stops at what is left
    assert outcomes.count("ok") == 14
    assert outcomes.count("INSUFFICIENT_POINTS") == 36
    member = await assert_balances_match_ledger(sessions, member_id)
    assert member.available == 1000 - 14 * 70


async def test_concurrent_debits_on_sqlite_never_overdraw(
    sqlite_engine: AsyncEngine, clock: ManualClock
) -> None:
    from tests.conftest import _empty

    await _empty(sqlite_engine)
    sessions = session_factory(sqlite_engine)
    member_id = await new_member(sessions, clock)
    await fund(sessions, clock, member_id, 100)
    outcomes = await asyncio.gather(
        *(_debit(sessions, clock, member_id, 30, f"debit-{i}") for i in range(10))
    )
    assert outcomes.count("ok") == 3
    member = await assert_balances_match_ledger(sessions, member_id)
    assert member.available == 10


async def test_adjustment_retry_returns_first_result_and_conflicts_on_new_input(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    member_id = await new_member(sessions, clock)
    results = []
    for _ in range(2):
        async with sessions.begin() as session:
            result = await adjust_points(
                session,
                member_id=member_id,
                points=50,
                reason="goodwill",
                idempotency_key="k1",
                actor="key:1",
                now=clock.now(),
            )
            results.append(result.entry.id)
    assert results[0] == results[1]
    with pytest.raises(IdempotencyConflict):
        async with sessions.begin() as session:
            await adjust_points(
                session,
                member_id=member_id,
                points=60,
                reason="goodwill",
                idempotency_key="k1",
                actor="key:1",
                now=clock.now(),
            )
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).where(LedgerEntry.kind == EntryKind.ADJUSTMENT)
        )
    assert count == 1
    member = await assert_balances_match_ledger(sessions, member_id)
    assert member.available == 50
    # admin adjustments never move tiers
    assert member.qualifying_points == 0
