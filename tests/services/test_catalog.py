"""A cached catalog never prices a purchase: writes check its version inside the unit of work."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import cast

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models.engine import session_factory
from services.catalog import CatalogCache, load_catalog
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


class Gated:
    """Sessions that open only once `open` is set (so a reload can be held half-way)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.open = asyncio.Event()
        self.entered = asyncio.Event()
        self.open.set()

    def __call__(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        @contextlib.asynccontextmanager
        async def session() -> AsyncIterator[AsyncSession]:
            self.entered.set()
            await self.open.wait()
            async with self.sessions() as opened:
                yield opened

        return session()


async def test_an_old_snapshot_serves_while_one_reload_runs(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    gated = Gated(session_factory(engine))
    cache = CatalogCache(cast(async_sessionmaker[AsyncSession], gated), ttl=0.0)  # always old
    first = await cache.get(clock.now())
    await configure(gated.sessions, points_per_currency_unit=3)

    # An old snapshot is handed out at once, and one reload starts (not one a request).
    assert await cache.get(clock.now()) is first
    reloading = cache._reloading
    assert await cache.get(clock.now()) is first
    assert reloading is not None and cache._reloading is reloading
    fresh = await reloading
    assert fresh is not first and fresh.program.points_per_currency_unit == 3
    assert await cache.get(clock.now()) is fresh

    # A reload that began before an invalidation keeps nothing it read.
    gated.open.clear()
    gated.entered.clear()
    await cache.get(clock.now())  # starts the next reload, held before it reads
    reloading = cache._reloading
    assert reloading is not None
    await gated.entered.wait()
    cache.invalidate()
    gated.open.set()
    await reloading
    assert cache._snapshot is None
    await configure(gated.sessions, points_per_currency_unit=4)
    assert (await cache.get(clock.now())).program.points_per_currency_unit == 4
