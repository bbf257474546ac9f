"""Promotion experiments as admins read them: the control share, and each group's figures
with the uplift (services.experiments computes them)."""

from __future__ import annotations

import strawberry

from schema.types.program import Promotion
from services import experiments as service
from services.experiments import ExperimentGroup

__all__ = ["Experiment", "ExperimentGroup", "ExperimentGroupResult", "PromotionResults"]

strawberry.enum(ExperimentGroup, name="ExperimentGroup")


@strawberry.type
class Experiment:
    control_share: float


@strawberry.type(description="Figures over the promotion's dates so far, from the ledger.")
class ExperimentGroupResult:
    group: ExperimentGroup
    members: int = strawberry.field(description="Eligible members assigned to the group")
    buyers: int = strawberry.field(description="Of them, with a purchase in the window")
    purchases_per_member: float
    revenue_per_member: float = strawberry.field(
        description="Purchase amounts in program currency, less refunds, / members"
    )
    points_cost: int = strawberry.field(
        description="Points the group earned on those purchases (promotion share included), "
        "less reversals"
    )

    @classmethod
    def from_result(cls, result: service.GroupResult) -> ExperimentGroupResult:
        return cls(
            group=result.group,
            members=result.members,
            buyers=result.buyers,
            purchases_per_member=result.purchases_per_member,
            revenue_per_member=result.revenue_per_member,
            points_cost=result.points_cost,
        )


@strawberry.type(description="TREATMENT minus CONTROL, with a 95% confidence interval.")
class UpliftEstimate:
    estimate: float
    low: float
    high: float

    @classmethod
    def from_uplift(cls, uplift: service.Uplift) -> UpliftEstimate:
        return cls(estimate=uplift.estimate, low=uplift.low, high=uplift.high)


@strawberry.type
class ExperimentUplift:
    revenue_per_member: UpliftEstimate
    purchases_per_member: UpliftEstimate


@strawberry.type
class PromotionResults:
    promotion: Promotion
    groups: list[ExperimentGroupResult] = strawberry.field(
        description="TREATMENT and CONTROL (TREATMENT only without an experiment); members "
        "add up to the eligible members"
    )
    uplift: ExperimentUplift | None = strawberry.field(
        description="Null without an experiment or while a group is empty"
    )
    method: str = strawberry.field(description="How the interval is computed")

    @classmethod
    def from_results(cls, results: service.PromotionResults) -> PromotionResults:
        revenue, purchases = results.revenue_uplift, results.purchases_uplift
        uplift = None
        if revenue is not None and purchases is not None:
            uplift = ExperimentUplift(
                revenue_per_member=UpliftEstimate.from_uplift(revenue),
                purchases_per_member=UpliftEstimate.from_uplift(purchases),
            )
        return cls(
            promotion=Promotion.from_row(results.promotion),
            groups=[ExperimentGroupResult.from_result(g) for g in results.groups],
            uplift=uplift,
            method=results.method,
        )
