"""Mutation inputs: one `input` argument per mutation."""

from __future__ import annotations

from datetime import date, datetime

import strawberry
from strawberry.scalars import JSON

import models
from schema.flat_inputs import flat_input
from schema.types import access, earning, gamification, member, webhooks  # noqa: F401 (register enums)
from schema.types.ledger import ActivityKind

RewardKind = models.RewardKind
KeyRole = models.KeyRole
MemberStatus = models.MemberStatus
WebhookEventType = models.WebhookEventType


@strawberry.input
class EnrollInput:
    email: str
    display_name: str
    external_id: str | None = None
    birthday: date | None = None
    referral_code: str | None = None


@flat_input
@strawberry.input(
    description="One line of an order. amount: the line total charged, in the purchase "
    "currency, tax included; tax: the part of amount that is tax. lineId: unique in the order "
    "(default: the sku), used by refunds."
)
class PurchaseLineInput:
    line_id: str | None = None
    sku: str
    category: str | None = None
    quantity: int = 1
    amount: float
    is_shipping: bool = False
    is_gift_card: bool = False
    is_discounted: bool = False
    tax: float = 0


@flat_input
@strawberry.input
class RecordPurchaseInput:
    order_id: str
    amount: float
    member_id: strawberry.ID | None = None
    external_id: str | None = None
    occurred_at: datetime | None = None
    lines: list[PurchaseLineInput] | None = None
    currency: str | None = None


@strawberry.input(description="quantity: units refunded (default: the whole line).")
class RefundLineInput:
    line_id: str
    quantity: int | None = None


@strawberry.input
class RefundPurchaseInput:
    order_id: str
    refund_id: str
    amount: float | None = None
    lines: list[RefundLineInput] | None = None


@strawberry.input
class RecordActivityInput:
    kind: ActivityKind
    reference: str
    member_id: strawberry.ID | None = None
    external_id: str | None = None
    # The key of an ActivityType, with kind CUSTOM (REVIEW / SOCIAL_SHARE may name their own).
    activity_type: str | None = None


@strawberry.input
class AdjustPointsInput:
    member_id: strawberry.ID
    points: int
    reason: str
    idempotency_key: str


@strawberry.input(
    description="Only the fields given change; an explicit null clears expiryDays / tierWindowDays"
)
class UpdateProgramInput:
    name: str | None = strawberry.UNSET
    currency: str | None = strawberry.UNSET
    points_per_currency_unit: float | None = strawberry.UNSET
    point_value: float | None = strawberry.UNSET
    pending_days: int | None = strawberry.UNSET
    expiry_days: int | None = strawberry.UNSET
    signup_bonus: int | None = strawberry.UNSET
    referral_bonus: int | None = strawberry.UNSET
    review_points: int | None = strawberry.UNSET
    social_share_points: int | None = strawberry.UNSET
    birthday_points: int | None = strawberry.UNSET
    anniversary_points: int | None = strawberry.UNSET
    tier_window_days: int | None = strawberry.UNSET
    daily_activity_cap: int | None = strawberry.UNSET
    expiry_reminder_days: int | None = strawberry.UNSET
    referral_welcome_points: int | None = strawberry.UNSET  # >= 0
    referral_welcome_reward_id: strawberry.ID | None = strawberry.UNSET  # explicit null clears


@strawberry.input
class CreateTierInput:
    name: str
    threshold: int
    multiplier: float = 1.0
    benefits: list[str] = strawberry.field(default_factory=list)


@strawberry.input(
    description="controlShare in (0, 1): the share of eligible members held out as CONTROL, "
    "by a hash of member and promotion ids (stable across processes); CONTROL members earn "
    "as if the promotion did not exist and do not see it"
)
class ExperimentInput:
    control_share: float


@strawberry.input
class CreatePromotionInput:
    name: str
    multiplier: float
    starts_at: datetime
    ends_at: datetime
    experiment: ExperimentInput | None = None
    segment_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only the segment's members earn it and see it"
    )


