"""Per-request DataLoaders of the rewards catalog: a page of N rewards or redemptions costs
one statement per relation, whatever N is."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.dataloader import DataLoader

from models import Partner, Redemption, RedemptionStatus, Reward


class DonationTotal(NamedTuple):
    redemptions: int
    points: int
    amount: Decimal


class RewardLoaders:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.partner = DataLoader[int, Row[Any] | None](self._load_partners)
        self.reward = DataLoader[int, Row[Any] | None](self._load_rewards)
        self.donated = DataLoader[int, DonationTotal](self._load_donated)

    async def _by_id(self, table: Any, ids: Sequence[int]) -> list[Row[Any] | None]:
        async with self._engine.connect() as connection:
            rows = await connection.execute(select(table).where(table.c.id.in_(ids)))
            by_id = {row.id: row for row in rows}
        return [by_id.get(i) for i in ids]

    async def _load_partners(self, ids: Sequence[int]) -> list[Row[Any] | None]:
        return await self._by_id(Partner.__table__, ids)

    async def _load_rewards(self, ids: Sequence[int]) -> list[Row[Any] | None]:
        return await self._by_id(Reward.__table__, ids)

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
