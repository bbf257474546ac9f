"""The ledger summed per UTC day, and who was active when: what the admin charts read
(services.timeline) instead of millions of entries.

Kept by triggers on `ledger_entries` (migration 0020), so every writer keeps them alike: the
general path, the direct path's one-statement writes, imports, and anything set-based. Only
counted entries (not VOIDED) are summed, and an entry that makes its member active (it earned
or redeemed: `services.stats.active_entry`) notes the member's day.

On PostgreSQL the trigger appends to the `*_changes` tables instead of updating a summary row:
every purchase of the day would otherwise update the same row and wait for the lock of the one
before it until that one commits. `services.rollup.fold` moves the changes into the summaries
(the sweep runs it); readers read both. On SQLite (one writer at a time) the triggers update
the summaries directly and the change tables stay empty.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Date, Enum, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId
from models.ledger import EntryKind

_KIND = Enum(EntryKind, native_enum=False, length=20)


class LedgerDay(Base):
    """Counted entries of one kind created on one UTC day: the sum of their positive points
    (`credited`) and of their negative ones (`debited`), kept apart because some figures take
    only one sign of a kind (positive adjustments count as issued)."""

    __tablename__ = "ledger_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[EntryKind] = mapped_column(_KIND, primary_key=True)
    credited: Mapped[int] = mapped_column(BigInteger)
    debited: Mapped[int] = mapped_column(BigInteger)


class LedgerDayChange(Base):
    """What entries added to a `LedgerDay` not yet folded into it (PostgreSQL)."""

    __tablename__ = "ledger_day_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    kind: Mapped[EntryKind] = mapped_column(_KIND)
    credited: Mapped[int] = mapped_column(BigInteger)
    debited: Mapped[int] = mapped_column(BigInteger)


class MemberDay(Base):
    """A UTC day on which the member was active. Derived data with no foreign key: it is
    rebuilt from the ledger (services.rollup.rebuild), and a key would make every new row
    check `members` again."""

    __tablename__ = "member_days"
    __table_args__ = (Index("ix_member_days_day", "day", "member_id"),)

    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)


class ActiveMembers(Base):
    """How many members were active in one UTC day ('D'), ISO week from Monday ('W') or
    calendar month ('M') starting on `starts`."""

    __tablename__ = "active_members"

    period: Mapped[str] = mapped_column(String(1), primary_key=True)
    starts: Mapped[date] = mapped_column(Date, primary_key=True)
    members: Mapped[int] = mapped_column(Integer)


class ActiveMembersChange(Base):
    """Members newly active in a period, not yet folded into its `ActiveMembers` (PostgreSQL)."""

    __tablename__ = "active_member_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    period: Mapped[str] = mapped_column(String(1))
    starts: Mapped[date] = mapped_column(Date)
    members: Mapped[int] = mapped_column(Integer)
