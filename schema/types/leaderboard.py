"""Leaderboards as clients see them: display names only, never other personal data."""

from __future__ import annotations

import strawberry

from services.leaderboards import Board, Period, Standing

strawberry.enum(Period, name="LeaderboardPeriod")


@strawberry.type
class LeaderboardEntry:
    rank: int = strawberry.field(description="1-based; ties share the better rank (1, 2, 2, 4)")
    display_name: str
    points: int = strawberry.field(description="Points earned in the period")
    is_me: bool

    @classmethod
    def from_standing(cls, standing: Standing, viewer_member_id: int | None) -> LeaderboardEntry:
        return cls(
            rank=standing.rank,
            display_name=standing.display_name,
            points=standing.points,
            is_me=standing.member_id == viewer_member_id,
        )


@strawberry.type
class Leaderboard:
    period: Period
    entries: list[LeaderboardEntry]
    me: LeaderboardEntry | None = strawberry.field(
        description="The caller's own entry, when the caller is a ranked member"
    )
    total_ranked: int

    @classmethod
    def from_board(cls, board: Board, viewer_member_id: int | None) -> Leaderboard:
        return cls(
            period=board.period,
            entries=[LeaderboardEntry.from_standing(s, viewer_member_id) for s in board.entries],
            me=(
                LeaderboardEntry.from_standing(board.me, viewer_member_id)
                if board.me is not None
                else None
            ),
            total_ranked=board.total_ranked,
        )
