"""Activity types (admin writes; admin or service reads): listed, created and changed."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

import models
from resolvers.common import audit_trail, unit_of_work
from schema.context import Info
from schema.errors import UserError
from schema.ids import encode_id, expect_id
from schema.inputs import ActivityCapsInput, CreateActivityTypeInput, UpdateActivityTypeInput
from schema.payloads import CreateActivityTypePayload, UpdateActivityTypePayload
from schema.types.activity import ActivityType
from services import activity_types as service
from services.errors import DomainError


def _caps(caps: ActivityCapsInput | None) -> dict[str, int | None]:
    """The caps given (an explicit null among them clears that cap); null caps: all cleared."""
    if caps is None:
        return dict.fromkeys(service.CAPS)
    return {
        cap: getattr(caps, cap)
        for cap in service.CAPS
        if getattr(caps, cap) is not strawberry.UNSET
    }


def _segment_id(value: strawberry.ID | None) -> int | None:
    return expect_id(value, "Segment", ["input", "segmentId"]) if value is not None else None


async def activity_types(info: Info) -> list[ActivityType]:
    program = await info.context.loaders.program()
    async with info.context.runtime.read_sessions() as session:
        rows = await service.activity_types(session)
    return [ActivityType.from_row(row, program) for row in rows]


async def create_activity_type(
    info: Info, input: CreateActivityTypeInput
) -> CreateActivityTypePayload:
    now = info.context.runtime.clock.now()

    async def work(session: AsyncSession) -> models.ActivityType:
        row = await service.create_activity_type(
            session,
            key=input.key,
            name=input.name,
            points=input.points,
            caps=_caps(input.caps) if input.caps is not None else {},
            segment_id=_segment_id(input.segment_id),
            tier_multiplier_applies=input.tier_multiplier_applies,
            now=now,
        )
        target = encode_id("ActivityType", row.id)
        audit_trail(info, session, target, None, service.audited(row))
        return row

    result = await unit_of_work(info.context, work)
    if isinstance(result, UserError):
        return CreateActivityTypePayload(user_errors=[result])
    program = await info.context.loaders.program()
    return CreateActivityTypePayload(activity_type=ActivityType.from_row(result, program))


async def update_activity_type(
    info: Info, input: UpdateActivityTypeInput
) -> UpdateActivityTypePayload:
    try:
        pk = expect_id(input.id, "ActivityType", ["input", "id"])
        changes: dict[str, Any] = {
            name: getattr(input, name)
            for name in ("name", "points", "tier_multiplier_applies", "active")
            if getattr(input, name) is not strawberry.UNSET
        }
        if input.caps is not strawberry.UNSET:
            changes["caps"] = _caps(input.caps)
        if input.segment_id is not strawberry.UNSET:
            changes["segment_id"] = _segment_id(input.segment_id)
    except DomainError as error:
        return UpdateActivityTypePayload(user_errors=[UserError.from_domain(error)])

    async def work(session: AsyncSession) -> models.ActivityType:
        row = await service.locked_activity_type(session, pk)
        before = service.audited(row)
        await service.update_activity_type(session, row, changes)
        audit_trail(info, session, input.id, before, service.audited(row))
        return row

    result = await unit_of_work(info.context, work)
    if isinstance(result, UserError):
        return UpdateActivityTypePayload(user_errors=[result])
    program = await info.context.loaders.program()
    return UpdateActivityTypePayload(activity_type=ActivityType.from_row(result, program))
