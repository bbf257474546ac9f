"""The Mutation root."""

from __future__ import annotations

import strawberry

from resolvers import access as access_resolvers
from resolvers import activity_types as activity_type_resolvers
from resolvers import earning as earning_resolvers
from resolvers import (
    gamification,
    ledger,
    member_admin,
    members,
    partners,
    program,
    redemptions,
    rewards,
    webhooks,
)
from resolvers import segments as segment_resolvers
from schema.payloads import (
    AdjustPointsPayload,
    CancelRedemptionPayload,
    CreateActivityTypePayload,
    CreateApiKeyPayload,
    CreateBadgePayload,
    CreateChallengePayload,
    CreateEarningRulePayload,
    CreatePartnerPayload,
    CreatePromotionPayload,
    CreateRewardPayload,
    CreateSegmentPayload,
    CreateTierPayload,
    CreateWebhookEndpointPayload,
    DeactivatePartnerPayload,
    DeleteSegmentPayload,
    DeleteTierPayload,
    DeleteWebhookEndpointPayload,
    EndChallengePayload,
    EndEarningRulePayload,
    EndPromotionPayload,
    EnrollPayload,
    EraseMemberPayload,
    ExportMemberPayload,
    RecordActivityPayload,
    RecordPurchasePayload,
    RedeemRewardPayload,
    RefundPurchasePayload,
    ResendWebhookEventPayload,
    RevokeApiKeyPayload,
    RotateWebhookSecretPayload,
    SetCurrencyRatePayload,
    SetMemberStatusPayload,
    UpdateActivityTypePayload,
    UpdateBadgePayload,
    UpdateChallengePayload,
    UpdateEarningRulePayload,
    UpdateMemberPayload,
    UpdateMePayload,
    UpdatePartnerPayload,
    UpdateProgramPayload,
    UpdatePromotionPayload,
    UpdateRewardPayload,
    UpdateSegmentPayload,
    UpdateTierPayload,
    UpdateWebhookEndpointPayload,
    UseRedemptionPayload,
)
from schema.permissions import (
    AdminOnly,
    AnyoneButMembersAndPartners,
    MemberOnly,
    PartnerOrAdmin,
    StaffOnly,
)


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
    update_member: UpdateMemberPayload = strawberry.mutation(
        resolver=member_admin.update_member, permission_classes=[AdminOnly]
    )
    update_me: UpdateMePayload = strawberry.mutation(
        resolver=member_admin.update_me, permission_classes=[MemberOnly]
    )
    set_member_status: SetMemberStatusPayload = strawberry.mutation(
        resolver=member_admin.set_member_status, permission_classes=[AdminOnly]
    )
    export_member: ExportMemberPayload = strawberry.mutation(
        resolver=member_admin.export_member,
        permission_classes=[AdminOnly],
        description="A mutation so that it is audited and never sent as GET",
    )
    erase_member: EraseMemberPayload = strawberry.mutation(
        resolver=member_admin.erase_member,
        permission_classes=[AdminOnly],
        description="Irreversible",
    )
    update_tier: UpdateTierPayload = strawberry.mutation(
        resolver=program.update_tier, permission_classes=[AdminOnly]
    )
    delete_tier: DeleteTierPayload = strawberry.mutation(
        resolver=program.delete_tier, permission_classes=[AdminOnly]
    )
    update_promotion: UpdatePromotionPayload = strawberry.mutation(
        resolver=program.update_promotion, permission_classes=[AdminOnly]
    )
    end_promotion: EndPromotionPayload = strawberry.mutation(
        resolver=program.end_promotion, permission_classes=[AdminOnly]
    )
    update_challenge: UpdateChallengePayload = strawberry.mutation(
        resolver=gamification.update_challenge, permission_classes=[AdminOnly]
    )
    end_challenge: EndChallengePayload = strawberry.mutation(
        resolver=gamification.end_challenge, permission_classes=[AdminOnly]
    )
    update_badge: UpdateBadgePayload = strawberry.mutation(
        resolver=gamification.update_badge, permission_classes=[AdminOnly]
    )
    update_partner: UpdatePartnerPayload = strawberry.mutation(
        resolver=partners.update_partner, permission_classes=[AdminOnly]
    )
    deactivate_partner: DeactivatePartnerPayload = strawberry.mutation(
        resolver=partners.deactivate_partner, permission_classes=[AdminOnly]
    )
    create_api_key: CreateApiKeyPayload = strawberry.mutation(
        resolver=access_resolvers.create_api_key, permission_classes=[AdminOnly]
    )
    revoke_api_key: RevokeApiKeyPayload = strawberry.mutation(
        resolver=access_resolvers.revoke_api_key, permission_classes=[AdminOnly]
    )
    create_webhook_endpoint: CreateWebhookEndpointPayload = strawberry.mutation(
        resolver=webhooks.create_webhook_endpoint, permission_classes=[PartnerOrAdmin]
    )
    update_webhook_endpoint: UpdateWebhookEndpointPayload = strawberry.mutation(
        resolver=webhooks.update_webhook_endpoint, permission_classes=[PartnerOrAdmin]
    )
    rotate_webhook_secret: RotateWebhookSecretPayload = strawberry.mutation(
        resolver=webhooks.rotate_webhook_secret, permission_classes=[PartnerOrAdmin]
    )
    delete_webhook_endpoint: DeleteWebhookEndpointPayload = strawberry.mutation(
        resolver=webhooks.delete_webhook_endpoint, permission_classes=[PartnerOrAdmin]
    )
    resend_webhook_event: ResendWebhookEventPayload = strawberry.mutation(
        resolver=webhooks.resend_webhook_event, permission_classes=[PartnerOrAdmin]
    )
    create_segment: CreateSegmentPayload = strawberry.mutation(
        resolver=segment_resolvers.create_segment, permission_classes=[AdminOnly]
    )
    update_segment: UpdateSegmentPayload = strawberry.mutation(
        resolver=segment_resolvers.update_segment, permission_classes=[AdminOnly]
    )
    delete_segment: DeleteSegmentPayload = strawberry.mutation(
        resolver=segment_resolvers.delete_segment, permission_classes=[AdminOnly]
    )
    create_earning_rule: CreateEarningRulePayload = strawberry.mutation(
        resolver=earning_resolvers.create_earning_rule, permission_classes=[AdminOnly]
    )
    update_earning_rule: UpdateEarningRulePayload = strawberry.mutation(
        resolver=earning_resolvers.update_earning_rule, permission_classes=[AdminOnly]
    )
    end_earning_rule: EndEarningRulePayload = strawberry.mutation(
        resolver=earning_resolvers.end_earning_rule, permission_classes=[AdminOnly]
    )
    set_currency_rate: SetCurrencyRatePayload = strawberry.mutation(
        resolver=earning_resolvers.set_currency_rate, permission_classes=[AdminOnly]
    )
    create_activity_type: CreateActivityTypePayload = strawberry.mutation(
        resolver=activity_type_resolvers.create_activity_type, permission_classes=[AdminOnly]
    )
    update_activity_type: UpdateActivityTypePayload = strawberry.mutation(
        resolver=activity_type_resolvers.update_activity_type, permission_classes=[AdminOnly]
    )
