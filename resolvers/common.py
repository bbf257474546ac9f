"""What every resolver shares: one unit of work with its business refusals as userErrors,
resolving the member an input points at, settling on read."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models.engine import ATTEMPTS_AFTER_DROP, dropped
from models.records import MemberRecord
from schema.context import Context, Info
from schema.errors import UserError
from schema.ids import expect_id
from services import audit
from services.errors import DomainError, Invalid
from services.ledger.entries import lock_member, settle
from services.members import find_member

T = TypeVar("T")


async def unit_of_work(ctx: Context, work: Callable[[AsyncSession], Awaitable[T]]) -> T | UserError:
    """Commit on success; on a business refusal roll back (nothing written) and report it.
    If the server dropped the connection before the commit (a failover), nothing was written
    and the work runs again on a new connection (ATTEMPTS_AFTER_DROP in all); at the commit
    itself whether it was written is unknown, so it is not repeated."""
    committing = False

    async def attempt() -> T:
        nonlocal committing
        async with ctx.runtime.sessions() as session:  # rolled back unless committed
            result = await work(session)
            committing = True
            await session.commit()
            return result

    try:
        for _ in range(ATTEMPTS_AFTER_DROP - 1):
            try:
                return await attempt()
            except Exception as error:
                if committing or not dropped(error):
                    raise
            await asyncio.sleep(0)  # lets asyncpg read the other dropped connections' ends
        return await attempt()
    except DomainError as error:
        return UserError.from_domain(error)


async def target_member_id(
    session: AsyncSession, *, member_id: str | None, external_id: str | None
) -> int:
    """The member an input names by global `memberId` or by the merchant's `externalId`."""
    if (member_id is None) == (external_id is None):
        raise Invalid("give exactly one of memberId and externalId", field=["input", "memberId"])
    if member_id is not None:
        # Existence is checked when the service locks the member: no extra read here.
        return expect_id(member_id, "Member", ["input", "memberId"])
    return (await find_member(session, external_id=external_id)).id


async def fresh_member(
    ctx: Context, member_id: int, *, page: int | None = None
) -> MemberRecord | None:
    """The member for display, with pending points activated and lots expired when due:
    a balance is right when read, whatever the sweep's schedule. With `page`, its newest
    `page` transactions are read in the same statement, for `Member.transactions`."""
    loaders = ctx.loaders
    if page is None:
        member = await loaders.member.load(member_id)
    else:
        member = await loaders.member_with_page(member_id, page)
    now = ctx.runtime.clock.now()
    if member is None or member.next_settlement_at is None or member.next_settlement_at > now:
        return member
    async with ctx.runtime.sessions.begin() as session:
        locked = await lock_member(session, member_id, erased_ok=True)
        await settle(session, locked, now)
    loaders.forget(member_id)
    loaders.member.prime(member_id, locked)
    return locked


def audit_trail(
    info: Info,
    session: AsyncSession,
    target_id: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> None:
    """Record the calling admin's change in the unit of work `session` belongs to: under the
    mutation's field name; a creation has no `before`, a deletion no `after`, and an edit keeps
    only the fields it changed."""
    actor, operation = info.context.viewer.audit_actor, info.field_name
    now = info.context.runtime.clock.now()
    if before is None or after is None:
        audit.record(
            session,
            actor=actor,
            operation=operation,
            target_id=target_id,
            before=before,
            after=after,
            now=now,
        )
    else:
        audit.record_change(
            session,
            actor=actor,
            operation=operation,
            target_id=target_id,
            before=before,
            after=after,
            now=now,
        )


def given(input: object) -> dict[str, Any]:
    """The fields an update input gives (all but `id`), by attribute name: only they change."""
    return {
        name: value
        for name, value in vars(input).items()
        if name != "id" and value is not strawberry.UNSET
    }
