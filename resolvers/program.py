"""The program's settings, tiers and promotions: public reads, admin changes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

import models
from resolvers.common import audit_trail, given
from resolvers.targeting import global_id, optional_pk, retarget_from, visible_promotions
from schema.context import Info
from schema.errors import UserError
from schema.exceptions import BadUserInput
from schema.ids import encode_id, expect_id
from schema.inputs import (
    CreatePromotionInput,
    CreateTierInput,
    DeleteTierInput,
    EndPromotionInput,
    UpdateProgramInput,
    UpdatePromotionInput,
    UpdateTierInput,
)
from schema.payloads import (
    CreatePromotionPayload,
    CreateTierPayload,
    DeleteTierPayload,
    EndPromotionPayload,
    UpdateProgramPayload,
    UpdatePromotionPayload,
    UpdateTierPayload,
)
from schema.types.program import Program, Promotion, Tier
from schema.types.stats import ProgramStats
from services import program as programs
from services import program_edits, stats
from services import tiers as tier_service
from services.audit import fields
from services.errors import DomainError

# What the audit trail keeps of each: GraphQL name -> attribute.
PROGRAM_FIELDS = {
    "name": "name",
    "currency": "currency",
    "pointsPerCurrencyUnit": "points_per_currency_unit",
    "pointValue": "point_value",
    "pendingDays": "pending_days",
    "expiryDays": "expiry_days",
    "signupBonus": "signup_bonus",
    "referralBonus": "referral_bonus",
    "reviewPoints": "review_points",
    "socialSharePoints": "social_share_points",
    "birthdayPoints": "birthday_points",
    "anniversaryPoints": "anniversary_points",
    "tierWindowDays": "tier_window_days",
    "dailyActivityCap": "daily_activity_cap",
    "referralWelcomePoints": "referral_welcome_points",
    "referralWelcomeRewardId": "referral_welcome_reward_id",
}
TIER_FIELDS = {name: name for name in ("name", "threshold", "multiplier", "benefits")}
PROMOTION_FIELDS = {
    "name": "name",
    "multiplier": "multiplier",
    "startsAt": "starts_at",
    "endsAt": "ends_at",
}
PROGRAM = encode_id("Program", models.PROGRAM_ID)  # the one program's global ID


async def program(info: Info) -> Program:
    return Program.from_row(await info.context.loaders.program())


async def tiers(info: Info) -> list[Tier]:
    return list(Tier.ranked_in(await info.context.loaders.catalog()))


async def promotions(info: Info) -> list[Promotion]:
    async with info.context.runtime.read_sessions() as session:
        rows = await programs.current_and_upcoming_promotions(
            session, info.context.runtime.clock.now()
        )
    return [Promotion.from_row(row) for row in await visible_promotions(info, rows)]


async def update_program(info: Info, input: UpdateProgramInput) -> UpdateProgramPayload:
    changes = {name: value for name, value in vars(input).items() if value is not strawberry.UNSET}
    now = info.context.runtime.clock.now()
    try:
        if changes.get("referral_welcome_reward_id") is not None:
            changes["referral_welcome_reward_id"] = expect_id(
                changes["referral_welcome_reward_id"],
                "Reward",
                ["input", "referralWelcomeRewardId"],
            )
        async with info.context.runtime.sessions.begin() as session:
            before = fields(await programs.get_program(session), PROGRAM_FIELDS)
            row = await programs.update_program(session, changes)
            if row.tier_window_days != before["tierWindowDays"]:
                # The window decides every member's qualifying points: place everyone again.
                await tier_service.recompute_all(session, row, now)
            audit_trail(info, session, PROGRAM, before, fields(row, PROGRAM_FIELDS))
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
            tier = await _ranked(session, row.id)
            audit_trail(info, session, tier.id, None, fields(row, TIER_FIELDS))
    except DomainError as error:
        return CreateTierPayload(user_errors=[UserError.from_domain(error)])
    info.context.runtime.catalog.invalidate()
    return CreateTierPayload(tier=tier)


async def create_promotion(info: Info, input: CreatePromotionInput) -> CreatePromotionPayload:
    try:
        async with info.context.runtime.sessions.begin() as session:
            row = await programs.create_promotion(
                session,
                name=input.name,
                multiplier=input.multiplier,
                starts_at=input.starts_at,
                ends_at=input.ends_at,
                control_share=input.experiment.control_share if input.experiment else None,
                segment_id=optional_pk(input.segment_id, "Segment", ["input", "segmentId"]),
            )
            target = encode_id("Promotion", row.id)
            after = fields(row, PROMOTION_FIELDS)
            if row.experiment_control_share is not None:
                after["experiment"] = {"controlShare": row.experiment_control_share}
            if row.segment_id is not None:
                after["segment"] = global_id("Segment", row.segment_id)
            audit_trail(info, session, target, None, after)
    except DomainError as error:
        return CreatePromotionPayload(user_errors=[UserError.from_domain(error)])
    info.context.runtime.catalog.invalidate()
    return CreatePromotionPayload(promotion=Promotion.from_row(row))


async def update_tier(info: Info, input: UpdateTierInput) -> UpdateTierPayload:
    now = info.context.runtime.clock.now()
    try:
        tier_id = expect_id(input.id, "Tier", ["input", "id"])
        async with info.context.runtime.sessions.begin() as session:
            row = await program_edits.locked_tier(session, tier_id)
            before = fields(row, TIER_FIELDS)
            await program_edits.update_tier(session, row, given(input), now)
            tier = await _ranked(session, row.id)
            audit_trail(info, session, tier.id, before, fields(row, TIER_FIELDS))
    except DomainError as error:
        return UpdateTierPayload(user_errors=[UserError.from_domain(error)])
    info.context.runtime.catalog.invalidate()
    return UpdateTierPayload(tier=tier)


async def delete_tier(info: Info, input: DeleteTierInput) -> DeleteTierPayload:
    now = info.context.runtime.clock.now()
    try:
        tier_id = expect_id(input.id, "Tier", ["input", "id"])
        async with info.context.runtime.sessions.begin() as session:
            row = await program_edits.locked_tier(session, tier_id)
            before = fields(row, TIER_FIELDS)
            await program_edits.delete_tier(session, row, now)
            audit_trail(info, session, encode_id("Tier", tier_id), before, None)
    except DomainError as error:
        return DeleteTierPayload(user_errors=[UserError.from_domain(error)])
    info.context.runtime.catalog.invalidate()
    return DeleteTierPayload(deleted_tier_id=strawberry.ID(encode_id("Tier", tier_id)))


async def update_promotion(info: Info, input: UpdatePromotionInput) -> UpdatePromotionPayload:
    try:
        promotion_id = expect_id(input.id, "Promotion", ["input", "id"])
        async with info.context.runtime.sessions.begin() as session:
            row = await program_edits.locked_promotion(session, promotion_id)
            before = fields(row, PROMOTION_FIELDS)
            changes = given(input)
            retargeted: dict[str, Any] = {}
            await retarget_from(session, row, changes, before, retargeted)
            await program_edits.update_promotion(session, row, changes)
            after = {**fields(row, PROMOTION_FIELDS), **retargeted}
            audit_trail(info, session, encode_id("Promotion", row.id), before, after)
    except DomainError as error:
        return UpdatePromotionPayload(user_errors=[UserError.from_domain(error)])
    info.context.runtime.catalog.invalidate()
    return UpdatePromotionPayload(promotion=Promotion.from_row(row))


async def end_promotion(info: Info, input: EndPromotionInput) -> EndPromotionPayload:
    now = info.context.runtime.clock.now()
    try:
        promotion_id = expect_id(input.id, "Promotion", ["input", "id"])
        async with info.context.runtime.sessions.begin() as session:
            row = await program_edits.locked_promotion(session, promotion_id)
            before = fields(row, PROMOTION_FIELDS)
            await program_edits.end_promotion(session, row, now)
            audit_trail(
                info, session, encode_id("Promotion", row.id), before, fields(row, PROMOTION_FIELDS)
            )
    except DomainError as error:
        return EndPromotionPayload(user_errors=[UserError.from_domain(error)])
    info.context.runtime.catalog.invalidate()
    return EndPromotionPayload(promotion=Promotion.from_row(row))


async def _ranked(session: AsyncSession, tier_id: int) -> Tier:
    """A live tier as clients see it, ranked among the live ones."""
    return next(t for t in Tier.ranked(await programs.list_tiers(session)) if t.pk == tier_id)


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
