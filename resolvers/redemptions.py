"""Redeeming rewards (members) and a redemption's life at checkout (the merchant's backend)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from resolvers.common import unit_of_work
from schema.context import Info
from schema.errors import UserError
from schema.ids import expect_id
from schema.inputs import CancelRedemptionInput, RedeemRewardInput, UseRedemptionInput
from schema.payloads import CancelRedemptionPayload, RedeemRewardPayload, UseRedemptionPayload
from schema.types.member import Member
from schema.types.redemption import Redemption
from services import redemptions
from services.direct import redemptions as direct_redemptions
from services.errors import DomainError, Invalid
from services.ledger.purchases import reference_key
from services.redemptions import RedemptionResult


async def redeem_reward(info: Info, input: RedeemRewardInput) -> RedeemRewardPayload:
    ctx = info.context
    member_id = ctx.viewer.member_id
    assert member_id is not None, "MemberOnly lets only members in"
    now = ctx.runtime.clock.now()
    direct = ctx.runtime.direct
    if direct is not None:
        try:
            redeemed = await direct_redemptions.redeem(
                direct,
                member_id=member_id,
                reward_id=expect_id(input.reward_id, "Reward", ["input", "rewardId"]),
                key=reference_key(input.idempotency_key, ["input", "idempotencyKey"]),
                now=now,
                actor=ctx.viewer.actor,
            )
        except DomainError as error:
            return RedeemRewardPayload(user_errors=[UserError.from_domain(error)])
        if redeemed is not None:
            return RedeemRewardPayload(
                redemption=Redemption.from_row(redeemed.redemption),
                member=Member.from_row(redeemed.member),
            )

    async def work(session: AsyncSession) -> RedemptionResult:
        return await redemptions.redeem(
            session,
            member_id=member_id,
            reward_id=expect_id(input.reward_id, "Reward", ["input", "rewardId"]),
            idempotency_key=input.idempotency_key,
            now=now,
            actor=ctx.viewer.actor,
        )

    result = await unit_of_work(ctx, work)
    if isinstance(result, UserError):
        return RedeemRewardPayload(user_errors=[result])
    return RedeemRewardPayload(
        redemption=Redemption.from_row(result.redemption), member=Member.from_row(result.member)
    )


async def use_redemption(info: Info, input: UseRedemptionInput) -> UseRedemptionPayload:
    ctx = info.context

    async def work(session: AsyncSession) -> RedemptionResult:
        redemption_id = await redemptions.find_by_code(session, input.code)
        return await redemptions.use(
            session, redemption_id=redemption_id, now=ctx.runtime.clock.now()
        )

    result = await unit_of_work(ctx, work)
    if isinstance(result, UserError):
        return UseRedemptionPayload(user_errors=[result])
    return UseRedemptionPayload(redemption=Redemption.from_row(result.redemption))


async def cancel_redemption(info: Info, input: CancelRedemptionInput) -> CancelRedemptionPayload:
    ctx = info.context

    async def work(session: AsyncSession) -> RedemptionResult:
        if (input.id is None) == (input.code is None):
            raise Invalid("give exactly one of id and code", field=["input", "id"])
        if input.id is not None:
            redemption_id = expect_id(input.id, "Redemption", ["input", "id"])
        else:
            assert input.code is not None
            redemption_id = await redemptions.find_by_code(session, input.code)
        return await redemptions.cancel(
            session,
            redemption_id=redemption_id,
            now=ctx.runtime.clock.now(),
            actor=ctx.viewer.actor,
        )

    result = await unit_of_work(ctx, work)
    if isinstance(result, UserError):
        return CancelRedemptionPayload(user_errors=[result])
    return CancelRedemptionPayload(
        redemption=Redemption.from_row(result.redemption), member=Member.from_row(result.member)
    )
