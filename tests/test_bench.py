"""The bench's own parts that decide what it measures: bulk member tokens (the same bytes as
issue_member_token) and the plain-SQL leaderboard of the baselines (the same answers as
Laurel's own rule), on a real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bench import ranking, workloads
from bench.checks import lua_request
from bench.tokens import check_tokens, member_tokens
from models import Member
from models.engine import read_session_factory, session_factory
from schema.ids import encode_id
from services import members as member_service
from services.access import issue_member_token, verify_member_token
from services.leaderboards import Period, board_from_database

SECRET = "bench-secret-with-enough-length-for-hs256"


def test_bulk_tokens_are_issue_member_tokens_bytes() -> None:
    now = datetime.now(UTC)  # PyJWT checks `iat` against the real clock
    ttl = timedelta(hours=6)
    pks = [1, 7, 42, 99_999, 1_234_567]
    tokens = member_tokens(pks, secret=SECRET, now=now, ttl=ttl)
    for pk, token in zip(pks, tokens, strict=True):
        assert token == issue_member_token(
            subject=encode_id("Member", pk), secret=SECRET, now=now, ttl=ttl
        )
        subject, _ = verify_member_token(token, hmac_secrets=[SECRET], public_key=None, now=now)
        assert subject == encode_id("Member", pk)
    check_tokens(pks, tokens, secret=SECRET, now=now, ttl=ttl)


def test_pg5_requests_carry_the_member_as_a_variable() -> None:
    files = {"token": Path("t"), "pk": Path("p")}
    for workload in workloads.READS:
        data = workloads.member_lua_data(workload, "pg5", files, draw="zipf", hot=10)
        path, headers, body = lua_request(data, "123")
        assert path == "/graphql" and "Authorization" not in headers
        assert json.loads(body)["variables"] == {"id": "123"}
        laurel = workloads.member_lua_data(workload, "laurel-db", files, draw="hot", hot=10)
        _, headers, body = lua_request(laurel, "tok")
        assert headers["Authorization"] == "Bearer tok" and "variables" not in json.loads(body)


async def test_raw_and_pg5_leaderboards_answer_as_laurel(pg: AsyncEngine) -> None:
    """Ties, an opted-out member (own standing, in nobody's count), an erased one (none), a
    member without points (unranked)."""
    now = datetime.now(UTC)
    points = [50, 80, 80, 0, 30, 80, 10, 50]
    ids = []
    async with session_factory(pg).begin() as session:
        for n, value in enumerate(points):
            member = await member_service.enroll(
                session, email=f"m{n}@example.com", display_name=f"M{n}", now=now
            )
            ids.append(member.id)
            await session.execute(
                update(Member).where(Member.id == member.id).values(earned_points=value)
            )
        await session.execute(
            update(Member).where(Member.id == ids[6]).values(leaderboard_opt_out=True)
        )
        await session.execute(update(Member).where(Member.id == ids[2]).values(erased_at=now))
    url = pg.url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(ranking.pg5_schema("bench_pg5_test"))
        for first in (3, 10):
            for member_id in ids:
                async with read_session_factory(pg)() as session:
                    board = await board_from_database(
                        session, Period.ALL_TIME, now, first=first, member_id=member_id
                    )
                expected = {
                    "entries": [(e.rank, e.display_name, e.points) for e in board.entries],
                    "me": board.me and (board.me.rank, board.me.display_name, board.me.points),
                    "total": board.total_ranked,
                }
                rows = await conn.fetch(ranking.BOARD, first, member_id)
                top = [r for r in rows if r["part"] == 0]
                ranks = ranking.competition_ranks([r["points"] for r in top])
                me = next((r for r in rows if r["part"] == 1), None)
                raw = {
                    "entries": [
                        (rank, r["display_name"], r["points"])
                        for r, rank in zip(top, ranks, strict=True)
                    ],
                    "me": me and (me["n"], me["display_name"], me["points"]),
                    "total": next(r["n"] for r in rows if r["part"] == 2),
                }
                assert raw == expected, (first, member_id)
                pg5_top = await conn.fetch(
                    "SELECT rank, display_name, points FROM bench_pg5_test.leaderboard_top($1)",
                    first,
                )
                pg5_me = await conn.fetchrow(
                    "SELECT * FROM bench_pg5_test.leaderboard_me($1)", member_id
                )
                pg5 = {
                    "entries": [tuple(r) for r in pg5_top],
                    "me": None
                    if pg5_me["member_id"] is None
                    else (pg5_me["rank"], pg5_me["display_name"], pg5_me["points"]),
                    "total": await conn.fetchval("SELECT bench_pg5_test.leaderboard_total()"),
                }
                assert pg5 == expected, (first, member_id)
        assert await conn.fetchval("SELECT bench_pg5_test.read_only()") == "off"
    finally:
        await conn.execute("DROP SCHEMA bench_pg5_test CASCADE")
        await conn.close()
    async with pg.connect() as connection:  # nothing of the bench left in the test database
        assert (
            await connection.execute(
                text("SELECT count(*) FROM pg_namespace WHERE nspname = 'bench_pg5_test'")
            )
        ).scalar() == 0
