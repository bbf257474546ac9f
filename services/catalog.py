"""The program's catalog (settings, tiers, promotions, earning rules, currency rates) as one
snapshot, cached briefly.

Every earn and every dashboard reads it and only admins change it, so each process keeps a
snapshot for a couple of seconds instead of reading three tables per request. A change made
through this process is seen at once (it invalidates); other processes see it within about
`ttl` (an old snapshot serves while it is reloaded: `CatalogCache`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import CurrencyRate, EarningRule, Program, Promotion, Tier
from services.earning_rules import rule_active
from services.errors import Invalid
from services.gamification.challenges import challenge_windows, threshold_badges
from services.program import catalog_version, get_program, list_tiers, retired_tiers
from services.segments import all_rules
from services.targeting import MembershipQuery

logger = logging.getLogger("laurel.catalog")

# Purchases reported later than this after they happened look promotions up in the database.
PROMOTION_LOOKBACK = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Catalog:
    program: Program
    tiers: tuple[Tier, ...]  # live ones, by threshold, entry tier first
    promotions: tuple[Promotion, ...]  # every promotion ending after `promotions_from`
    promotions_from: datetime
    version: int  # the program's catalog_version when loaded
    # What makes earning count for goals: badges awarded at a threshold (always), and the
    # windows of the challenges not ended by `promotions_from` (while one runs).
    threshold_badges: bool = False
    challenge_windows: tuple[tuple[datetime, datetime | None], ...] = ()
    # Deleted tiers: members are moved off them, but history (and a member not moved yet)
    # still names them.
    retired: tuple[Tier, ...] = ()
    # Earning rules not ended by `promotions_from`, and the currency rates: earning reads no
    # table of its own per purchase.
    earning_rules: tuple[EarningRule, ...] = ()
    currency_rates: Mapping[str, Decimal] = field(default_factory=dict)
    # Every segment's rule by id, when a promotion or an earning rule is targeted (what
    # deciding its points needs; a rule change bumps the catalog version, so a write never
    # prices with a stale rule).
    segment_rules: Mapping[int, Mapping[str, Any]] = field(
        default_factory=dict, compare=False, hash=False
    )
    # Those rules compiled for the direct path's membership read (as they are asked for).
    membership: MembershipQuery = field(
        default_factory=lambda: MembershipQuery({}), compare=False, hash=False
    )

    def has_tier(self, tier_id: int) -> bool:
        return any(t.id == tier_id for t in self.tiers) or self.is_retired(tier_id)

    def is_retired(self, tier_id: int) -> bool:
        return any(t.id == tier_id for t in self.retired)

    def tier(self, tier_id: int) -> Tier:
        return next(t for t in (*self.tiers, *self.retired) if t.id == tier_id)

    def tiers_including(self, tier_id: int | None) -> list[Tier]:
        """The live tiers, with `tier_id` among them in threshold order if it is retired."""
        if tier_id is None or not self.is_retired(tier_id):
            return list(self.tiers)
        return sorted((*self.tiers, self.tier(tier_id)), key=lambda t: (t.threshold, t.id))

    def floor_of(self, tier_floor_id: int | None) -> Tier | None:
        return self.tier(tier_floor_id) if tier_floor_id is not None else None

    def covers(self, at: datetime) -> bool:
        return at >= self.promotions_from

    def gamified_at(self, at: datetime) -> bool:
        """Whether a write at `at` has goals to count for (else it skips gamification)."""
        assert self.covers(at)
        return self.threshold_badges or any(
            starts <= at and (ends is None or at < ends) for starts, ends in self.challenge_windows
        )

    def active_promotions(self, at: datetime) -> list[Promotion]:
        assert self.covers(at)
        return [p for p in self.promotions if p.starts_at <= at < p.ends_at]

    def active_earning_rules(self, at: datetime) -> list[EarningRule]:
        assert self.covers(at)
        return [r for r in self.earning_rules if rule_active(r, at)]

    def rate_of(self, currency: str | None) -> Decimal:
        """Program-currency units per unit of `currency` (checked: services.currencies)."""
        if currency is None or currency == self.program.currency:
            return Decimal(1)
        rate = self.currency_rates.get(currency)
        if rate is None:
            raise Invalid(f"no rate is set for {currency}", field=["input", "currency"])
        return rate


async def load_catalog(session: AsyncSession, now: datetime) -> Catalog:
    since = now - PROMOTION_LOOKBACK
    promotions = tuple(
        await session.scalars(
            select(Promotion)
            .where(Promotion.ends_at > since)
            .order_by(Promotion.starts_at, Promotion.id)
        )
    )
    program = await get_program(session)
    earning = tuple(
        await session.scalars(
            select(EarningRule)
            .where(or_(EarningRule.ends_at.is_(None), EarningRule.ends_at > since))
            .order_by(EarningRule.id)
        )
    )
    rates = await session.execute(select(CurrencyRate.currency, CurrencyRate.rate))
    targeted = any(p.segment_id is not None for p in promotions) or any(
        r.segment_id is not None for r in earning
    )
    rules = await all_rules(session) if targeted else {}
    return Catalog(
        program=program,
        version=program.catalog_version,
        tiers=tuple(await list_tiers(session)),
        promotions=promotions,
        promotions_from=since,
        threshold_badges=await threshold_badges(session),
        challenge_windows=tuple(await challenge_windows(session, since)),
        retired=tuple(await retired_tiers(session)),
        earning_rules=earning,
        currency_rates={currency: rate for currency, rate in rates},
        segment_rules=rules,
        membership=MembershipQuery(rules),
    )


async def current_catalog(session: AsyncSession, cached: Catalog | None, now: datetime) -> Catalog:
    """The catalog a write must use: the cached snapshot if it is still the database's (one
    small read inside the unit of work), else a fresh one from this transaction."""
    if (
        cached is not None
        and cached.covers(now)
        and cached.version == await catalog_version(session)
    ):
        return cached
    return await load_catalog(session, now)


class CatalogCache:
    """The snapshot, kept `ttl` seconds. An old one that still serves (it covers `now` and
    has the tier asked for) is handed out while one reload runs in the background: requests
    never queue behind a reload (under load one took tens of milliseconds, every `ttl`, and
    every dashboard arriving meanwhile waited for it: most of the dashboard's p99). Only a
    missing or unusable snapshot is waited for. Writes never rely on it alone
    (`current_catalog` checks its version inside their unit of work)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, ttl: float = 2.0) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._snapshot: Catalog | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self._reloading: asyncio.Task[Catalog] | None = None
        self._invalidations = 0  # a reload begun before one must not store what it read

    async def get(self, now: datetime, *, tier_id: int | None = None) -> Catalog:
        """The snapshot; reloaded when old (in the background while the old one serves), or
        at once when it lacks `tier_id` (a tier another process created since: display may
        lag by about `ttl`, but must never fail)."""
        snapshot = self._snapshot
        if (
            snapshot is not None
            and snapshot.covers(now)
            and (tier_id is None or snapshot.has_tier(tier_id))
        ):
            if time.monotonic() >= self._expires and self._reloading is None:
                self._reloading = asyncio.create_task(self._reload(snapshot, now))
                self._reloading.add_done_callback(self._reloaded)
            return snapshot
        if snapshot is not None and tier_id is not None and not snapshot.has_tier(tier_id):
            self._snapshot = snapshot = None
        return await self._reload(snapshot, now)

    async def _reload(self, seen: Catalog | None, now: datetime) -> Catalog:
        async with self._lock:  # one reload at a time, however many requests wait for it
            if self._snapshot is not seen and self._snapshot is not None:
                return self._snapshot
            invalidations = self._invalidations
            async with self._sessions() as session:
                fresh = await load_catalog(session, now)
            if invalidations == self._invalidations:
                self._snapshot, self._expires = fresh, time.monotonic() + self._ttl
            return fresh

    def _reloaded(self, task: asyncio.Task[Catalog]) -> None:
        self._reloading = None
        if not task.cancelled() and task.exception() is not None:
            # The old snapshot keeps serving; the next request past `ttl` tries again.
            logger.warning("catalog reload failed", exc_info=task.exception())

    def invalidate(self) -> None:
        self._snapshot = None
        self._expires = 0.0
        self._invalidations += 1
