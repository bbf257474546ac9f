"""Challenges and badges: public lists, a member's progress and badges, admin creation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

import models
from resolvers.common import audit_trail, given
from resolvers.targeting import global_id, optional_pk, retarget_from, visible
from schema.context import Info
from schema.errors import UserError
from schema.ids import encode_id, expect_id
from schema.inputs import (
    CreateBadgeInput,
    CreateChallengeInput,
    EndChallengeInput,
    UpdateBadgeInput,
    UpdateChallengeInput,
)
from schema.payloads import (
    CreateBadgePayload,
    CreateChallengePayload,
    EndChallengePayload,
    UpdateBadgePayload,
    UpdateChallengePayload,
)
from schema.types.gamification import Badge, Challenge
from services.audit import fields
from services.errors import DomainError
from services.gamification import badges as badge_service
from services.gamification import challenges as challenge_service
from services.gamification import edits

# What the audit trail keeps of each: GraphQL name -> attribute.
BADGE_FIELDS = {
    "name": "name",
    "description": "description",
    "imageUrl": "image_url",
    "metric": "metric",
    "threshold": "threshold",
}
CHALLENGE_FIELDS = {
    "name": "name",
    "description": "description",
    "metric": "metric",
    "goal": "goal",
    "rewardPoints": "reward_points",
    "startsAt": "starts_at",
    "endsAt": "ends_at",
    "recurrence": "recurrence",
}


async def challenges(info: Info) -> list[Challenge]:
    """Running now."""
    now = info.context.runtime.clock.now()
    async with info.context.runtime.read_sessions() as session:
        rows = await challenge_service.running(session, now)
    return [Challenge.from_row(row) for row in await visible(info, rows)]


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
            audit_trail(info, session, _id(row), None, fields(row, BADGE_FIELDS))
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
                segment_id=optional_pk(input.segment_id, "Segment", ["input", "segmentId"]),
            )
            badge = encode_id("Badge", row.badge_id) if row.badge_id is not None else None
            after = {**fields(row, CHALLENGE_FIELDS), "badge": badge}
            if row.segment_id is not None:
                after["segment"] = global_id("Segment", row.segment_id)
            audit_trail(info, session, _id(row), None, after)
    except DomainError as error:
        return CreateChallengePayload(user_errors=[UserError.from_domain(error)])
    info.context.runtime.catalog.invalidate()
    return CreateChallengePayload(challenge=Challenge.from_row(row))


async def update_challenge(info: Info, input: UpdateChallengeInput) -> UpdateChallengePayload:
    now = info.context.runtime.clock.now()
    try:
        challenge_id = expect_id(input.id, "Challenge", ["input", "id"])
        async with info.context.runtime.sessions.begin() as session:
            row = await edits.locked_challenge(session, challenge_id)
            before = fields(row, CHALLENGE_FIELDS)
            changes = given(input)
            retargeted: dict[str, Any] = {}
            await retarget_from(session, row, changes, before, retargeted)
            await edits.update_challenge(session, row, changes, now)
            after = {**fields(row, CHALLENGE_FIELDS), **retargeted}
            audit_trail(info, session, _id(row), before, after)
    except DomainError as error:
        return UpdateChallengePayload(user_errors=[UserError.from_domain(error)])
    info.context.runtime.catalog.invalidate()
    return UpdateChallengePayload(challenge=Challenge.from_row(row))


async def end_challenge(info: Info, input: EndChallengeInput) -> EndChallengePayload:
    now = info.context.runtime.clock.now()
    try:
        challenge_id = expect_id(input.id, "Challenge", ["input", "id"])
        async with info.context.runtime.sessions.begin() as session:
            row = await edits.locked_challenge(session, challenge_id)
            before = fields(row, CHALLENGE_FIELDS)
            await edits.end_challenge(session, row, now)
            audit_trail(info, session, _id(row), before, fields(row, CHALLENGE_FIELDS))
    except DomainError as error:
        return EndChallengePayload(user_errors=[UserError.from_domain(error)])
    info.context.runtime.catalog.invalidate()
    return EndChallengePayload(challenge=Challenge.from_row(row))


async def update_badge(info: Info, input: UpdateBadgeInput) -> UpdateBadgePayload:
    try:
        badge_id = expect_id(input.id, "Badge", ["input", "id"])
        async with info.context.runtime.sessions.begin() as session:
            row = await edits.locked_badge(session, badge_id)
            before = fields(row, BADGE_FIELDS)
            await edits.update_badge(session, row, given(input))
            audit_trail(info, session, _id(row), before, fields(row, BADGE_FIELDS))
    except DomainError as error:
        return UpdateBadgePayload(user_errors=[UserError.from_domain(error)])
    return UpdateBadgePayload(badge=Badge.from_row(row))


def _id(row: models.Badge | models.Challenge) -> str:
    return encode_id(type(row).__name__, row.id)
