"""Members, with their cached balances (always equal to the sums of their ledger entries)."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, Enum, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, UtcDateTime


class MemberStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"  # earns nothing (purchases still recorded), cannot redeem


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (
        Index("ix_members_earned_points", "earned_points"),
        # The monthly and weekly boards' top, read from an index as the all-time one is.
        Index("ix_members_month_points", "month_key", "month_points"),
        Index("ix_members_week_points", "week_key", "week_points"),
        # Admin listings page by (joined_at, id): newest members first without a sort.
        Index("ix_members_joined_at_id", "joined_at", "id"),
        # Each process keeps the erased members' ids (their tokens are refused) and looks for
        # new ones now and then: only erased rows are in this index.
        # Members off the leaderboards (opted out or erased): database-computed boards set
        # them aside without reading every member.
        Index(
            "ix_members_unlisted",
            "id",
            postgresql_where=text("leaderboard_opt_out OR erased_at IS NOT NULL"),
            sqlite_where=text("leaderboard_opt_out OR erased_at IS NOT NULL"),
        ),
        Index(
            "ix_members_erased_at",
            "erased_at",
            postgresql_where=text("erased_at IS NOT NULL"),
            sqlite_where=text("erased_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    birthday: Mapped[date | None] = mapped_column(Date)
    joined_at: Mapped[datetime] = mapped_column(UtcDateTime)
    referral_code: Mapped[str] = mapped_column(String(16), unique=True)
    referred_by_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), index=True)
    referral_rewarded: Mapped[bool] = mapped_column(default=False)
    # When its first purchase paid the referral: the moment it counts for its referrer.
    referral_rewarded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id"))
    # The lowest tier placement may give the member (a tier brought over from another
    # platform by an import): its points place it higher, never lower.
    tier_floor_id: Mapped[int | None] = mapped_column(ForeignKey("tiers.id"))

    # Caches of ledger sums, updated in the same transaction as every entry.
    available: Mapped[int] = mapped_column(Integer, default=0)
    pending: Mapped[int] = mapped_column(Integer, default=0)
    lifetime_earned: Mapped[int] = mapped_column(Integer, default=0)
    redeemed: Mapped[int] = mapped_column(Integer, default=0)
    expired: Mapped[int] = mapped_column(Integer, default=0)
    qualifying_points: Mapped[int] = mapped_column(Integer, default=0)
    # Points earned ever (earning kinds less reversals): the all-time leaderboard's score, so
    # that board can be read from an index when Redis is not there.
    earned_points: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The same for the member's latest month and ISO week with qualifying entries (the
    # period's `periods.period_key`): the monthly and weekly boards' scores, kept by
    # `apply_posting`. A key older than the current period's means no points in it.
    month_key: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    month_points: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    week_key: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    week_points: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Earliest moment a pending lot activates or a lot expires: settling is skipped before it.
    next_settlement_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)

    # Running the program: status, the merchant's own data, leaderboard privacy, erasure.
    status: Mapped[MemberStatus] = mapped_column(
        Enum(MemberStatus, native_enum=False, length=10),
        default=MemberStatus.ACTIVE,
        server_default=MemberStatus.ACTIVE.value,
    )
    status_reason: Mapped[str | None] = mapped_column(String(500))
    status_changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # One level of string, number and boolean values (services.member_admin checks them).
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    leaderboard_opt_out: Mapped[bool] = mapped_column(default=False, server_default="false")
    # When its latest purchase happened (segments' "days since the last purchase").
    last_purchase_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Set once its personal data was erased (privacy request): the row stays for the ledger.
    erased_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class LeaderboardCount(Base):
    """How many listed members (not opted out, not erased) have exactly `points` (> 0) on a
    board: `period` and its `period_key` (0 for ALL_TIME). A rank is 1 + the sum over the
    scores above, `totalRanked` the sum over all: one index range of distinct scores, not a
    count over every member. Kept by triggers on `members` (migration 0019) in the same
    transaction as the member's scores and listing, from whatever writes them; a period's
    counts stay as they were once its members move on to the next period."""

    __tablename__ = "leaderboard_counts"

    period: Mapped[str] = mapped_column(String(10), primary_key=True)
    period_key: Mapped[int] = mapped_column(Integer, primary_key=True)
    points: Mapped[int] = mapped_column(Integer, primary_key=True)
    members: Mapped[int] = mapped_column(Integer)
