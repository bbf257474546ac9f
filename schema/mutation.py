"""The Mutation root."""

from __future__ import annotations

import strawberry

from resolvers import gamification, ledger, members, partners, program, redemptions, rewards
from schema.payloads import (
    AdjustPointsPayload,
    CancelRedemptionPayload,
    CreateBadgePayload,
    CreateChallengePayload,
    CreatePartnerPayload,
    CreatePromotionPayload,
    CreateRewardPayload,
    CreateTierPayload,
    EnrollPayload,
    RecordActivityPayload,
    RecordPurchasePayload,
    RedeemRewardPayload,
    RefundPurchasePayload,
    UpdateProgramPayload,
    UpdateRewardPayload,
    UseRedemptionPayload,
)
from schema.permissions import AdminOnly, AnyoneButMembersAndPartners, MemberOnly, StaffOnly


@strawberry.type
class Mutation:
    update_program: UpdateProgramPayload = strawberry.mutation(
        resolver=program.update_program, permission_classes=[AdminOnly]
    )
    create_tier: CreateTierPayload = strawberry.mutation(
        resolver=program.create_tier, permission_classes=[AdminOnly]
    )
    create_promotion: CreatePromotionPayload = strawberry.mutation(
        resolver=program.create_promotion, permission_classes=[AdminOnly]
    )
    # Public self sign-up or the merchant's backend; partners and members may not enrol others.
    enroll: EnrollPayload = strawberry.mutation(
        resolver=members.enroll, permission_classes=[AnyoneButMembersAndPartners]
    )
    record_purchase: RecordPurchasePayload = strawberry.mutation(
        resolver=ledger.record_purchase, permission_classes=[StaffOnly]
    )
    refund_purchase: RefundPurchasePayload = strawberry.mutation(
        resolver=ledger.refund_purchase, permission_classes=[StaffOnly]
    )
    record_activity: RecordActivityPayload = strawberry.mutation(
        resolver=ledger.record_activity, permission_classes=[StaffOnly]
    )
    adjust_points: AdjustPointsPayload = strawberry.mutation(
        resolver=ledger.adjust_points, permission_classes=[AdminOnly]
    )
    create_partner: CreatePartnerPayload = strawberry.mutation(
        resolver=partners.create_partner, permission_classes=[AdminOnly]
    )
    create_reward: CreateRewardPayload = strawberry.mutation(
        resolver=rewards.create_reward, permission_classes=[AdminOnly]
    )
    update_reward: UpdateRewardPayload = strawberry.mutation(
        resolver=rewards.update_reward, permission_classes=[AdminOnly]
    )
    redeem_reward: RedeemRewardPayload = strawberry.mutation(
        resolver=redemptions.redeem_reward, permission_classes=[MemberOnly]
    )
    use_redemption: UseRedemptionPayload = strawberry.mutation(
        resolver=redemptions.use_redemption,
        permission_classes=[StaffOnly],
        description="At checkout: mark an issued voucher used (a code is good for one order)",
    )
    cancel_redemption: CancelRedemptionPayload = strawberry.mutation(
        resolver=redemptions.cancel_redemption,
        permission_classes=[StaffOnly],
        description="Cancel an issued redemption: its points and stock come back, once",
    )
    create_badge: CreateBadgePayload = strawberry.mutation(
        resolver=gamification.create_badge, permission_classes=[AdminOnly]
    )
    create_challenge: CreateChallengePayload = strawberry.mutation(
        resolver=gamification.create_challenge, permission_classes=[AdminOnly]
    )
