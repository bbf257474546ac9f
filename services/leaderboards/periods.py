"""Leaderboard periods and the values every board is made of.

A board ranks members by the points they *earned* inside a period: all time, the current UTC
calendar month, or the current ISO week (Monday 00:00 UTC to the next Monday). Periods are
half-open, `[period_start, period_end)`; ALL_TIME has no bounds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


class Period(enum.StrEnum):
    ALL_TIME = "ALL_TIME"
    MONTHLY = "MONTHLY"
    WEEKLY = "WEEKLY"


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("naive datetime given; leaderboards work on UTC-aware datetimes")
    return now.astimezone(UTC)


def period_start(period: Period, now: datetime) -> datetime | None:
    """When the period containing `now` began (None for ALL_TIME)."""
    now = _utc(now)
    if period is Period.MONTHLY:
        return datetime(now.year, now.month, 1, tzinfo=UTC)
    if period is Period.WEEKLY:
        monday = now.date() - timedelta(days=now.weekday())
        return datetime(monday.year, monday.month, monday.day, tzinfo=UTC)
    return None


def period_end(period: Period, now: datetime) -> datetime | None:
    """When the period containing `now` ends, exclusive (None for ALL_TIME)."""
    start = period_start(period, now)
    if start is None:
        return None
    if period is Period.MONTHLY:
        if start.month == 12:
            return start.replace(year=start.year + 1, month=1)
        return start.replace(month=start.month + 1)
    return start + timedelta(days=7)


def period_key(period: Period, now: datetime) -> int:
    """The period containing `now` as a number that grows with time: 0 for ALL_TIME,
    `202601` for January 2026, `202602` for ISO week 2 of 2026. Members keep their points of
    their latest month and week under these keys (`members.month_key`, `week_key`)."""
    if period is Period.ALL_TIME:
        return 0
    now = _utc(now)
    if period is Period.MONTHLY:
        return now.year * 100 + now.month
    year, week, _ = now.isocalendar()
    return year * 100 + week


def period_label(period: Period, now: datetime) -> str:
    """The board's name: `ALL_TIME`, `MONTHLY:2026-01`, `WEEKLY:2026-W02` (ISO week-year)."""
    if period is Period.ALL_TIME:
        return "ALL_TIME"
    now = _utc(now)
    if period is Period.MONTHLY:
        return f"MONTHLY:{now.year:04d}-{now.month:02d}"
    year, week, _ = now.isocalendar()
    return f"WEEKLY:{year:04d}-W{week:02d}"


@dataclass(frozen=True, slots=True)
class Standing:
    """One ranked member: competition rank (ties share the better rank: 1, 2, 2, 4)."""

    member_id: int
    display_name: str
    points: int
    rank: int


@dataclass(frozen=True, slots=True)
class Board:
    """The top of a board (by points, then member id ascending within a tie), the asking
    member's own standing when ranked, and how many members are ranked (points > 0)."""

    period: Period
    entries: list[Standing]
    me: Standing | None
    total_ranked: int
