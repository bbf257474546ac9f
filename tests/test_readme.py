"""The README's first queries work on the demo program, as a newcomer would paste them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from api.cli import ADMIN_QUERY, FIRST_QUERY
from models import KeyRole
from services.demo import load_demo
from services.demo_rewards import PARTNER_SLUG
from tests.conftest import Api

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_the_printed_first_query_is_the_readmes() -> None:
    block = re.search(r"```graphql\n(query FirstLook.*?)\n```", README, re.S)
    assert block is not None
    assert block.group(1) == FIRST_QUERY


async def test_first_look_redeem_and_partner_view_work_on_the_demo(api: Api) -> None:
    summary = await load_demo(api.sessions, api.clock)
    token = api.member_token(summary.featured_member_id)

    first = await api.gql(FIRST_QUERY, token=token)
    assert "errors" not in first, first
    me = first["data"]["me"]  # type: ignore[index]
    assert me["transactions"]["totalCount"] > 0
    recommended = me["recommendedRewards"]
    assert recommended, "the featured member has rewards within reach"

    redeem = re.search(r"`(mutation \{ redeemReward.*?)`", README)
    assert redeem is not None
    affordable = [r for r in recommended if r["cost"] <= me["balance"]["available"]]
    document = redeem.group(1).replace("<id>", affordable[0]["id"])
    redeemed = await api.gql(document, token=token)
    assert "errors" not in redeemed, redeemed
    payload = redeemed["data"]["redeemReward"]  # type: ignore[index]
    assert payload["userErrors"] == [] and payload["redemption"]["code"]

    partner_query = re.search(r"`(\{ partner \{.*?)`", README)
    assert partner_query is not None
    partner_key = await api.key(KeyRole.PARTNER, partner_slug=PARTNER_SLUG)
    seen = await api.gql(partner_query.group(1), token=partner_key)
    assert "errors" not in seen, seen
    partner = seen["data"]["partner"]  # type: ignore[index]
    assert partner["rewards"]["totalCount"] == 2
    assert partner["settlement"]["redemptions"] > 0


def test_the_printed_admin_query_is_the_readmes() -> None:
    block = re.search(r"```graphql\n(query RunTheProgram.*?)\n```", README, re.S)
    assert block is not None
    assert block.group(1) == ADMIN_QUERY


async def test_the_admin_query_shows_the_demos_program_being_run(api: Api) -> None:
    await load_demo(api.sessions, api.clock)
    admin = await api.key(KeyRole.ADMIN)
    body = await api.gql(ADMIN_QUERY, token=admin)
    assert "errors" not in body, body
    data = body["data"]
    assert data["members"]["totalCount"] > 0  # type: ignore[index]
    suspended = data["suspended"]["edges"]  # type: ignore[index]
    assert len(suspended) == 1
    trail = [edge["node"] for edge in data["auditLog"]["edges"]]  # type: ignore[index]
    assert {"setMemberStatus", "updateMember"} <= {entry["operation"] for entry in trail}
    assert any(edge["node"]["lastUsedAt"] for edge in data["apiKeys"]["edges"])  # type: ignore[index]


def _block(start: str) -> str:
    found = re.search(r"```graphql\n(" + re.escape(start) + r".*?)\n```", README, re.S)
    assert found is not None, start
    return found.group(1)


async def test_the_targeting_tour_works_on_the_demo(api: Api) -> None:
    await load_demo(api.sessions, api.clock)
    admin = await api.key(KeyRole.ADMIN)
    tour = await api.gql(_block("query TargetingTour"), token=admin)
    assert "errors" not in tour, tour
    data: dict[str, Any] = tour["data"]  # type: ignore[assignment]
    [lovers] = [s for s in data["segments"] if s["name"] == "Coffee lovers"]
    assert lovers["memberCount"] > 0
    [promotion] = [p for p in data["promotions"] if p["segment"]]
    assert promotion["segment"] == {"name": "Coffee lovers"}
    assert promotion["experiment"] == {"controlShare": 0.2}
    assert {r["name"] for r in data["earningRules"]} == {
        "Beans earn double",
        "No points on gift cards",
    }
    assert "survey_completed" in {t["key"] for t in data["activityTypes"]}

    # A coffee lover in the treatment group, as the README says to find one.
    members = await api.gql(
        """query($id: ID!, $promotion: ID!) { segment(id: $id) { members(first: 50) {
          edges { node { id experimentGroup(promotionId: $promotion) } } } } }""",
        {"id": lovers["id"], "promotion": promotion["id"]},
        token=admin,
    )
    edges = members["data"]["segment"]["members"]["edges"]  # type: ignore[index]
    treated = [e["node"]["id"] for e in edges if e["node"]["experimentGroup"] == "TREATMENT"]
    assert treated, edges
    purchase = _block("mutation {\n  recordPurchase").replace("<id>", treated[0])
    bought = await api.gql(purchase, token=admin)
    assert "errors" not in bought, bought
    payload = bought["data"]["recordPurchase"]  # type: ignore[index]
    assert payload["userErrors"] == []
    labels = " | ".join(c["label"] for c in payload["transaction"]["breakdown"])
    assert "Beans earn double" in labels and "Coffee lovers week" in labels, labels
    assert "No points on gift cards" in labels  # named, for 0 points

    results = await api.gql(_block("query Results"), {"id": promotion["id"]}, token=admin)
    assert "errors" not in results, results
    report = results["data"]["promotionResults"]  # type: ignore[index]
    assert sum(g["members"] for g in report["groups"]) == lovers["memberCount"]
    assert report["method"]
