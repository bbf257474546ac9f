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
    # One statement reads the results: a consistent snapshot on either backend (SQLite's read
    # sessions are transactions, which its streaming needs).
    async with runtime.read_sessions() as session:
        promotion = await session.get(models.Promotion, decoded[1])
        if promotion is None:
            return None
        results = await service.promotion_results(session, promotion, now)
    return PromotionResults.from_results(results)