@flat_input
@strawberry.input
class RedeemRewardInput:
    reward_id: strawberry.ID
    idempotency_key: str = strawberry.field(
        description="The same key returns the first result instead of redeeming again"
    )


@strawberry.input
class CreatePartnerInput:
    name: str
    slug: str


@strawberry.input
class CreateRewardInput:
    name: str
    kind: RewardKind
    cost: int
    description: str = ""
    value: float | None = None
    partner_id: strawberry.ID | None = None
    minimum_tier_id: strawberry.ID | None = None
    stock: int | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    settlement_amount: float | None = strawberry.field(
        default=None,
        description="For co-branded rewards: what one redemption settles with the partner",
    )
    per_member_limit: int | None = strawberry.field(
        default=None, description="How many times one member may redeem it; null: no limit"
    )
    segment_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only the segment's members see and redeem it"
    )
    early_access_starts_at: datetime | None = strawberry.field(
        default=None,
        description="Requires startsAt, before it: from then the early-access audience "
        "(earlyAccessTierId or earlyAccessSegmentId) may redeem it",
    )
    early_access_tier_id: strawberry.ID | None = None
    early_access_segment_id: strawberry.ID | None = None


@strawberry.input(
    description="Only the fields given change; an explicit null clears stock (unlimited) or a date"
)
class UpdateRewardInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    cost: int | None = strawberry.UNSET
    stock: int | None = strawberry.UNSET
    starts_at: datetime | None = strawberry.UNSET
    ends_at: datetime | None = strawberry.UNSET
    segment_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="An explicit null targets everyone again"
    )


@strawberry.input
class UseRedemptionInput:
    code: str = strawberry.field(description="The voucher code presented at checkout")


@strawberry.input(description="One of id / code")
class CancelRedemptionInput:
    id: strawberry.ID | None = None
    code: str | None = None


@strawberry.input
class CreateBadgeInput:
    name: str
    description: str = ""
    image_url: str | None = None
    metric: models.ChallengeMetric | None = strawberry.field(
        default=None,
        description="With threshold: awarded automatically when a member's lifetime count "
        "reaches it",
    )
    threshold: int | None = None


@strawberry.input
class CreateChallengeInput:
    name: str
    metric: models.ChallengeMetric
    goal: int
    reward_points: int
    starts_at: datetime
    description: str = ""
    badge_id: strawberry.ID | None = None
    ends_at: datetime | None = None
    recurrence: models.Recurrence | None = strawberry.field(
        default=None, description="WEEKLY or MONTHLY: progress starts again each period"
    )
    segment_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only the segment's members see it and make progress on it"
    )


# ---------------------------------------------------------------- running the program


@strawberry.input(
    description="Only the fields given change; an explicit null clears birthday / externalId"
)
class UpdateMemberInput:
    id: strawberry.ID
    email: str | None = strawberry.UNSET
    display_name: str | None = strawberry.UNSET
    birthday: date | None = strawberry.UNSET
    external_id: str | None = strawberry.UNSET
    attributes: JSON | None = strawberry.UNSET  # replaces the whole object
    leaderboard_opt_out: bool | None = strawberry.UNSET


@strawberry.input(description="Member token; only the fields given change")
class UpdateMeInput:
    display_name: str | None = strawberry.UNSET
    birthday: date | None = strawberry.UNSET  # may be set once: a change gets NOT_ELIGIBLE
    leaderboard_opt_out: bool | None = strawberry.UNSET


@strawberry.input
class SetMemberStatusInput:
    member_id: strawberry.ID
    status: MemberStatus
    reason: str


@strawberry.input
class ExportMemberInput:
    member_id: strawberry.ID


@strawberry.input
class EraseMemberInput:
    member_id: strawberry.ID
    reason: str | None = None


