"""Each process's database catch-up of revocations (what holds when a broadcast is lost)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from models import Member
from models.engine import read_session_factory, session_factory
from services.clock import ManualClock
from services.revocations import CATCH_UP_OVERLAP, Revocations
from tests.services.helpers import new_member


async def test_an_erasure_stamped_before_the_newest_seen_but_committed_after_is_caught_up(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    ann = await new_member(sessions, clock, "ann")
    bob = await new_member(sessions, clock, "bob")
    revocations = Revocations()

    async def erase(member_id: int, at_minutes_before: float) -> None:
        erased_at = clock.now() - timedelta(minutes=at_minutes_before)
        async with sessions.begin() as session:
            await session.execute(
                update(Member).where(Member.id == member_id).values(erased_at=erased_at)
            )

    async def catch_up() -> None:
        async with read_session_factory(pg)() as session:
            await revocations.catch_up(session)

    # given Ann's erasure seen
    await erase(ann, 0)
    await catch_up()
    assert revocations.is_erased(ann) and not revocations.is_erased(bob)
    # when Bob's erasure, stamped a little earlier (a slower transaction, another process's
    # clock a little behind), commits only now
    await erase(bob, CATCH_UP_OVERLAP.total_seconds() / 60 / 2)
    await catch_up()
    # then it is caught up all the same
    assert revocations.is_erased(bob)
