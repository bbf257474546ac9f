"""A cached catalog never prices a purchase: writes check its version inside the unit of work."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from models.engine import session_factory
from services.catalog import load_catalog
from services.clock import ManualClock
from services.ledger.purchases import record_purchase
from services.program import create_tier
from tests.services.helpers import configure, member_row, new_member


async def test_a_stale_cached_catalog_is_replaced_before_earning(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given a catalog cached (by another process, say) before the rate and the tiers changed
    sessions = session_factory(engine)
    member_id = await new_member(sessions, clock)
    async with sessions() as session:
        stale = await load_catalog(session, clock.now())
    await configure(sessions, points_per_currency_unit=2)
    async with sessions.begin() as session:
        await create_tier(session, name="Gold", threshold=1, multiplier=1.5, benefits=[])

    # when purchases are recorded with the stale snapshot
    async def buy(order_id: str, amount: int) -> int:
        async with sessions.begin() as session:
            result = await record_purchase(
                session,
                member_id=member_id,
                order_id=order_id,
                amount=amount,
                now=clock.now(),
                catalog=stale,
            )
        return result.entry.points

    # then they are priced and placed with today's rate and tiers, not the cached ones
    assert await buy("o-1", 1) == 2  # rate 2, and the member reaches Gold
    assert await buy("o-2", 10) == 30  # 10 x 2 x Gold 1.5
    member = await member_row(sessions, member_id)
    assert member.qualifying_points == 32
