"""Points-moving operations: purchases, refunds, activities, adjustments, previews."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

import models
from resolvers.common import audit_trail, target_member_id, unit_of_work
from schema.context import Context, Info, Role
from schema.errors import UserError
from schema.exceptions import BadUserInput, Forbidden
from schema.ids import encode_id, expect_id
from schema.inputs import (
    AdjustPointsInput,
    RecordActivityInput,
    RecordPurchaseInput,
    RefundPurchaseInput,
)
from schema.payloads import (
    AdjustPointsPayload,
    LedgerPayload,
    RecordActivityPayload,
    RecordPurchasePayload,
    RefundPurchasePayload,
)
from schema.permissions import MemberOrStaff, require
from schema.types.ledger import PointsComponent, PointsTransaction, PurchasePreview
from schema.types.member import Member
from services.catalog import Catalog
from services.direct import purchases as direct_purchases
from services.errors import DomainError
from services.ledger import activity, adjustments, purchases
from services.ledger.earning import purchase_amount
from services.ledger.purchases import LedgerResult

P = TypeVar("P", bound=LedgerPayload)


async def _ledger_operation(
    ctx: Context,
    payload: type[P],
    work: Callable[[AsyncSession], Awaitable[LedgerResult]],
) -> P:
    """One unit of work: the entry and the member it wrote, or why it wrote nothing."""
    result = await unit_of_work(ctx, work)
    if isinstance(result, UserError):
        return payload(user_errors=[result])
    return payload(
        transaction=PointsTransaction.from_row(result.entry), member=Member.from_row(result.member)
    )


async def _record_directly(
    ctx: Context, input: RecordPurchaseInput, now: datetime, catalog: Catalog
) -> RecordPurchasePayload | None:
    """The purchase through the direct path (services.direct), or None: use the general one."""
    direct = ctx.runtime.direct
    if direct is None or (input.member_id is None) == (input.external_id is None):
        return None
    try:
        member_pk: int | None
        if input.member_id is not None:
            member_pk = expect_id(input.member_id, "Member", ["input", "memberId"])
        else:
            assert input.external_id is not None
            member_pk = await direct_purchases.member_with_external_id(direct, input.external_id)
        if member_pk is None:
            return None  # the general path says what is wrong
        purchase = purchases.PurchaseInput.check(
            member_id=member_pk,
            order_id=input.order_id,
            amount=input.amount,
            occurred_at=input.occurred_at,
            now=now,
        )
        recorded = await direct_purchases.record_purchase(
            direct, purchase, now=now, actor=ctx.viewer.actor, catalog=catalog
        )
    except DomainError as error:
        return RecordPurchasePayload(user_errors=[UserError.from_domain(error)])
    if recorded is None:
        return None
    return RecordPurchasePayload(
        transaction=PointsTransaction.from_row(recorded.entry),
        member=Member.from_row(recorded.member),
    )


async def record_purchase(info: Info, input: RecordPurchaseInput) -> RecordPurchasePayload:
    ctx = info.context
    now = ctx.runtime.clock.now()
    catalog = await ctx.loaders.catalog()
    recorded = await _record_directly(ctx, input, now, catalog)
    if recorded is not None:
        return recorded

    async def work(session: AsyncSession) -> LedgerResult:
        member_id = await target_member_id(
            session, member_id=input.member_id, external_id=input.external_id
        )
        return await purchases.record_purchase(
            session,
            member_id=member_id,
            order_id=input.order_id,
            amount=input.amount,
            occurred_at=input.occurred_at,
            now=now,
            actor=ctx.viewer.actor,
            catalog=catalog,
        )

    return await _ledger_operation(ctx, RecordPurchasePayload, work)


async def refund_purchase(info: Info, input: RefundPurchaseInput) -> RefundPurchasePayload:
    ctx = info.context
    now = ctx.runtime.clock.now()

    async def work(session: AsyncSession) -> LedgerResult:
        return await purchases.refund_purchase(
            session,
            order_id=input.order_id,
            refund_id=input.refund_id,
            amount=input.amount,
            now=now,
            actor=ctx.viewer.actor,
            catalog=await ctx.loaders.catalog(),
        )

    return await _ledger_operation(ctx, RefundPurchasePayload, work)


async def record_activity(info: Info, input: RecordActivityInput) -> RecordActivityPayload:
    ctx = info.context
    now = ctx.runtime.clock.now()

    async def work(session: AsyncSession) -> LedgerResult:
        member_id = await target_member_id(
            session, member_id=input.member_id, external_id=input.external_id
        )
        return await activity.record_activity(
            session,
            member_id=member_id,
            kind=models.EntryKind(input.kind.value),
            reference=input.reference,
            now=now,
            actor=ctx.viewer.actor,
            catalog=await ctx.loaders.catalog(),
        )

    return await _ledger_operation(ctx, RecordActivityPayload, work)


async def adjust_points(info: Info, input: AdjustPointsInput) -> AdjustPointsPayload:
    ctx = info.context
    now = ctx.runtime.clock.now()

    async def work(session: AsyncSession) -> LedgerResult:
        member_id = await target_member_id(session, member_id=input.member_id, external_id=None)
        result = await adjustments.adjust_points(
            session,
            member_id=member_id,
            points=input.points,
            reason=input.reason,
            idempotency_key=input.idempotency_key,
            actor=ctx.viewer.actor,
            now=now,
        )
        if not result.replayed:
            available = result.member.available
            audit_trail(
                info,
                session,
                encode_id("Member", member_id),
                {"available": available - result.entry.points},
                {"available": available},
            )
        return result

    return await _ledger_operation(ctx, AdjustPointsPayload, work)


async def preview_purchase(
    info: Info, amount: float, member_id: strawberry.ID | None = None
) -> PurchasePreview:
    """What a purchase would earn now, with nothing written."""
    ctx = info.context
    viewer = ctx.viewer
    try:
        exact = purchase_amount(amount, ["amount"])
        pk = expect_id(member_id, "Member", ["memberId"]) if member_id is not None else None
    except DomainError as error:
        raise BadUserInput(error.message) from error
    if pk is None and viewer.role is Role.MEMBER:
        pk = viewer.member_id  # a member previews its own earn rate by default
    if pk is not None and not viewer.can_see_member(pk):
        require(viewer, MemberOrStaff.roles)  # anonymous and partners may not name a member
        raise Forbidden("a member may preview only its own purchases")
    member = await ctx.loaders.member.load(pk) if pk is not None else None
    if pk is not None and member is None:
        raise BadUserInput("no such member")
    catalog = await ctx.loaders.catalog(tier_id=member.tier_id if member else None)
    now = ctx.runtime.clock.now()
    segments: frozenset[int] = frozenset()
    if member is not None and any(p.segment_id is not None for p in catalog.promotions):
        async with ctx.runtime.read_sessions() as session:
            segments = await purchases.promotion_segments(session, catalog, member.id, now, now)
    quote = purchases.quote_for_member(catalog, member, exact, now, segments=segments)
    return PurchasePreview(
        points=quote.points,
        breakdown=[PointsComponent(label=c.label, points=c.points) for c in quote.components],
    )
