"""A member read with its newest transactions in one statement (`services.direct.reads`, on
PostgreSQL) answers exactly what the member read and the page read apart answer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from graphql import FieldNode, OperationDefinitionNode, parse

from schema.types.member import newest_page_wanted
from tests.conftest import Api
from tests.graphql.test_member_views import buy, setup
from tests.services.helpers import configure

TOGETHER = """query($first: Int) { me { balance { available pending lifetimeEarned }
    transactions(first: $first) { totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { id kind status points description reference createdAt
    availableAt expiresAt breakdown { label points } } } } } }"""
# The same selection through a fragment: the member and its page are read apart.
APART = """query($first: Int) { me { ...M } } fragment M on Member {
    balance { available pending lifetimeEarned }
    transactions(first: $first) { totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { id kind status points description reference createdAt
    availableAt expiresAt breakdown { label points } } } } }"""


async def both(api: Api, token: str, first: int) -> dict[str, object]:
    together = await api.gql(TOGETHER, {"first": first}, token=token)
    apart = await api.gql(APART, {"first": first}, token=token)
    assert "errors" not in together, together
    assert together == apart
    me: dict[str, object] = together["data"]["me"]  # type: ignore[index]
    return me


@pytest.mark.parametrize("first", [1, 2, 3, 50])
async def test_the_member_and_its_page_read_together_answer_as_read_apart(
    api: Api, first: int
) -> None:
    member_id, token, key = await setup(api)
    for order in ("o-1", "o-2", "o-3"):
        await buy(api, key, member_id, order)

    me = await both(api, token, first)

    page = me["transactions"]
    assert page["totalCount"] == 3  # type: ignore[index]
    assert len(page["edges"]) == min(first, 3)  # type: ignore[index]
    assert page["pageInfo"]["hasNextPage"] is (first < 3)  # type: ignore[index]


async def test_points_settled_on_read_show_in_the_page_read_with_the_member(api: Api) -> None:
    await configure(api.sessions, pending_days=1)
    member_id, _, key = await setup(api)
    await buy(api, key, member_id, "o-1")
    api.clock.advance(timedelta(days=1, seconds=1))  # the purchase's points activate on read
    token = api.member_token(member_id, ttl=timedelta(days=30))

    body = await api.gql(TOGETHER, {"first": 5}, token=token)

    me = body["data"]["me"]  # type: ignore[index]
    assert me["balance"]["available"] == 20 and me["balance"]["pending"] == 0
    newest = me["transactions"]["edges"][0]["node"]
    assert (newest["kind"], newest["status"]) == ("PURCHASE", "POSTED")


def _member_field(query: str) -> FieldNode:
    operation = parse(query).definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    field = operation.selection_set.selections[0]
    assert isinstance(field, FieldNode)
    return field


@pytest.mark.parametrize(
    ("query", "variables", "wanted"),
    [
        ("{ me { transactions(first: 10) { totalCount } } }", {}, 11),
        ("query($n: Int) { me { transactions(first: $n) { totalCount } } }", {"n": 3}, 4),
        ("{ me { transactions(first: 10, after: null) { totalCount } } }", {}, 11),
        ("{ me { transactions { totalCount } } }", {}, None),  # the default: not read ahead
        ('{ me { transactions(first: 10, after: "x") { totalCount } } }', {}, None),
        ("{ me { transactions(first: 0) { totalCount } } }", {}, None),  # the resolver refuses
        ("{ me { transactions(first: null) { totalCount } } }", {}, None),
        (
            "{ me { a: transactions(first: 1) { totalCount } "
            "b: transactions(first: 2) { totalCount } } }",
            {},
            None,
        ),
        ("{ me { ... on Member { transactions(first: 10) { totalCount } } } }", {}, None),
        ("{ me { balance { available } } }", {}, None),
    ],
)
def test_the_page_is_read_ahead_only_when_the_selection_says_exactly_which(
    query: str, variables: dict[str, object], wanted: int | None
) -> None:
    assert newest_page_wanted(_member_field(query), variables) == wanted
