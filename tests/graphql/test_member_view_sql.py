"""Member views answered from one statement (`schema.compiled.member_view`) answer byte for
byte what strawberry answers, and leave to it everything they do not answer for.

Two apps share one PostgreSQL database (`Twins`): one with its plans and member views, one
that never uses either. Members with varied states (tiers with and without a next one,
pending and expiring points, no entries, more entries than a page, descriptions with
quotes, backslashes and emoji, timestamps with and without microseconds) are read with
fixed and generated documents, and each answer must be the same bytes from both apps.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.workloads import DASHBOARD_QUERY
from models import KeyRole
from schema.compiled.member_view import MemberView
from tests.conftest import Api, ApiFactory
from tests.graphql.test_compiled_execution import Twins, graphql_view, read_view, spy_answers
from tests.graphql.test_rewards_api import (
    ADJUST,
    CREATE_TIER,
    PURCHASE,
    UPDATE_PROGRAM,
    Someone,
    call,
    new_member,
    ok,
)

FULL_VIEW = """{ me { __typename id externalId email displayName birthday joinedAt referralCode
    status balance { __typename available pending lifetimeEarned redeemed expired }
    tier { id name rank threshold multiplier benefits }
    tierProgress { current { name rank } next { name threshold } qualifyingPoints pointsToNext }
    transactions(first: 3) { __typename
        edges { __typename cursor node { __typename id kind points status description reference
            createdAt availableAt expiresAt } }
        pageInfo { __typename hasNextPage hasPreviousPage startCursor endCursor } } } }"""
ALIASED = """query Aliased { __typename
    a: me { x: displayName t: transactions(first: 1) { pageInfo { endCursor e: hasNextPage } } }
    b: me { balance { available } t2: transactions { edges { node { id } c: cursor } } } }"""
FRAGMENTS = """query { me { ...M } }
    fragment M on Member {
        displayName transactions(first: 2, after: null) { edges { node { ...T } } } }
    fragment T on PointsTransaction { id kind points }"""

# Entry, edge, connection and member fields the views answer, for generated documents.
_ENTRY = ["id", "kind", "points", "status", "description", "reference", "createdAt",
          "availableAt", "expiresAt", "__typename"]  # fmt: skip
_MEMBER = ["id", "displayName", "email", "joinedAt", "referralCode", "status", "__typename",
           "balance { available pending lifetimeEarned }", "tier { name threshold rank }",
           "tierProgress { pointsToNext qualifyingPoints next { name } }"]  # fmt: skip
_PAGE_INFO = ["hasNextPage", "hasPreviousPage", "startCursor", "endCursor", "__typename"]


def generated_views(count: int, seed: int = 12) -> Iterator[str]:
    """`count` documents of random fields (and aliases, and page sizes) the views answer."""
    chooser = random.Random(seed)

    def some(names: list[str]) -> str:
        chosen = chooser.sample(names, chooser.randint(1, len(names)))
        return " ".join(f"a{i}: {name}" if chooser.random() < 0.2 else name
                        for i, name in enumerate(chosen))  # fmt: skip

    for _ in range(count):
        parts = [some(_MEMBER)] if chooser.random() < 0.8 else []
        first = chooser.choice(["", "(first: 1)", "(first: 5)", "(first: 100)", "(first: null)"])
        page = [
            f"edges {{ cursor node {{ {some(_ENTRY)} }} }}",
            f"pageInfo {{ {some(_PAGE_INFO)} }}",
        ]
        parts.append(
            f"transactions{first} {{ {' '.join(chooser.sample(page, chooser.randint(1, 2)))} }}"
        )
        chooser.shuffle(parts)
        yield f"{{ me {{ {' '.join(parts)} }} }}"


@pytest.fixture
async def twins(pg: AsyncEngine, make_api: ApiFactory) -> Twins:
    planned = await make_api(pg)
    unplanned = await make_api(pg)
    graphql_view(unplanned.app).compiled = None  # strawberry's execution only
    return Twins(planned, unplanned, [])


@pytest.fixture
def views(monkeypatch: pytest.MonkeyPatch) -> list[tuple[MemberView, bool]]:
    """Each member view asked, and whether it answered."""
    return spy_answers(monkeypatch, MemberView)


def view_of(api: Api, query: str) -> MemberView | None:
    return read_view(api, query, MemberView)


async def program_members(api: Api) -> dict[str, Someone]:
    """Members in every state a view shows (see the module doc)."""
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    ok(await call(api, CREATE_TIER, admin, name="Silver", threshold=50), "createTier")
    ok(await call(api, CREATE_TIER, admin, name="Gold", threshold=1000), "createTier")
    gold = await new_member(api, admin, "gina")  # the top tier: no next one
    ok(
        await call(api, PURCHASE, service, memberId=gold.id, orderId="g", amount=2000),
        "recordPurchase",
    )
    ok(await call(api, UPDATE_PROGRAM, admin, pendingDays=14, expiryDays=365), "updateProgram")
    members = {
        "new": await new_member(api, admin, "nadia"),
        "silver": await new_member(api, admin, "sam", 500),  # created at START: no microseconds
        "gold": gold,
        "busy": await new_member(api, admin, "bo", 60),
    }
    api.clock.advance(timedelta(microseconds=123_456))
    for number, reason in enumerate(
        ('a "quoted" \\ back\\slash', "émoji 🎉 </script> \t tab", "x" * 400)
    ):
        for who, points in (("silver", 7), ("busy", 3)):
            adjustment = {
                "points": points,
                "reason": reason,
                "idempotencyKey": f"{who}{number}",
            }
            ok(
                await call(api, ADJUST, admin, memberId=members[who].id, **adjustment),
                "adjustPoints",
            )
        body = await call(
            api, PURCHASE, service, memberId=members["busy"].id, orderId=reason[:20], amount=12.5
        )
        ok(body, "recordPurchase")
    for order in range(25):  # more than a page; pending (14 days) and expiring (365)
        api.clock.advance(timedelta(seconds=1, microseconds=order * 1_000))
        body = await call(
            api, PURCHASE, service, memberId=members["busy"].id, orderId=f"o-{order}", amount=3
        )
        ok(body, "recordPurchase")
    return members


async def test_member_views_answer_byte_for_byte_as_strawberry(
    twins: Twins, views: list[tuple[MemberView, bool]]
) -> None:
    api = twins.planned
    members = await program_members(api)
    documents = [DASHBOARD_QUERY, FULL_VIEW, ALIASED, FRAGMENTS, *generated_views(40)]

    for document in documents:
        assert view_of(api, document) is not None, document
        for member in members.values():
            answer = await twins.same(document, None, member.token)
            assert "errors" not in answer, (document, answer)

    # Every document was answered by its view (each at least once: repeats may be kept
    # answers, `api.member_views`).
    answered = {id(view) for view, done in views if done}
    assert answered == {id(view_of(api, document)) for document in documents}
    assert all(done for _, done in views)

    full = await twins.same(FULL_VIEW, None, members["busy"].token)
    page = full["data"]["me"]["transactions"]
    assert page["pageInfo"]["hasNextPage"] is True
    assert [edge["node"]["status"] for edge in page["edges"]] == ["PENDING"] * 3
    assert page["edges"][0]["node"]["createdAt"].endswith("+00:00")
    gold = await twins.same(FULL_VIEW, None, members["gold"].token)
    assert gold["data"]["me"]["tierProgress"]["next"] is None
    silver = await twins.same(FULL_VIEW, None, members["silver"].token)
    assert (
        silver["data"]["me"]["transactions"]["edges"][0]["node"]["description"]
        == ("Adjustment: x" + "x" * 399)[:500]
    )


@pytest.mark.parametrize(
    "document",
    [
        "{ me { transactions(first: 2) { totalCount } } }",
        "query($n: Int) { me { transactions(first: $n) { edges { node { id } } } } }",
        "{ me { transactions(first: 500) { edges { node { id } } } } }",
        '{ me { transactions(first: 2, after: "bm9wZQ") { edges { node { id } } } } }',
        "{ me { transactions { edges { node { breakdown { label points } } } } } }",
        "{ me { displayName redemptions { edges { node { id } } } } }",
        "{ me { balance { expiringSoon { points } } } }",
        "{ me { id } program { name } }",
    ],
)
async def test_what_the_views_do_not_answer_for_is_left_to_the_plan(
    twins: Twins, document: str
) -> None:
    api = twins.planned
    admin = await api.key(KeyRole.ADMIN)
    member = await new_member(api, admin, "ann", 30)

    assert view_of(api, document) is None
    await twins.same(document, {"n": 2} if "$n" in document else None, member.token)


async def test_callers_views_cannot_answer_for_get_strawberrys_answer(
    twins: Twins, views: list[tuple[MemberView, bool]], pg: AsyncEngine
) -> None:
    api = twins.planned
    admin = await api.key(KeyRole.ADMIN)
    ann = await new_member(api, admin, "ann", 30)

    # Not a member: strawberry's FORBIDDEN, UNAUTHENTICATED.
    refused = await twins.same(DASHBOARD_QUERY, None, admin)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    anonymous = await twins.same(DASHBOARD_QUERY, None, None)
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    # Points always fit GraphQL's Int (the page's SQL relies on it, see member_view).
    async with pg.connect() as connection:
        points_type = await connection.scalar(
            text(
                "SELECT data_type FROM information_schema.columns"
                " WHERE table_name = 'ledger_entries' AND column_name = 'points'"
            )
        )
    assert points_type == "integer"

    # Pending points come due: the general path settles them first.
    ok(await call(api, UPDATE_PROGRAM, admin, pendingDays=3), "updateProgram")
    service = await api.key(KeyRole.SERVICE)
    ok(
        await call(api, PURCHASE, service, memberId=ann.id, orderId="p-1", amount=20),
        "recordPurchase",
    )
    pending = await twins.same(DASHBOARD_QUERY, None, ann.token)
    assert pending["data"]["me"]["balance"] == {"available": 30, "pending": 20}
    api.clock.advance(timedelta(days=4))
    settled = await twins.same(DASHBOARD_QUERY, None, ann.token)
    assert settled["data"]["me"]["balance"] == {"available": 50, "pending": 0}

    # admin, anonymous, ann pending, ann due
    assert [done for _, done in views] == [False, False, True, False]