@strawberry.input(description="partnerId: required for PARTNER keys, refused otherwise")
class CreateApiKeyInput:
    name: str
    role: KeyRole
    partner_id: strawberry.ID | None = None


@strawberry.input(description="Refused from the very next request, in every process")
class RevokeApiKeyInput:
    id: strawberry.ID


# -- editing the catalog: only the fields given change ----------------------------------


@strawberry.input(description="Only the fields given change")
class UpdateTierInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    threshold: int | None = strawberry.UNSET
    multiplier: float | None = strawberry.UNSET
    benefits: list[str] | None = strawberry.UNSET


@strawberry.input(description="Refused (INVALID) for the entry tier and for a program's only tier")
class DeleteTierInput:
    id: strawberry.ID


@strawberry.input(description="Only the fields given change")
class UpdatePromotionInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    multiplier: float | None = strawberry.UNSET
    starts_at: datetime | None = strawberry.UNSET
    ends_at: datetime | None = strawberry.UNSET
    segment_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="An explicit null targets everyone again"
    )


@strawberry.input(
    description="endsAt becomes now: purchases recorded after it earn without its multiplier"
)
class EndPromotionInput:
    id: strawberry.ID


@strawberry.input(description="Only the fields given change; an explicit null clears endsAt")
class UpdateChallengeInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    goal: int | None = strawberry.UNSET
    reward_points: int | None = strawberry.UNSET
    starts_at: datetime | None = strawberry.UNSET
    ends_at: datetime | None = strawberry.UNSET
    segment_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="An explicit null targets everyone again"
    )


@strawberry.input(description="endsAt becomes now; progress and completions stay")
class EndChallengeInput:
    id: strawberry.ID


@strawberry.input(description="Only the fields given change; an explicit null clears imageUrl")
class UpdateBadgeInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    image_url: str | None = strawberry.UNSET


@strawberry.input(description="Only the fields given change")
class UpdatePartnerInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    slug: str | None = strawberry.UNSET


@strawberry.input
class DeactivatePartnerInput:
    id: strawberry.ID


# ---------------------------------------------------------------- webhooks


@strawberry.input
class CreateWebhookEndpointInput:
    url: str
    # A partner key may list only REWARD_REDEEMED, REDEMPTION_USED, REDEMPTION_CANCELLED.
    event_types: list[WebhookEventType]
    description: str | None = None


@strawberry.input(description="Only the fields given change")
class UpdateWebhookEndpointInput:
    id: strawberry.ID
    url: str | None = strawberry.UNSET
    event_types: list[WebhookEventType] | None = strawberry.UNSET
    enabled: bool | None = strawberry.UNSET
    description: str | None = strawberry.UNSET


@strawberry.input
class RotateWebhookSecretInput:
    id: strawberry.ID


@strawberry.input
class DeleteWebhookEndpointInput:
    id: strawberry.ID


@strawberry.input
class ResendWebhookEventInput:
    event_id: strawberry.ID
    endpoint_id: strawberry.ID


# ---------------------------------------------------------------- segments


@strawberry.input(description="Inclusive bounds; at least one of min / max")
class IntRangeInput:
    min: int | None = None
    max: int | None = None


@strawberry.input(description="Inclusive bounds; at least one of min / max")
class FloatRangeInput:
    min: float | None = None
    max: float | None = None


@strawberry.input(description="Purchases recorded in the last `lastDays` days")
class PurchaseCountConditionInput:
    last_days: int
    min: int | None = None
    max: int | None = None


@strawberry.input(description="Purchase amounts in the program currency, less refunds")
class PurchaseAmountConditionInput:
    last_days: int
    min: float | None = None
    max: float | None = None


@strawberry.input(description="The member's attribute `key` equals `equals`, compared as text")
class AttributeConditionInput:
    key: str
    equals: str


