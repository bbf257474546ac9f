"""SQLAlchemy models: importing this package registers every table on `Base.metadata`."""

from models.access import ApiKey, KeyRole
from models.base import Base
from models.events import EventKind, MemberEvent
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
from models.member import Member
from models.program import PROGRAM_ID, Program, Promotion, Tier
from models.reward import Partner, Redemption, RedemptionStatus, Reward, RewardKind

__all__ = [
    "EARNING_KINDS",
    "PROGRAM_ID",
    "QUALIFYING_KINDS",
    "ApiKey",
    "Base",
    "EntryKind",
    "EntryStatus",
    "EventKind",
    "IdempotencyRecord",
    "KeyRole",
    "LedgerEntry",
    "Member",
    "MemberEvent",
    "Partner",
    "Program",
    "Promotion",
    "Purchase",
    "Redemption",
    "RedemptionStatus",
    "Refund",
    "Reward",
    "RewardKind",
    "Tier",
]
