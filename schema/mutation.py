"""The Mutation root."""

from __future__ import annotations

import strawberry

from resolvers import ledger, members, program
from schema.payloads import (
    AdjustPointsPayload,
    CreatePromotionPayload,
    CreateTierPayload,
    EnrollPayload,
    RecordActivityPayload,
    RecordPurchasePayload,
    RefundPurchasePayload,
    UpdateProgramPayload,
)
from schema.permissions import AdminOnly, AnyoneButMembersAndPartners, StaffOnly


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
