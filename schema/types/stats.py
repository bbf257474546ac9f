"""Program figures for admins."""

from __future__ import annotations

import strawberry

from services.stats import ProgramStats as Figures


@strawberry.type
class ProgramStats:
    members: int = strawberry.field(description="Members enrolled by the end of the window")
    active_members: int = strawberry.field(description="Earned or redeemed inside the window")
    points_issued: int = strawberry.field(
        description="Earned (pending included) and positive adjustments, less refund reversals"
    )
    points_redeemed: int = strawberry.field(
        description="Spent on rewards, less what cancelled redemptions gave back"
    )
    points_expired: int
    outstanding_points: int = strawberry.field(description="available + pending, now")
    liability: float = strawberry.field(description="outstandingPoints x the program's pointValue")
    redemption_rate: float = strawberry.field(description="pointsRedeemed / pointsIssued")
    repeat_purchase_rate: float = strawberry.field(
        description="Share of purchasing members with 2+ purchases in the window"
    )

    @classmethod
    def from_figures(cls, figures: Figures) -> ProgramStats:
        return cls(
            members=figures.members,
            active_members=figures.active_members,
            points_issued=figures.points_issued,
            points_redeemed=figures.points_redeemed,
            points_expired=figures.points_expired,
            outstanding_points=figures.outstanding_points,
            liability=float(figures.liability),
            redemption_rate=figures.redemption_rate,
            repeat_purchase_rate=figures.repeat_purchase_rate,
        )
