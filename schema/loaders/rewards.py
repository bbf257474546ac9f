"""Per-request DataLoaders of the rewards catalog: a page of N rewards or redemptions costs
one statement per relation, whatever N is."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from strawberry.dataloader import DataLoader

from models import Partner, Redemption, RedemptionStatus, Reward
from services.partners import Settlement, settlements


class DonationTotal(NamedTuple):
    redemptions: int
    points: int
    amount: Decimal


class RewardLoaders:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.partner = DataLoader[int, Row[Any] | None](self._load_partners)
        self.partner_by_slug = DataLoader[str, Row[Any] | None](self._load_partners_by_slug)
        self.reward = DataLoader[int, Row[Any] | None](self._load_rewards)
        self.donated = DataLoader[int, DonationTotal](self._load_donated)
        # Keyed by (partner id, from, to): an admin listing every partner's settlement for one
        # window costs one query.
        self.settlement = DataLoader[tuple[int, datetime, datetime], Settlement](
            self._load_settlements
        )

    async def _by_id(self, table: Any, ids: Sequence[int]) -> list[Row[Any] | None]:
        async with self._engine.connect() as connection:
            rows = await connection.execute(select(table).where(table.c.id.in_(ids)))
            by_id = {row.id: row for row in rows}
        return [by_id.get(i) for i in ids]

    async def _load_partners(self, ids: Sequence[int]) -> list[Row[Any] | None]:
        return await self._by_id(Partner.__table__, ids)

    async def _load_partners_by_slug(self, slugs: Sequence[str]) -> list[Row[Any] | None]:
        table = Partner.__table__
        async with self._engine.connect() as connection:
            rows = await connection.execute(select(table).where(table.c.slug.in_(slugs)))
            by_slug = {row.slug: row for row in rows}
        return [by_slug.get(slug) for slug in slugs]

    async def _load_rewards(self, ids: Sequence[int]) -> list[Row[Any] | None]:
        return await self._by_id(Reward.__table__, ids)

    async def _load_settlements(
        self, keys: Sequence[tuple[int, datetime, datetime]]
    ) -> list[Settlement]:
        windows: dict[tuple[datetime, datetime], list[int]] = defaultdict(list)
        for partner_id, start, end in keys:
            windows[(start, end)].append(partner_id)
        found: dict[tuple[int, datetime, datetime], Settlement] = {}
        async with AsyncSession(self._engine) as session:
            for (start, end), partner_ids in windows.items():
                figures = await settlements(session, partner_ids=partner_ids, start=start, end=end)
                found.update({(p, start, end): f for p, f in figures.items()})
        return [found[key] for key in keys]

    async def _load_donated(self, ids: Sequence[int]) -> list[DonationTotal]:
        """What members gave through each reward so far, cancelled redemptions excluded."""
        stmt = (
            select(
                Redemption.reward_id,
                func.count(Redemption.id),
                func.coalesce(func.sum(Redemption.points), 0),
                func.coalesce(func.sum(Redemption.value), 0),
            )
            .where(Redemption.reward_id.in_(ids), Redemption.status != RedemptionStatus.CANCELLED)
            .group_by(Redemption.reward_id)
        )
        async with self._engine.connect() as connection:
            totals = {
                reward_id: DonationTotal(int(count), int(points), Decimal(amount))
                for reward_id, count, points, amount in await connection.execute(stmt)
            }
        return [totals.get(i, DonationTotal(0, 0, Decimal(0))) for i in ids]
