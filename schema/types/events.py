"""Live updates: a member's events as subscribers receive them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from schema.types.gamification import BadgeAwarded, ChallengeCompleted
from schema.types.ledger import PointsTransaction
from schema.types.member import Member, PointsBalance
from schema.types.program import Tier


@strawberry.type
class PointsUpdate:
    member: Member = strawberry.field(description="The member's state when this was delivered")
    transaction: PointsTransaction
    balance: PointsBalance = strawberry.field(description="The balances right after this change")


@strawberry.type
class TierChanged:
    from_: Tier = strawberry.field(name="from")
    to: Tier


MemberEventPayload = Annotated[
    PointsUpdate | BadgeAwarded | TierChanged | ChallengeCompleted,
    strawberry.union("MemberEventPayload"),
]


@strawberry.type
class MemberEvent:
    cursor: str = strawberry.field(
        description="Pass as `after` when reconnecting to receive what was missed"
    )
    occurred_at: datetime
    payload: MemberEventPayload
