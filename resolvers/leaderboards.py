"""Leaderboards: the board (public), a member's rank, and the board live."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator

from schema.context import Context, Info, Role
from schema.exceptions import BadUserInput
from schema.types.leaderboard import Leaderboard
from services.leaderboards import Board, Leaderboards, Period

MAX_FIRST = 100
# A live board is sent at most this often, and looked at this often even without news (so
# a period rolling over is noticed).
THROTTLE_SECONDS = 1.0
IDLE_CHECK_SECONDS = 15.0
# After news, when to look at the board (seconds after the ring) until it has changed.
SETTLE_SECONDS = (0.3, 1.2, 2.6)


def size_of(first: int | None) -> int:
    size = 10 if first is None else first
    if not 1 <= size <= MAX_FIRST:
        raise BadUserInput(f"`first` must be between 1 and {MAX_FIRST}")
    return size


def _viewer_member(context: Context) -> int | None:
    viewer = context.viewer
    return viewer.member_id if viewer.role is Role.MEMBER else None


def _boards(context: Context) -> Leaderboards:
    leaderboards = context.runtime.leaderboards
    assert leaderboards is not None, "the app always builds its leaderboards"
    return leaderboards


async def leaderboard(
    info: Info, period: Period = Period.ALL_TIME, first: int | None = 10
) -> Leaderboard:
    return await leaderboard_of(info.context, period, size_of(first))


async def leaderboard_of(context: Context, period: Period, size: int) -> Leaderboard:
    """`Query.leaderboard` (also for `schema.compiled.leaderboard_view`): the top `size`, and
    the caller's own entry when the caller is a ranked member."""
    me = _viewer_member(context)
    board = await _boards(context).board(period, first=size, member_id=me)
    return Leaderboard.from_board(board, me)


def _shape(board: Board) -> list[tuple[int, int, int, str]]:
    return [(s.member_id, s.rank, s.points, s.display_name) for s in board.entries]


async def leaderboard_updated(
    info: Info, period: Period = Period.ALL_TIME, first: int | None = 10
) -> AsyncGenerator[Leaderboard, None]:
    """The board now, then again whenever its top `first` changes, at most once a second."""
    size = size_of(first)
    me = _viewer_member(info.context)
    boards = _boards(info.context)
    bus = info.context.runtime.bus
    bell = bus.subscribe(None)  # any member's commit may move the board
    try:
        board = await boards.board(period, first=size, member_id=me)
        sent = _shape(board)
        yield Leaderboard.from_board(board, me)
        last_sent = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bell.wait(), timeout=IDLE_CHECK_SECONDS)
            rung = time.monotonic()
            # A commit's points reach the board a little after its hint: the committing
            # process writes Redis in batches (~0.1 s), and while Redis is away the database's
            # ranking is shared for a couple of seconds. Look again a few times, not once.
            for delay in SETTLE_SECONDS:
                start = max(rung + delay, last_sent + THROTTLE_SECONDS)
                await asyncio.sleep(max(0.0, start - time.monotonic()))
                board = await boards.board(period, first=size, member_id=me)
                if _shape(board) != sent:
                    sent = _shape(board)
                    yield Leaderboard.from_board(board, me)
                    last_sent = time.monotonic()
                    break
    finally:
        bus.unsubscribe(None, bell)