@strawberry.input(description="One condition: set exactly one field")
class SegmentConditionInput:
    tier_in: list[strawberry.ID] | None = None
    available_points: IntRangeInput | None = None
    lifetime_points: IntRangeInput | None = None
    purchase_count: PurchaseCountConditionInput | None = None
    purchase_amount: PurchaseAmountConditionInput | None = None
    days_since_last_purchase: IntRangeInput | None = None
    joined_after: datetime | None = None
    joined_before: datetime | None = None
    birthday_month: int | None = None
    has_badge: strawberry.ID | None = None
    attribute: AttributeConditionInput | None = None
    in_segment: strawberry.ID | None = None


@strawberry.input(description="Members matching every condition of `all` and one of `any`")
class SegmentRuleInput:
    all: list[SegmentConditionInput] | None = None
    any: list[SegmentConditionInput] | None = None


@strawberry.input
class CreateSegmentInput:
    name: str
    rule: SegmentRuleInput


@strawberry.input(description="Only the fields given change")
class UpdateSegmentInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    rule: SegmentRuleInput | None = strawberry.UNSET


@strawberry.input
class DeleteSegmentInput:
    id: strawberry.ID


@strawberry.input
class EarningRuleMatchInput:
    category: str | None = None
    sku: str | None = None
    shipping: bool | None = None
    gift_card: bool | None = None
    discounted: bool | None = None
    tax: bool | None = None


@strawberry.input(
    description="The fields a kind needs are required (match for line kinds, multiplier > 0, "
    "points > 0, minimumAmount > 0); others refused (INVALID)."
)
class CreateEarningRuleInput:
    name: str
    kind: models.EarningRuleKind
    match: EarningRuleMatchInput | None = None
    multiplier: float | None = None
    points: int | None = None
    minimum_amount: float | None = None
    segment_id: strawberry.ID | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None


@strawberry.input(description="Only the fields given change; kind never does.")
class UpdateEarningRuleInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    match: EarningRuleMatchInput | None = strawberry.UNSET
    multiplier: float | None = strawberry.UNSET
    points: int | None = strawberry.UNSET
    minimum_amount: float | None = strawberry.UNSET
    segment_id: strawberry.ID | None = strawberry.UNSET
    starts_at: datetime | None = strawberry.UNSET
    ends_at: datetime | None = strawberry.UNSET


@strawberry.input(
    description="Ends the rule now; purchases already recorded keep what they earned."
)
class EndEarningRuleInput:
    id: strawberry.ID


@strawberry.input(
    description="rate > 0; the program's own currency is always 1 and cannot be set (INVALID)."
)
class SetCurrencyRateInput:
    currency: str
    rate: float


@strawberry.input(
    description="What recordPurchase with this input would earn now, with nothing written "
    "(member self, service, admin)."
)
class PreviewOrderInput:
    member_id: strawberry.ID | None = None
    amount: float
    lines: list[PurchaseLineInput] | None = None
    currency: str | None = None


# ---------------------------------------------------------------- activity types


@strawberry.input(description="Each cap >= 1 when given; null: no cap")
class ActivityCapsInput:
    per_day: int | None = strawberry.UNSET
    per_week: int | None = strawberry.UNSET
    per_month: int | None = strawberry.UNSET
    lifetime: int | None = strawberry.UNSET


@strawberry.input
class CreateActivityTypeInput:
    key: str
    name: str
    points: int
    caps: ActivityCapsInput | None = None
    segment_id: strawberry.ID | None = None
    tier_multiplier_applies: bool = False


@strawberry.input(
    description="Only the fields given change; an explicit null clears segmentId or a cap. "
    "An inactive type pays nothing (NOT_ELIGIBLE)"
)
class UpdateActivityTypeInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    points: int | None = strawberry.UNSET
    caps: ActivityCapsInput | None = strawberry.UNSET
    segment_id: strawberry.ID | None = strawberry.UNSET
    tier_multiplier_applies: bool | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET
