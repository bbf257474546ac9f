"""Points-moving operations: purchases, refunds, activities, adjustments, previews."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

import models
from models.records import MemberRecord
from resolvers.common import audit_trail, target_member_id, unit_of_work
from schema.context import Context, Info, Role
from schema.errors import UserError
from schema.exceptions import BadUserInput, Forbidden
from schema.ids import encode_id, expect_id
from schema.inputs import (
    AdjustPointsInput,
    PreviewOrderInput,
    PurchaseLineInput,
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
from schema.types.ledger import ActivityKind, PointsComponent, PointsTransaction, PurchasePreview
from schema.types.member import Member
from services.catalog import Catalog
from services.direct import purchases as direct_purchases
from services.errors import DomainError
from services.ledger import activity, adjustments, purchases
from services.ledger.earning import LineRequest, purchase_amount
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
            lines=line_requests(input.lines),
            currency=input.currency,
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
            lines=line_requests(input.lines),
            currency=input.currency,
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
            lines=[purchases.LineRefund(line.line_id, line.quantity) for line in input.lines]
            if input.lines is not None
            else None,
        )

    return await _ledger_operation(ctx, RefundPurchasePayload, work)


async def record_activity(info: Info, input: RecordActivityInput) -> RecordActivityPayload:
    ctx = info.context
    now = ctx.runtime.clock.now()

    async def work(session: AsyncSession) -> LedgerResult:
        member_id = await target_member_id(
            session, member_id=input.member_id, external_id=input.external_id
        )
        custom = input.kind is ActivityKind.CUSTOM
        return await activity.record_activity(
            session,
            member_id=member_id,
            kind=None if custom else models.EntryKind(input.kind.value),
            activity_type=input.activity_type,
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
    """What a purchase of `amount` would earn now, with nothing written (previewOrder without
    lines or currency)."""
    ctx = info.context
    try:
        exact = purchase_amount(amount, ["amount"])
        pk = expect_id(member_id, "Member", ["memberId"]) if member_id is not None else None
    except DomainError as error:
        raise BadUserInput(error.message) from error
    return await _preview_order(ctx, pk, purchases.Order(exact))


async def preview_order(info: Info, input: PreviewOrderInput) -> PurchasePreview:
    """What recordPurchase with this order would earn now (lines, currency, earning rules),
    with nothing written: the same quote recordPurchase writes."""
    ctx = info.context
    try:
        pk = (
            expect_id(input.member_id, "Member", ["input", "memberId"]) if input.member_id else None
        )
        order = purchases.Order.check(
            input.amount, line_requests(input.lines), input.currency, ["input"]
        )
    except DomainError as error:
        raise BadUserInput(error.message) from error
    return await _preview_order(ctx, pk, order)


async def _preview_order(ctx: Context, pk: int | None, order: purchases.Order) -> PurchasePreview:
    """The quote recordPurchase of `order` would write now (rules and bonuses included)."""
    member = await _previewed_member(ctx, pk)
    catalog = await ctx.loaders.catalog(tier_id=member.tier_id if member else None)
    try:
        async with ctx.runtime.read_sessions() as session:
            quote = await purchases.preview_order(
                session, catalog, member, order, ctx.runtime.clock.now()
            )
    except DomainError as error:  # an unknown currency
        raise BadUserInput(error.message) from error
    return PurchasePreview(
        points=quote.points,
        breakdown=[PointsComponent(label=c.label, points=c.points) for c in quote.components],
    )


async def _previewed_member(ctx: Context, pk: int | None) -> MemberRecord | None:
    """The member a preview is for: a member previews its own by default, and only its own."""
    viewer = ctx.viewer
    if pk is None and viewer.role is Role.MEMBER:
        pk = viewer.member_id
    if pk is not None and not viewer.can_see_member(pk):
        require(viewer, MemberOrStaff.roles)  # anonymous and partners may not name a member
        raise Forbidden("a member may preview only its own purchases")
    member = await ctx.loaders.member.load(pk) if pk is not None else None
    if pk is not None and member is None:
        raise BadUserInput("no such member")
    return member


def line_requests(lines: list[PurchaseLineInput] | None) -> list[LineRequest] | None:
    """Purchase lines as the services take them."""
    if lines is None:
        return None
    return [
        LineRequest(
            sku=line.sku,
            amount=line.amount,
            quantity=line.quantity,
            line_id=line.line_id,
            category=line.category,
            is_shipping=line.is_shipping,
            is_gift_card=line.is_gift_card,
            is_discounted=line.is_discounted,
            tax=line.tax,
        )
        for line in lines
    ]
