"""Promotion experiments (admin): a promotion's results per group, from the ledger."""

from __future__ import annotations

import strawberry

import models
from schema.context import Info
from schema.exceptions import BadUserInput
from schema.ids import decode_id
from schema.types.experiments import PromotionResults
from services import experiments as service


async def promotion_results(info: Info, id: strawberry.ID) -> PromotionResults | None:
    decoded = decode_id(id)
    if decoded is None or decoded[0] != "Promotion":
        raise BadUserInput("`id` is not a Promotion ID")
    runtime = info.context.runtime
    now = runtime.clock.now()
    on_sqlite = runtime.read_engine.dialect.name == "sqlite"
    # A transaction (PostgreSQL's cursors need one, never committed; SQLite's without the
    # write lock), in one snapshot so the groups add up to the same ledger.
    async with (runtime.read_sessions if on_sqlite else runtime.sessions)() as session:
        if not on_sqlite:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        promotion = await session.get(models.Promotion, decoded[1])
        if promotion is None:
            return None
        results = await service.promotion_results(session, promotion, now)
    return PromotionResults.from_results(results)
