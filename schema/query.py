"""The Query root: wiring fields to resolvers, with who may call them."""

from __future__ import annotations

import strawberry

from resolvers import access as access_resolvers
from resolvers import activity_types as activity_type_resolvers
from resolvers import audit as audit_resolvers
from resolvers import earning as earning_resolvers
from resolvers import experiments as experiment_resolvers
from resolvers import (
    gamification,
    leaderboards,
    ledger,
    member_search,
    members,
    node,
    partners,
    rewards,
)
from resolvers import program as program_resolvers
from resolvers import segments as segment_resolvers
from resolvers import timeline as timeline_resolvers
from resolvers import webhooks as webhook_resolvers
from schema.permissions import AdminOnly, MemberOnly, MemberOrStaff, PartnerOrAdmin, StaffOnly
from schema.types.access import ApiKeyConnection
from schema.types.activity import ActivityType
from schema.types.audit import AuditEntryConnection
from schema.types.earning import CurrencyRate, EarningRule
from schema.types.experiments import PromotionResults
from schema.types.gamification import Badge, Challenge
from schema.types.leaderboard import Leaderboard
from schema.types.ledger import PurchasePreview
from schema.types.member import Member
from schema.types.member_list import MemberConnection
from schema.types.node import Node
from schema.types.program import Program, Promotion, Tier
from schema.types.reward import Partner, RewardConnection
from schema.types.segments import Segment
from schema.types.stats import ProgramStats
from schema.types.timeline import ProgramTimeline
from schema.types.webhooks import WebhookDeliveryConnection, WebhookEndpoint


@strawberry.type
class Query:
    node: Node | None = strawberry.field(resolver=node.node)
    me: Member | None = strawberry.field(resolver=members.me, permission_classes=[MemberOnly])
    member: Member | None = strawberry.field(
        resolver=members.member, permission_classes=[StaffOnly]
    )
    members: MemberConnection = strawberry.field(
        resolver=member_search.members, permission_classes=[AdminOnly]
    )
    tiers: list[Tier] = strawberry.field(resolver=program_resolvers.tiers)
    preview_purchase: PurchasePreview = strawberry.field(resolver=ledger.preview_purchase)
    program: Program = strawberry.field(resolver=program_resolvers.program)
    promotions: list[Promotion] = strawberry.field(
        resolver=program_resolvers.promotions, description="Active and upcoming"
    )
    rewards: RewardConnection = strawberry.field(resolver=rewards.rewards)
    partner: Partner | None = strawberry.field(
        resolver=partners.partner,
        permission_classes=[PartnerOrAdmin],
        description="Partner key: the calling brand",
    )
    partners: list[Partner] = strawberry.field(
        resolver=partners.partners, permission_classes=[AdminOnly]
    )
    program_stats: ProgramStats = strawberry.field(
        resolver=program_resolvers.program_stats, permission_classes=[AdminOnly]
    )
    program_timeline: ProgramTimeline = strawberry.field(
        resolver=timeline_resolvers.program_timeline,
        permission_classes=[AdminOnly],
        description="The program's figures per day, week or month: what the admin page charts",
    )
    leaderboard: Leaderboard = strawberry.field(resolver=leaderboards.leaderboard)
    challenges: list[Challenge] = strawberry.field(
        resolver=gamification.challenges, description="Running now"
    )
    badges: list[Badge] = strawberry.field(resolver=gamification.badges)
    api_keys: ApiKeyConnection = strawberry.field(
        resolver=access_resolvers.api_keys,
        permission_classes=[AdminOnly],
        description="Newest first, revoked ones included",
    )
    audit_log: AuditEntryConnection = strawberry.field(
        resolver=audit_resolvers.audit_log,
        permission_classes=[AdminOnly],
        description="Newest first",
    )
    webhook_endpoints: list[WebhookEndpoint] = strawberry.field(
        resolver=webhook_resolvers.webhook_endpoints,
        permission_classes=[PartnerOrAdmin],
        description="Admin: every endpoint; partner: its own",
    )
    webhook_deliveries: WebhookDeliveryConnection = strawberry.field(
        resolver=webhook_resolvers.webhook_deliveries,
        permission_classes=[PartnerOrAdmin],
        description="Admin; partner: its own endpoints'; newest first",
    )
    segments: list[Segment] = strawberry.field(
        resolver=segment_resolvers.segments, permission_classes=[AdminOnly]
    )
    segment: Segment | None = strawberry.field(
        resolver=segment_resolvers.segment, permission_classes=[AdminOnly]
    )
    earning_rules: list[EarningRule] = strawberry.field(
        resolver=earning_resolvers.earning_rules, permission_classes=[AdminOnly]
    )
    currency_rates: list[CurrencyRate] = strawberry.field(
        resolver=earning_resolvers.currency_rates, permission_classes=[StaffOnly]
    )
    preview_order: PurchasePreview = strawberry.field(
        resolver=ledger.preview_order,
        permission_classes=[MemberOrStaff],
        description="What recordPurchase with this input would earn now; the breakdown names "
        "every rule that paid",
    )
    promotion_results: PromotionResults | None = strawberry.field(
        resolver=experiment_resolvers.promotion_results,
        permission_classes=[AdminOnly],
        description="Admin; null for an unknown promotion",
    )
    activity_types: list[ActivityType] = strawberry.field(
        resolver=activity_type_resolvers.activity_types,
        permission_classes=[StaffOnly],
        description="Built-ins included",
    )
