"""A member's dashboard answers are reused only while nothing of the member changed."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from api import member_views
from api.member_views import MemberViews
from models import KeyRole
from schema.ids import encode_id
from services import members
from tests.conftest import Api
from tests.services.helpers import configure

DASHBOARD = """query Dashboard { me { balance { available pending } tier { name }
    tierProgress { pointsToNext } transactions(first: 10) { totalCount
    edges { node { kind points } } } } }"""
PURCHASE = """mutation($input: RecordPurchaseInput!) { recordPurchase(input: $input) {
    userErrors { code } } }"""


def views(api: Api) -> MemberViews:
    found: MemberViews = api.app.state.laurel.member_views
    return found


async def setup(api: Api) -> tuple[int, str, str]:
    async with api.sessions.begin() as session:
        ann = await members.enroll(
            session, email="ann@example.com", display_name="Ann", now=api.clock.now()
        )
    return ann.id, api.member_token(ann.id), await api.key(KeyRole.SERVICE)


async def buy(api: Api, key: str, member_id: int, order: str) -> None:
    variables: dict[str, object] = {
        "input": {"memberId": encode_id("Member", member_id), "orderId": order, "amount": 20.0}
    }
    body = await api.gql(PURCHASE, variables, token=key)
    assert body["data"]["recordPurchase"]["userErrors"] == []  # type: ignore[index]


async def dashboard(api: Api, token: str) -> dict[str, object]:
    body = await api.gql(DASHBOARD, token=token)
    assert "errors" not in body, body
    me: dict[str, object] = body["data"]["me"]  # type: ignore[index]
    return me


async def test_a_repeated_dashboard_is_reused_until_the_member_changes(api: Api) -> None:
    member_id, token, key = await setup(api)
    first = await dashboard(api, token)
    hits = views(api).hits
    assert await dashboard(api, token) == first
    assert views(api).hits == hits + 1  # the second answer was reused

    await buy(api, key, member_id, "o-1")  # its commit rings the member's doorbell
    after = await dashboard(api, token)
    assert after["balance"] == {"available": 20, "pending": 0}
    assert after != first


async def test_pending_points_activating_end_a_reused_answer(api: Api) -> None:
    await configure(api.sessions, pending_days=1)
    member_id, token, key = await setup(api)
    await buy(api, key, member_id, "o-1")
    token = api.member_token(member_id, ttl=timedelta(days=30))
    assert (await dashboard(api, token))["balance"] == {"available": 0, "pending": 20}
    hits = views(api).hits
    await dashboard(api, token)
    assert views(api).hits == hits + 1
    api.clock.advance(timedelta(days=1, seconds=1))  # no event: time alone moves the points
    token = api.member_token(member_id, ttl=timedelta(days=30))  # the old one expired meanwhile
    assert (await dashboard(api, token))["balance"] == {"available": 20, "pending": 0}


@pytest.mark.parametrize(
    "query",
    [
        "{ me { rank { rank points } } }",  # other members move it
        "{ me { recommendedRewards { name } } }",  # the catalog and stock move it
        "{ me { redemptions { totalCount } } }",
        "{ me { ...F } } fragment F on Member { balance { available } }",
        "{ me { balance { available } } program { name } }",  # another root
        "{ me { ... on Member { rank { rank } } } }",
    ],
)
async def test_views_that_others_can_change_are_never_reused(api: Api, query: str) -> None:
    _, token, _ = await setup(api)
    hits = views(api).hits
    for _ in range(3):
        body = await api.gql(query, token=token)
        assert "errors" not in body, body
    assert views(api).hits == hits


async def test_staff_and_anonymous_answers_are_never_reused(api: Api) -> None:
    member_id, _, key = await setup(api)
    query = "query($id: ID!) { member(id: $id) { balance { available } } }"
    hits = views(api).hits
    for _ in range(3):
        await api.gql(query, {"id": encode_id("Member", member_id)}, token=key)
        await api.gql("{ program { name } }")
    assert views(api).hits == hits


async def test_reused_answers_count_in_the_metrics_like_computed_ones(api: Api) -> None:
    _, token, _ = await setup(api)
    counted = 'laurel_graphql_operations_total{operation="Dashboard",outcome="ok",type="query"}'

    async def count() -> float:
        metrics = (await api.client.get("/metrics")).text
        lines = [line for line in metrics.splitlines() if line.startswith(counted)]
        return float(lines[0].split()[-1]) if lines else 0.0

    await dashboard(api, token)
    hits = views(api).hits
    await dashboard(api, token)
    assert views(api).hits == hits + 1
    assert await count() == 2.0


async def test_kept_answers_are_bounded_by_size_oldest_dropped_first(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, token, _ = await setup(api)
    one = len(orjson.dumps({"me": await dashboard(api, token)}))  # each answer's size alike
    monkeypatch.setattr(member_views, "MAX_BYTES", one * 2)  # room for two such answers
    kept = views(api)
    kept._rung(None)  # start empty
    tokens = [token]
    async with api.sessions.begin() as session:
        for name in ("bob", "cy"):
            other = await members.enroll(
                session, email=f"{name}@example.com", display_name=name, now=api.clock.now()
            )
            tokens.append(api.member_token(other.id))

    for each in tokens:
        await dashboard(api, each)

    assert kept.bytes <= member_views.MAX_BYTES
    hits = kept.hits
    await dashboard(api, tokens[2])  # the newest is kept...
    assert kept.hits == hits + 1
    await dashboard(api, tokens[0])  # ...the oldest was dropped for it
    assert kept.hits == hits + 1


async def test_an_answer_too_large_to_be_worth_keeping_is_not_kept(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, token, _ = await setup(api)
    monkeypatch.setattr(member_views, "MAX_ANSWER_BYTES", 16)
    kept = views(api)
    kept._rung(None)
    await dashboard(api, token)
    hits = kept.hits
    await dashboard(api, token)
    assert (kept.hits, kept.bytes) == (hits, 0)


async def test_hits_and_misses_are_in_the_metrics(api: Api) -> None:
    """The bench reads these before and after a run to print its hit rate."""
    _, token, _ = await setup(api)

    async def read() -> dict[str, float]:
        text = (await api.client.get("/metrics")).text
        found = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name.startswith("laurel_member_views_"):
                found[name] = float(value)
        return found

    before = await read()
    await dashboard(api, token)  # a miss, then kept
    await dashboard(api, token)  # a hit
    await api.gql("{ program { name } }", token=token)  # not a member view: neither
    after = await read()
    assert after["laurel_member_views_hits_total"] - before["laurel_member_views_hits_total"] == 1
    misses = "laurel_member_views_misses_total"
    assert after[misses] - before[misses] == 1
    assert after["laurel_member_views_entries"] >= 1


async def test_members_that_rang_are_remembered_boundedly_and_forgetting_keeps_answers_right(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    member_id, token, key = await setup(api)
    monkeypatch.setattr(member_views, "MAX_GENERATIONS", 3)
    kept = views(api)
    await dashboard(api, token)  # kept
    for other in range(1_000, 1_010):  # other members' events: more than it remembers
        kept._rung([other])
    assert len(kept._generations) <= 3

    await buy(api, key, member_id, "o-1")  # its own event still ends its kept answer
    assert (await dashboard(api, token))["balance"] == {"available": 20, "pending": 0}
