"""Mutation payloads: the changed objects and `userErrors` (empty on success)."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from schema.errors import UserError
from schema.types.access import ApiKey
from schema.types.activity import ActivityType
from schema.types.earning import CurrencyRate, EarningRule
from schema.types.gamification import Badge, Challenge
from schema.types.ledger import PointsTransaction
from schema.types.member import Member
from schema.types.node import Node
from schema.types.program import Program, Promotion, Tier
from schema.types.redemption import Redemption
from schema.types.reward import Partner, Reward
from schema.types.segments import Segment
from schema.types.webhooks import WebhookDelivery, WebhookEndpoint


@strawberry.type
class EnrollPayload:
    member: Member | None = None
    token: str | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class LedgerPayload:
    """What every points-moving mutation returns: the entry written and the member after it."""

    transaction: PointsTransaction | None = None
    member: Member | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RecordPurchasePayload(LedgerPayload):
    pass


@strawberry.type
class RefundPurchasePayload(LedgerPayload):
    pass


@strawberry.type
class RecordActivityPayload(LedgerPayload):
    pass


@strawberry.type
class AdjustPointsPayload(LedgerPayload):
    pass


@strawberry.type
class UpdateProgramPayload:
    program: Program | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CreateTierPayload:
    tier: Tier | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CreatePromotionPayload:
    promotion: Promotion | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RedeemRewardPayload:
    redemption: Redemption | None = None
    member: Member | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UseRedemptionPayload:
    redemption: Redemption | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CancelRedemptionPayload:
    redemption: Redemption | None = None
    member: Member | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CreatePartnerPayload:
    partner: Partner | None = None
    api_key: str | None = strawberry.field(default=None, description="Shown once, never stored")
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CreateRewardPayload:
    reward: Reward | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UpdateRewardPayload:
    reward: Reward | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CreateBadgePayload:
    badge: Badge | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CreateChallengePayload:
    challenge: Challenge | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


# ---------------------------------------------------------------- running the program


@strawberry.type
class UpdateMemberPayload:
    member: Member | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UpdateMePayload:
    member: Member | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SetMemberStatusPayload:
    member: Member | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ExportMemberPayload:
    document: JSON | None = None  # profile, attributes, ledger, redemptions, badges, ...
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class EraseMemberPayload:
    member: Member | None = None  # as it stays, anonymized
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CreateApiKeyPayload:
    api_key: ApiKey | None = None
    secret: str | None = strawberry.field(default=None, description="Shown once, never stored")
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RevokeApiKeyPayload:
    api_key: ApiKey | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


# -- editing the catalog ------------------------------------------------------------------


@strawberry.type
class UpdateTierPayload:
    tier: Tier | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class DeleteTierPayload:
    deleted_tier_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UpdatePromotionPayload:
    promotion: Promotion | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class EndPromotionPayload:
    promotion: Promotion | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UpdateChallengePayload:
    challenge: Challenge | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class EndChallengePayload:
    challenge: Challenge | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UpdateBadgePayload:
    badge: Badge | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UpdatePartnerPayload:
    partner: Partner | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class DeactivatePartnerPayload:
    partner: Partner | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


# ---------------------------------------------------------------- webhooks


@strawberry.type
class CreateWebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = None
    secret: str | None = strawberry.field(
        default=None, description='The signing secret, "whsec_" + base64; shown once'
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UpdateWebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RotateWebhookSecretPayload:
    endpoint: WebhookEndpoint | None = None
    secret: str | None = strawberry.field(
        default=None, description="The new secret, shown once; the old one signs beside it for 24 h"
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class DeleteWebhookEndpointPayload:
    deleted_endpoint_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ResendWebhookEventPayload:
    delivery: WebhookDelivery | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


# ---------------------------------------------------------------- segments


@strawberry.type
class CreateSegmentPayload:
    segment: Segment | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UpdateSegmentPayload:
    segment: Segment | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(
    description="Refused with IN_USE while something refers to the segment; usedBy lists them"
)
class DeleteSegmentPayload:
    deleted_segment_id: strawberry.ID | None = None
    used_by: list[Node] = strawberry.field(default_factory=list)
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CreateEarningRulePayload:
    earning_rule: EarningRule | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UpdateEarningRulePayload:
    earning_rule: EarningRule | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class EndEarningRulePayload:
    earning_rule: EarningRule | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SetCurrencyRatePayload:
    currency_rate: CurrencyRate | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


# ---------------------------------------------------------------- activity types


@strawberry.type
class CreateActivityTypePayload:
    activity_type: ActivityType | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UpdateActivityTypePayload:
    activity_type: ActivityType | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
