"""The Subscription root: live updates over graphql-transport-ws."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from resolvers import leaderboards, live
from schema.context import Info
from schema.types.events import MemberEvent, PointsUpdate
from schema.types.leaderboard import Leaderboard
from services.leaderboards import Period


@strawberry.type
class Subscription:
    # The resolvers' own streams, not generators around them: each layer is a frame that a
    # waiting subscriber keeps (20,000 of them on one process).
    @strawberry.subscription  # member token: its own balance changes only
    def points_updated(self, info: Info) -> AsyncGenerator[PointsUpdate, None]:
        return live.points_updated(info)

    # Member token: its own events, in commit order; with `after`, first every event since
    # that cursor (no gap, no duplicate at the seam), then live ones.
    @strawberry.subscription
    def member_events(
        self, info: Info, after: str | None = None
    ) -> AsyncGenerator[MemberEvent, None]:
        return live.member_events(info, after)

    # The board, then again whenever its top `first` changes, at most about once a second.
    @strawberry.subscription
    async def leaderboard_updated(
        self, info: Info, period: Period = Period.ALL_TIME, first: int | None = 10
    ) -> AsyncGenerator[Leaderboard, None]:
        async for board in leaderboards.leaderboard_updated(info, period, first):
            yield board
