"""Running the program's members: admin edits, a member's own profile, status, and privacy
requests (export, erasure)."""

from __future__ import annotations

from strawberry.scalars import JSON

from resolvers.common import given, unit_of_work
from schema.context import Info
from schema.errors import UserError
from schema.ids import expect_id
from schema.inputs import (
    EraseMemberInput,
    ExportMemberInput,
    SetMemberStatusInput,
    UpdateMeInput,
    UpdateMemberInput,
)
from schema.payloads import (
    EraseMemberPayload,
    ExportMemberPayload,
    SetMemberStatusPayload,
    UpdateMemberPayload,
    UpdateMePayload,
)
from schema.types.member import Member
from services import member_profile, privacy
from services.errors import DomainError


async def update_member(info: Info, input: UpdateMemberInput) -> UpdateMemberPayload:
    ctx = info.context
    now = ctx.runtime.clock.now()
    try:
        member_id = expect_id(input.id, "Member", ["input", "id"])
    except DomainError as error:
        return UpdateMemberPayload(user_errors=[UserError.from_domain(error)])
    result = await unit_of_work(
        ctx,
        lambda session: member_profile.update_member(
            session,
            member_id=member_id,
            changes=given(input),
            actor=ctx.viewer.audit_actor,
            now=now,
        ),
    )
    if isinstance(result, UserError):
        return UpdateMemberPayload(user_errors=[result])
    return UpdateMemberPayload(member=Member.from_row(result))


async def update_me(info: Info, input: UpdateMeInput) -> UpdateMePayload:
    ctx = info.context
    member_id = ctx.viewer.member_id
    assert member_id is not None, "MemberOnly lets members alone through"
    result = await unit_of_work(
        ctx,
        lambda session: member_profile.update_me(
            session, member_id=member_id, changes=given(input), now=ctx.runtime.clock.now()
        ),
    )
    if isinstance(result, UserError):
        return UpdateMePayload(user_errors=[result])
    return UpdateMePayload(member=Member.from_row(result))


async def set_member_status(info: Info, input: SetMemberStatusInput) -> SetMemberStatusPayload:
    ctx = info.context
    try:
        member_id = expect_id(input.member_id, "Member", ["input", "memberId"])
    except DomainError as error:
        return SetMemberStatusPayload(user_errors=[UserError.from_domain(error)])
    result = await unit_of_work(
        ctx,
        lambda session: member_profile.set_status(
            session,
            member_id=member_id,
            status=input.status,
            reason=input.reason,
            actor=ctx.viewer.audit_actor,
            now=ctx.runtime.clock.now(),
        ),
    )
    if isinstance(result, UserError):
        return SetMemberStatusPayload(user_errors=[result])
    return SetMemberStatusPayload(member=Member.from_row(result))


async def export_member(info: Info, input: ExportMemberInput) -> ExportMemberPayload:
    ctx = info.context
    try:
        member_id = expect_id(input.member_id, "Member", ["input", "memberId"])
    except DomainError as error:
        return ExportMemberPayload(user_errors=[UserError.from_domain(error)])
    result = await unit_of_work(
        ctx,
        lambda session: privacy.export_member(
            session, member_id=member_id, actor=ctx.viewer.audit_actor, now=ctx.runtime.clock.now()
        ),
    )
    if isinstance(result, UserError):
        return ExportMemberPayload(user_errors=[result])
    return ExportMemberPayload(document=JSON(result))


async def erase_member(info: Info, input: EraseMemberInput) -> EraseMemberPayload:
    ctx = info.context
    try:
        member_id = expect_id(input.member_id, "Member", ["input", "memberId"])
    except DomainError as error:
        return EraseMemberPayload(user_errors=[UserError.from_domain(error)])
    result = await unit_of_work(
        ctx,
        lambda session: privacy.erase_member(
            session,
            member_id=member_id,
            reason=input.reason,
            actor=ctx.viewer.audit_actor,
            now=ctx.runtime.clock.now(),
        ),
    )
    if isinstance(result, UserError):
        return EraseMemberPayload(user_errors=[result])
    # Committed: every process refuses its tokens and ends its subscriptions before we answer.
    await ctx.runtime.member_erased(member_id)
    return EraseMemberPayload(member=Member.from_row(result))
