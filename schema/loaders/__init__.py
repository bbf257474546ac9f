"""Per-request DataLoaders: each reads with its own short session, batching by key."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.dataloader import DataLoader

from models import EntryStatus, LedgerEntry, Member, Program, Tier
from services.program import get_program, list_tiers

EXPIRING_SOON_LIMIT = 5


class Loaders:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self.member = DataLoader[int, Member | None](self._load_members)
        self.expiring_soon = DataLoader[int, list[tuple[int, datetime]]](self._load_expiring)
        self._tiers = DataLoader[None, list[Tier]](self._load_tiers)
        self._program = DataLoader[None, Program](self._load_program)

    async def tiers(self) -> list[Tier]:
        """Every tier, by threshold (entry tier first)."""
        return await self._tiers.load(None)

    async def program(self) -> Program:
        return await self._program.load(None)

    async def tier(self, tier_id: int) -> Tier:
        return next(t for t in await self.tiers() if t.id == tier_id)

    async def _load_tiers(self, keys: Sequence[None]) -> list[list[Tier]]:
        async with self._sessions() as session:
            tiers = await list_tiers(session)
        return [tiers for _ in keys]

    async def _load_program(self, keys: Sequence[None]) -> list[Program]:
        async with self._sessions() as session:
            program = await get_program(session)
        return [program for _ in keys]

    async def _load_members(self, ids: Sequence[int]) -> list[Member | None]:
        async with self._sessions() as session:
            rows = await session.scalars(select(Member).where(Member.id.in_(ids)))
            by_id = {m.id: m for m in rows}
        return [by_id.get(i) for i in ids]

    async def _load_expiring(self, ids: Sequence[int]) -> list[list[tuple[int, datetime]]]:
        """Unspent points by expiry moment, soonest first, a few per member."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(
                    LedgerEntry.member_id,
                    LedgerEntry.expires_at,
                    func.sum(LedgerEntry.remaining),
                )
                .where(
                    LedgerEntry.member_id.in_(ids),
                    LedgerEntry.status == EntryStatus.POSTED,
                    LedgerEntry.remaining > 0,
                    LedgerEntry.expires_at.is_not(None),
                )
                .group_by(LedgerEntry.member_id, LedgerEntry.expires_at)
                .order_by(LedgerEntry.member_id, LedgerEntry.expires_at)
            )
            found: dict[int, list[tuple[int, datetime]]] = defaultdict(list)
            for member_id, expires_at, points in rows:
                if len(found[member_id]) < EXPIRING_SOON_LIMIT:
                    found[member_id].append((int(points), expires_at))
        return [found.get(i, []) for i in ids]
