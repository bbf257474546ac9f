"""Segments (admin): listed, read, created, changed and deleted (refused while in use); a
member's own segments."""

from __future__ import annotations

import dataclasses
from typing import Any

import strawberry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import models
from resolvers.common import audit_trail, unit_of_work
from schema.context import Info
from schema.errors import UserError
from schema.exceptions import BadUserInput
from schema.ids import decode_id, encode_id, expect_id
from schema.inputs import (
    CreateSegmentInput,
    DeleteSegmentInput,
    SegmentRuleInput,
    UpdateSegmentInput,
)
from schema.payloads import CreateSegmentPayload, DeleteSegmentPayload, UpdateSegmentPayload
from schema.types.activity import ActivityType
from schema.types.earning import EarningRule
from schema.types.gamification import Challenge
from schema.types.node import Node
from schema.types.program import Promotion
from schema.types.reward import Reward
from schema.types.segments import Segment
from services import segments as service
from services.errors import DomainError, InUse

AUDITED = {"name": "name", "rule": "rule"}
# How an IN_USE message names each kind of user.
_KINDS: dict[type, str] = {
    models.Segment: "segment",
    models.Promotion: "promotion",
    models.Reward: "reward",
    models.Challenge: "challenge",
    models.ActivityType: "activity type",
    models.EarningRule: "earning rule",
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def plain(value: Any) -> Any:
    """An input object as plain data under GraphQL names (fields left null dropped)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            _camel(f.name): plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def rule_of(rule: SegmentRuleInput) -> dict[str, Any]:
    given: dict[str, Any] = plain(rule)
    return given


async def segments(info: Info) -> list[Segment]:
    async with info.context.runtime.read_sessions() as session:
        rows = await session.scalars(select(models.Segment).order_by(models.Segment.name))
        return [Segment.from_row(row) for row in rows]


async def segment(info: Info, id: strawberry.ID) -> Segment | None:
    decoded = decode_id(id)
    if decoded is None or decoded[0] != "Segment":
        raise BadUserInput("`id` is not a Segment ID")
    async with info.context.runtime.read_sessions() as session:
        row = await session.get(models.Segment, decoded[1])
    return Segment.from_row(row) if row is not None else None


async def create_segment(info: Info, input: CreateSegmentInput) -> CreateSegmentPayload:
    now = info.context.runtime.clock.now()

    async def work(session: AsyncSession) -> models.Segment:
        row = await service.create_segment(
            session, name=input.name, rule=rule_of(input.rule), now=now
        )
        target = encode_id("Segment", row.id)
        audit_trail(info, session, target, None, {"name": row.name, "rule": row.rule})
        return row

    result = await unit_of_work(info.context, work)
    if isinstance(result, UserError):
        return CreateSegmentPayload(user_errors=[result])
    return CreateSegmentPayload(segment=Segment.from_row(result))


async def update_segment(info: Info, input: UpdateSegmentInput) -> UpdateSegmentPayload:
    now = info.context.runtime.clock.now()
    try:
        segment_id = expect_id(input.id, "Segment", ["input", "id"])
    except DomainError as error:
        return UpdateSegmentPayload(user_errors=[UserError.from_domain(error)])

    async def work(session: AsyncSession) -> models.Segment:
        row = await service.locked_segment(session, segment_id)
        before = {"name": row.name, "rule": row.rule}
        await service.update_segment(
            session,
            row,
            name=input.name if input.name is not strawberry.UNSET else None,
            rule=rule_of(input.rule) if input.rule not in (strawberry.UNSET, None) else None,
            now=now,
        )
        audit_trail(info, session, input.id, before, {"name": row.name, "rule": row.rule})
        return row

    result = await unit_of_work(info.context, work)
    if isinstance(result, UserError):
        return UpdateSegmentPayload(user_errors=[result])
    info.context.runtime.catalog.invalidate()  # targeted promotions price with the rules
    return UpdateSegmentPayload(segment=Segment.from_row(result))


async def delete_segment(info: Info, input: DeleteSegmentInput) -> DeleteSegmentPayload:
    try:
        segment_id = expect_id(input.id, "Segment", ["input", "id"])
    except DomainError as error:
        return DeleteSegmentPayload(user_errors=[UserError.from_domain(error)])
    users: list[service.SegmentUser] = []

    async def work(session: AsyncSession) -> None:
        row = await service.locked_segment(session, segment_id)
        users.extend(await service.users_of(session, segment_id))
        for user in users:
            session.expunge(user)  # read after the rollback: keep what was loaded
        if users:
            names = ", ".join(f"{_KINDS[type(u)]} {u.name!r}" for u in users)
            raise InUse(f"in use by {names}", field=["input", "id"])
        before = {"name": row.name, "rule": row.rule}
        await service.delete_segment(session, row)
        audit_trail(info, session, input.id, before, None)

    result = await unit_of_work(info.context, work)
    if isinstance(result, UserError):
        used_by = [await _user(info, u) for u in users]
        return DeleteSegmentPayload(used_by=used_by, user_errors=[result])
    return DeleteSegmentPayload(deleted_segment_id=input.id)


async def _user(info: Info, user: service.SegmentUser) -> Node:
    """What uses a segment, as the Node deleteSegment lists."""
    now = info.context.runtime.clock.now()
    if isinstance(user, models.Segment):
        return Segment.from_row(user)
    if isinstance(user, models.Promotion):
        return Promotion.from_row(user)
    if isinstance(user, models.Reward):
        return Reward.from_row(user, now)
    if isinstance(user, models.Challenge):
        return Challenge.from_row(user)
    if isinstance(user, models.ActivityType):
        return ActivityType.from_row(user, await info.context.loaders.program())
    return EarningRule.from_row(user, None, now)
