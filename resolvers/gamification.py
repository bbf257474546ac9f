"""Challenges and badges: public lists, a member's progress and badges, admin creation."""

from __future__ import annotations

from sqlalchemy import select

import models
from schema.context import Info
from schema.errors import UserError
from schema.ids import expect_id
from schema.inputs import CreateBadgeInput, CreateChallengeInput
from schema.payloads import CreateBadgePayload, CreateChallengePayload
from schema.types.gamification import Badge, Challenge
from services.errors import DomainError
from services.gamification import badges as badge_service
from services.gamification import challenges as challenge_service


async def challenges(info: Info) -> list[Challenge]:
    """Running now."""
    now = info.context.runtime.clock.now()
    async with info.context.runtime.read_sessions() as session:
        rows = await challenge_service.running(session, now)
    return [Challenge.from_row(row) for row in rows]


async def badges(info: Info) -> list[Badge]:
    async with info.context.runtime.read_sessions() as session:
        rows = await session.scalars(select(models.Badge).order_by(models.Badge.id))
        return [Badge.from_row(row) for row in rows]


async def create_badge(info: Info, input: CreateBadgeInput) -> CreateBadgePayload:
    now = info.context.runtime.clock.now()
    try:
        async with info.context.runtime.sessions.begin() as session:
            row = await badge_service.create_badge(
                session,
                name=input.name,
                description=input.description,
                image_url=input.image_url,
                metric=input.metric,
                threshold=input.threshold,
                now=now,
            )
    except DomainError as error:
        return CreateBadgePayload(user_errors=[UserError.from_domain(error)])
    info.context.runtime.catalog.invalidate()
    return CreateBadgePayload(badge=Badge.from_row(row))


async def create_challenge(info: Info, input: CreateChallengeInput) -> CreateChallengePayload:
    now = info.context.runtime.clock.now()
    try:
        badge_id = (
            expect_id(input.badge_id, "Badge", ["input", "badgeId"])
            if input.badge_id is not None
            else None
        )
        async with info.context.runtime.sessions.begin() as session:
            row = await challenge_service.create_challenge(
                session,
                name=input.name,
                description=input.description,
                metric=input.metric,
                goal=input.goal,
                reward_points=input.reward_points,
                badge_id=badge_id,
                starts_at=input.starts_at,
                ends_at=input.ends_at,
                recurrence=input.recurrence,
                now=now,
            )
    except DomainError as error:
        return CreateChallengePayload(user_errors=[UserError.from_domain(error)])
    info.context.runtime.catalog.invalidate()
    return CreateChallengePayload(challenge=Challenge.from_row(row))
