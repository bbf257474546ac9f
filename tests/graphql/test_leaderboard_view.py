"""The leaderboard answered by its view (`schema.compiled.leaderboard_view`) is byte for byte
strawberry's answer, for every kind of caller, on both backends; what the view does not
answer for is left to the plan."""

from __future__ import annotations

import pytest

from bench.workloads import LEADERBOARD_QUERY
from models import KeyRole
from schema.compiled.leaderboard_view import LeaderboardView
from tests.conftest import Api
from tests.graphql.test_compiled_execution import (  # noqa: F401
    Twins,
    read_view,
    spy_answers,
    twins,
)
from tests.graphql.test_rewards_api import PURCHASE, call, new_member, ok

SEVERAL = """query Boards { __typename
    a: leaderboard { totalRanked }
    b: leaderboard(period: MONTHLY, first: 2) {
        period entries { __typename rank displayName points isMe } me { rank isMe }
        n: totalRanked } }"""
NULL_FIRST = "{ leaderboard(period: WEEKLY, first: null) { entries { displayName points } } }"


@pytest.fixture
def views(monkeypatch: pytest.MonkeyPatch) -> list[tuple[LeaderboardView, bool]]:
    """Each leaderboard view asked, and whether it answered."""
    return spy_answers(monkeypatch, LeaderboardView)


def view_of(api: Api, query: str) -> LeaderboardView | None:
    return read_view(api, query, LeaderboardView)


async def test_the_view_answers_as_strawberry_for_every_caller(
    twins: Twins,  # noqa: F811
    views: list[tuple[LeaderboardView, bool]],
) -> None:
    api = twins.planned
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    ann, bob = await new_member(api, admin, "ann"), await new_member(api, admin, "bob")
    cat = await new_member(api, admin, "cat")  # never earns: unranked
    for member, amount in ((ann, 120), (bob, 40), (ann, 5)):
        order = f"{member.id}-{amount}"
        body = await call(api, PURCHASE, service, memberId=member.id, orderId=order, amount=amount)
        ok(body, "recordPurchase")

    documents = [LEADERBOARD_QUERY, SEVERAL, NULL_FIRST]
    for document in documents:
        assert view_of(api, document) is not None
        for token in (ann.token, bob.token, cat.token, admin, service, None):
            answer = await twins.same(document, None, token)
            assert "errors" not in answer, answer

    mine = await twins.same(LEADERBOARD_QUERY, None, ann.token)
    assert mine["data"]["leaderboard"]["me"] == {
        "rank": 1,
        "displayName": "Ann",
        "points": 125,
        "isMe": True,
    }
    assert all(done for _, done in views) and len(views) >= len(documents) * 6


@pytest.mark.parametrize(
    "document",
    [
        "query($p: LeaderboardPeriod!) { leaderboard(period: $p) { totalRanked } }",
        "{ leaderboard(first: 0) { totalRanked } }",
        "{ leaderboard(first: 101) { totalRanked } }",
        "{ leaderboard { totalRanked } program { name } }",
    ],
)
async def test_what_the_view_does_not_answer_for_is_left_to_the_plan(
    twins: Twins,  # noqa: F811
    document: str,
) -> None:
    api = twins.planned
    admin = await api.key(KeyRole.ADMIN)
    ann = await new_member(api, admin, "ann")

    assert view_of(api, document) is None
    variables = {"p": "MONTHLY"} if "$p" in document else None
    await twins.same(document, variables, ann.token)
