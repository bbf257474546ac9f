"""Member operations: enrolment and lookups."""

from __future__ import annotations

import strawberry

from resolvers.common import fresh_member
from schema.context import Info, Role
from schema.errors import UserError
from schema.exceptions import BadUserInput
from schema.ids import expect_id
from schema.inputs import EnrollInput
from schema.payloads import EnrollPayload
from schema.types.member import Member, newest_page_wanted
from services import access, members
from services.errors import DomainError


async def me(info: Info) -> Member | None:
    viewer = info.context.viewer
    assert viewer.member_id is not None
    page = newest_page_wanted(info._raw_info.field_nodes[0], info.variable_values)
    row = await fresh_member(info.context, viewer.member_id, page=page)
    if row is not None:
        info.context.member_settles_at = row.next_settlement_at
    return Member.from_row(row) if row else None


async def member(
    info: Info, id: strawberry.ID | None = None, external_id: str | None = None
) -> Member | None:
    if (id is None) == (external_id is None):
        raise BadUserInput("give exactly one of `id` and `externalId`")
    if id is not None:
        try:
            pk = expect_id(id, "Member", ["id"])
        except DomainError as exc:
            raise BadUserInput("`id` is not a Member ID") from exc
    else:
        async with info.context.runtime.read_sessions() as session:
            try:
                pk = (await members.find_member(session, external_id=external_id)).id
            except DomainError:
                return None
    row = await fresh_member(info.context, pk)
    return Member.from_row(row) if row else None


async def enroll(info: Info, input: EnrollInput) -> EnrollPayload:
    ctx = info.context
    now = ctx.runtime.clock.now()
    try:
        async with ctx.runtime.sessions.begin() as session:
            row = await members.enroll(
                session,
                email=input.email,
                display_name=input.display_name,
                external_id=input.external_id,
                birthday=input.birthday,
                referral_code=input.referral_code,
                now=now,
            )
    except DomainError as error:
        return EnrollPayload(user_errors=[UserError.from_domain(error)])
    result = Member.from_row(row)
    token = None
    # Self sign-up gets no token here: a member signs in through the merchant's own login.
    if ctx.viewer.role in (Role.SERVICE, Role.ADMIN) and ctx.runtime.jwt_secret:
        token = access.issue_member_token(
            subject=result.id,
            secret=ctx.runtime.jwt_secret,
            now=now,
            ttl=ctx.runtime.member_token_ttl,
        )
    return EnrollPayload(member=result, token=token)
