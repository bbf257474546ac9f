"""The all-time leaderboard in plain SQL over Laurel's tables: what the raw baseline's
`POST /leaderboard/sql` runs and what PostGraphile 5's bench-only functions wrap
(bench/postgraphile/schema.sql is generated from these), so both answer by the same rule.

Laurel's rule (services.leaderboards.sql): all time, a member's points are its cached
`earned_points`; members with more than 0 are ranked; only listed members (not opted out, not
erased) are on the board or in anyone's count; a rank is 1 + the listed members with strictly
more points ("1224"); an opted-out member still has its own standing, an erased one none.

Counts go over `ix_members_earned_points` (an index-only range) minus the few unlisted members
above the same points (the partial index `ix_members_unlisted`), not a scan of every member.
"""

from __future__ import annotations

UNLISTED = "(u.leaderboard_opt_out OR u.erased_at IS NOT NULL)"

# $1: how many.
TOP = """
    SELECT m.id, m.display_name, m.earned_points AS points
    FROM members AS m
    WHERE m.earned_points > 0 AND NOT m.leaderboard_opt_out AND m.erased_at IS NULL
    ORDER BY m.earned_points DESC, m.id
    LIMIT $1
"""


def _above(points: str) -> str:
    """Listed members with more than `points` (an SQL expression)."""
    return (
        f"((SELECT count(*) FROM members AS h WHERE h.earned_points > {points})"
        f" - (SELECT count(*) FROM members AS u WHERE {UNLISTED}"
        f" AND u.earned_points > {points}))"
    )


# $1: the member. No row when it has no points or was erased.
ME = f"""
    SELECT m.id, m.display_name, m.earned_points AS points,
           (1 + {_above("m.earned_points")})::int AS rank
    FROM members AS m
    WHERE m.id = $1 AND m.earned_points > 0 AND m.erased_at IS NULL
"""

TOTAL = f"SELECT {_above('0')}::int AS total"

# The raw endpoint: all three in one round trip ($1: how many, $2: the member); part 0 the top
# (ranked by the caller: ties share the better rank), 1 the member, 2 the total.
BOARD = f"""
    SELECT 0 AS part, t.id, t.display_name, t.points, NULL::int AS n FROM ({TOP}) AS t
    UNION ALL
    SELECT 1, me.id, me.display_name, me.points, me.rank
    FROM ({ME.replace("$1", "$2")}) AS me
    UNION ALL
    SELECT 2, NULL, NULL, NULL, ({TOTAL})
"""


def competition_ranks(points: list[int]) -> list[int]:
    """Ranks of a list sorted by points descending: ties share the better rank."""
    ranks: list[int] = []
    for index, value in enumerate(points):
        ranks.append(ranks[-1] if index and points[index - 1] == value else index + 1)
    return ranks


def pg5_schema(schema: str = "bench_pg5") -> str:
    """The bench-only schema PostGraphile 5 exposes beside `public` (never in Laurel's
    migrations): the leaderboard's three parts as STABLE SQL functions, and `read_only()` so the
    probe can check the server's transactions are read-only."""
    return f"""
DROP SCHEMA IF EXISTS {schema} CASCADE;
CREATE SCHEMA {schema};
CREATE TYPE {schema}.standing AS (member_id bigint, display_name text, points int, rank int);
CREATE FUNCTION {schema}.leaderboard_top(n int) RETURNS SETOF {schema}.standing
LANGUAGE sql STABLE AS $$
    SELECT t.id, t.display_name::text, t.points,
           (rank() OVER (ORDER BY t.points DESC))::int
    FROM ({TOP.replace("$1", "n")}) AS t
    ORDER BY t.points DESC, t.id
$$;
CREATE FUNCTION {schema}.leaderboard_me(member_id bigint) RETURNS {schema}.standing
LANGUAGE sql STABLE AS $$
    SELECT me.id, me.display_name::text, me.points, me.rank
    FROM ({ME.replace("$1", "leaderboard_me.member_id")}) AS me
$$;
CREATE FUNCTION {schema}.leaderboard_total() RETURNS int
LANGUAGE sql STABLE AS $$ {TOTAL} $$;
CREATE FUNCTION {schema}.read_only() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT current_setting('transaction_read_only') $$;
"""
