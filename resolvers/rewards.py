"""The rewards catalog: public browsing, admin changes."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy import ColumnElement, select

import models
from resolvers.common import audit_trail, fresh_member
from resolvers.targeting import global_id, optional_pk, retarget_from
from schema.context import Info, Role
from schema.errors import UserError
from schema.exceptions import BadUserInput
from schema.ids import encode_id, expect_id
from schema.inputs import CreateRewardInput, UpdateRewardInput
from schema.payloads import CreateRewardPayload, UpdateRewardPayload
from schema.types.reward import Reward, RewardConnection, reward_page
from services import rewards as reward_service
from services.audit import fields, jsonable
from services.errors import DomainError

# What the audit trail keeps of a reward: GraphQL name -> attribute (its partner, minimum tier
# and settlement terms, which no update changes, are recorded at creation).
REWARD_FIELDS = {
    "name": "name",
    "description": "description",
    "kind": "kind",
    "cost": "cost",
    "value": "value",
    "stock": "stock",
    "startsAt": "starts_at",
    "endsAt": "ends_at",
    "perMemberLimit": "per_member_limit",
}


async def rewards(
    info: Info,
    first: int | None = 20,
    after: str | None = None,
    partner_slug: str | None = None,
    affordable: bool | None = None,
) -> RewardConnection:
    """The catalog (ended rewards left out), filtered by partner brand or by what the calling
    member can afford now."""
    filters: list[ColumnElement[bool]] = []
    if partner_slug is not None:
        brand = select(models.Partner.id).where(models.Partner.slug == partner_slug.strip().lower())
        filters.append(models.Reward.partner_id == brand.scalar_subquery())
    if affordable is not None:
        viewer = info.context.viewer
        if viewer.role is not Role.MEMBER or viewer.member_id is None:
            raise BadUserInput("`affordable` needs a member token: affordable by whom?")
        member = await fresh_member(info.context, viewer.member_id)
        available = member.available if member is not None else 0
        cost = models.Reward.cost
        filters.append(cost <= available if affordable else cost > available)
    return await reward_page(info, first=first, after=after, filters=filters)


async def create_reward(info: Info, input: CreateRewardInput) -> CreateRewardPayload:
    now = info.context.runtime.clock.now()
    try:
        partner_id = (
            expect_id(input.partner_id, "Partner", ["input", "partnerId"])
            if input.partner_id is not None
            else None
        )
        tier_id = (
            expect_id(input.minimum_tier_id, "Tier", ["input", "minimumTierId"])
            if input.minimum_tier_id is not None
            else None
        )
        async with info.context.runtime.sessions.begin() as session:
            row = await reward_service.create_reward(
                session,
                name=input.name,
                description=input.description,
                kind=input.kind,
                cost=input.cost,
                value=input.value,
                partner_id=partner_id,
                minimum_tier_id=tier_id,
                stock=input.stock,
                starts_at=input.starts_at,
                ends_at=input.ends_at,
                per_member_limit=input.per_member_limit,
                settlement_amount=input.settlement_amount,
                now=now,
                segment_id=optional_pk(input.segment_id, "Segment", ["input", "segmentId"]),
                early_access_starts_at=input.early_access_starts_at,
                early_access_tier_id=optional_pk(
                    input.early_access_tier_id, "Tier", ["input", "earlyAccessTierId"]
                ),
                early_access_segment_id=optional_pk(
                    input.early_access_segment_id, "Segment", ["input", "earlyAccessSegmentId"]
                ),
            )
            after = {
                **fields(row, REWARD_FIELDS),
                "partner": _global("Partner", row.partner_id),
                "minimumTier": _global("Tier", row.minimum_tier_id),
                "settlementAmount": jsonable(row.settlement_amount),
            }
            targeting = {
                "segment": global_id("Segment", row.segment_id),
                "earlyAccessStartsAt": jsonable(row.early_access_starts_at),
                "earlyAccessTier": global_id("Tier", row.early_access_tier_id),
                "earlyAccessSegment": global_id("Segment", row.early_access_segment_id),
            }
            after.update({name: value for name, value in targeting.items() if value is not None})
            audit_trail(info, session, encode_id("Reward", row.id), None, after)
    except DomainError as error:
        return CreateRewardPayload(user_errors=[UserError.from_domain(error)])
    return CreateRewardPayload(reward=Reward.from_row(row, now))


async def update_reward(info: Info, input: UpdateRewardInput) -> UpdateRewardPayload:
    now = info.context.runtime.clock.now()
    changes: dict[str, Any] = {
        name: value
        for name, value in vars(input).items()
        if name != "id" and value is not strawberry.UNSET
    }
    try:
        reward_id = expect_id(input.id, "Reward", ["input", "id"])
        async with info.context.runtime.sessions.begin() as session:
            row = await reward_service.locked_reward(session, reward_id)
            before = fields(row, REWARD_FIELDS)
            retargeted: dict[str, Any] = {}
            await retarget_from(session, row, changes, before, retargeted)
            await reward_service.update_reward(session, row, changes)
            target = encode_id("Reward", row.id)
            after = {**fields(row, REWARD_FIELDS), **retargeted}
            audit_trail(info, session, target, before, after)
    except DomainError as error:
        return UpdateRewardPayload(user_errors=[UserError.from_domain(error)])
    return UpdateRewardPayload(reward=Reward.from_row(row, now))


def _global(type_name: str, pk: int | None) -> str | None:
    return encode_id(type_name, pk) if pk is not None else None
