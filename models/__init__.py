"""SQLAlchemy models: importing this package registers every table on `Base.metadata`."""

from models.access import ApiKey, KeyRole
from models.audit import AuditEntry
from models.base import Base
from models.documents import TrustedDocument
from models.events import LIVE_KINDS, EventKind, MemberEvent
from models.gamification import (
    Badge,
    Challenge,
    ChallengeCompletion,
    ChallengeMetric,
    MemberBadge,
    Recurrence,
)
from models.ledger import (
    EARNING_KINDS,
    QUALIFYING_KINDS,
    EntryKind,
    EntryStatus,
    IdempotencyRecord,
    LedgerEntry,
    Purchase,
    Refund,
)
from models.member import LeaderboardCount, Member, MemberStatus
from models.program import PROGRAM_ID, Program, Promotion, Tier
from models.reward import Partner, Redemption, RedemptionStatus, Reward, RewardKind
from models.rollup import (
    ActiveMembers,
    ActiveMembersChange,
    LedgerDay,
    LedgerDayChange,
    MemberDay,
)
from models.targeting import ActivityType, CurrencyRate, EarningRule, EarningRuleKind, Segment
from models.webhooks import (
    PARTNER_EVENT_TYPES,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventType,
)

__all__ = [
    "EARNING_KINDS",
    "LIVE_KINDS",
    "PARTNER_EVENT_TYPES",
    "PROGRAM_ID",
    "QUALIFYING_KINDS",
    "ActiveMembers",
    "ActiveMembersChange",
    "ActivityType",
    "ApiKey",
    "AuditEntry",
    "Badge",
    "Base",
    "Challenge",
    "ChallengeCompletion",
    "ChallengeMetric",
    "CurrencyRate",
    "DeliveryStatus",
    "EarningRule",
    "EarningRuleKind",
    "EntryKind",
    "EntryStatus",
    "EventKind",
    "IdempotencyRecord",
    "KeyRole",
    "LeaderboardCount",
    "LedgerDay",
    "LedgerDayChange",
    "LedgerEntry",
    "Member",
    "MemberBadge",
    "MemberDay",
    "MemberEvent",
    "MemberStatus",
    "Partner",
    "Program",
    "Promotion",
    "Purchase",
    "Recurrence",
    "Redemption",
    "RedemptionStatus",
    "Refund",
    "Reward",
    "RewardKind",
    "Segment",
    "Tier",
    "TrustedDocument",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookEventType",
]
