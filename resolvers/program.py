"""The program's settings, tiers and promotions: public reads, admin changes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from schema.context import Info
from schema.errors import UserError
from schema.exceptions import BadUserInput
from schema.inputs import CreatePromotionInput, CreateTierInput, UpdateProgramInput
from schema.payloads import CreatePromotionPayload, CreateTierPayload, UpdateProgramPayload
from schema.types.program import Program, Promotion, Tier
from schema.types.stats import ProgramStats
from services import program as programs
from services import stats
from services import tiers as tier_service
from services.errors import DomainError


async def program(info: Info) -> Program:
    return Program.from_row(await info.context.loaders.program())


async def tiers(info: Info) -> list[Tier]:
    return Tier.ranked(await info.context.loaders.tiers())


async def promotions(info: Info) -> list[Promotion]:
    async with info.context.runtime.read_sessions() as session:
        rows = await programs.current_and_upcoming_promotions(
            session, info.context.runtime.clock.now()
        )
    return [Promotion.from_row(row) for row in rows]


async def update_program(info: Info, input: UpdateProgramInput) -> UpdateProgramPayload:
    changes = {name: value for name, value in vars(input).items() if value is not strawberry.UNSET}
    now = info.context.runtime.clock.now()
    try:
        async with info.context.runtime.sessions.begin() as session:
            before = (await programs.get_program(session)).tier_window_days
            row = await programs.update_program(session, changes)
            if row.tier_window_days != before:
                # The window decides every member's qualifying points: place everyone again.
                await tier_service.recompute_all(session, row, now)
    except DomainError as error:
        return UpdateProgramPayload(user_errors=[UserError.from_domain(error)])
    info.context.runtime.catalog.invalidate()
    return UpdateProgramPayload(program=Program.from_row(row))


async def create_tier(info: Info, input: CreateTierInput) -> CreateTierPayload:
    now = info.context.runtime.clock.now()
    try:
        async with info.context.runtime.sessions.begin() as session:
            row = await programs.create_tier(
                session,
                name=input.name,
                threshold=input.threshold,
                multiplier=input.multiplier,
                benefits=input.benefits,
            )
            # Members already past the new threshold move up now, not at their next purchase.
            await tier_service.recompute_all(session, await programs.get_program(session), now)
            ranked = Tier.ranked(await programs.list_tiers(session))
    except DomainError as error:
        return CreateTierPayload(user_errors=[UserError.from_domain(error)])
    info.context.runtime.catalog.invalidate()
    return CreateTierPayload(tier=next(t for t in ranked if t.name == row.name))


async def create_promotion(info: Info, input: CreatePromotionInput) -> CreatePromotionPayload:
    try:
        async with info.context.runtime.sessions.begin() as session:
            row = await programs.create_promotion(
                session,
                name=input.name,
                multiplier=input.multiplier,
                starts_at=input.starts_at,
                ends_at=input.ends_at,
            )
    except DomainError as error:
        return CreatePromotionPayload(user_errors=[UserError.from_domain(error)])
    info.context.runtime.catalog.invalidate()
    return CreatePromotionPayload(promotion=Promotion.from_row(row))


async def program_stats(
    info: Info,
    from_: Annotated[datetime, strawberry.argument(name="from")],
    to: datetime,
) -> ProgramStats:
    try:
        async with info.context.runtime.read_sessions() as session:
            figures = await stats.program_stats(session, start=from_, end=to)
    except DomainError as error:
        raise BadUserInput(error.message) from error
    return ProgramStats.from_figures(figures)
