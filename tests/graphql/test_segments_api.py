"""Segments over HTTP: created and changed by admins with their rule checked, counted and
listed, a member's own segments, and deletion refused while another segment uses it."""

from __future__ import annotations

from typing import Any, cast

from models import KeyRole
from tests.conftest import Api
from tests.graphql.test_mutations import PURCHASE, enroll, graphql_error_code, ok, pk, user_error

RULE = """all { birthdayMonth availablePoints { min max } tierIn { name }
    purchaseCount { lastDays min max } attribute { key equals } inSegment { name } }
    any { birthdayMonth joinedAfter }"""
SEGMENT = f"id name createdAt memberCount rule {{ {RULE} }}"
CREATE = f"""mutation($input: CreateSegmentInput!) {{ createSegment(input: $input) {{
    segment {{ {SEGMENT} }} userErrors {{ field code message }} }} }}"""
UPDATE = f"""mutation($input: UpdateSegmentInput!) {{ updateSegment(input: $input) {{
    segment {{ {SEGMENT} }} userErrors {{ field code message }} }} }}"""
DELETE = """mutation($input: DeleteSegmentInput!) { deleteSegment(input: $input) {
    deletedSegmentId usedBy { id ... on Segment { name } } userErrors { field code message } } }"""
MEMBERS = """query($id: ID!, $first: Int, $after: String) { segment(id: $id) { memberCount
    members(first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { email } } } } }"""


async def gql(
    api: Api, document: str, variables: dict[str, Any] | None = None, *, token: str
) -> dict[str, Any]:
    return cast(dict[str, Any], await api.gql(document, variables, token=token))


async def create(api: Api, admin: str, name: str, rule: dict[str, Any]) -> dict[str, Any]:
    body = await gql(api, CREATE, {"input": {"name": name, "rule": rule}}, token=admin)
    segment: dict[str, Any] = ok(body, "createSegment")["segment"]
    return segment


async def test_admins_create_count_list_and_change_segments(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    members = [await enroll(api, service, f"m{n}@example.com") for n in range(5)]
    for n, member in enumerate(members[:3]):
        order = {"memberId": member["id"], "orderId": f"o-{n}", "amount": 10 * (n + 1)}
        ok(await gql(api, PURCHASE, {"input": order}, token=service), "recordPurchase")

    buyers = await create(
        api, admin, "Buyers", {"all": [{"purchaseCount": {"lastDays": 30, "min": 1}}]}
    )
    assert buyers["memberCount"] == 3
    assert buyers["rule"]["all"][0]["purchaseCount"] == {"lastDays": 30, "min": 1, "max": None}
    assert buyers["rule"]["all"][0]["birthdayMonth"] is None and buyers["rule"]["any"] is None
    big = await create(
        api,
        admin,
        "Big buyers",
        {"all": [{"inSegment": buyers["id"]}, {"availablePoints": {"min": 20}}]},
    )
    assert big["memberCount"] == 2
    assert big["rule"]["all"][0]["inSegment"] == {"name": "Buyers"}

    first = (await gql(api, MEMBERS, {"id": buyers["id"], "first": 2}, token=admin))["data"]
    page = first["segment"]["members"]
    assert page["totalCount"] == 3 and page["pageInfo"]["hasNextPage"]
    after = page["pageInfo"]["endCursor"]
    rest = await gql(api, MEMBERS, {"id": buyers["id"], "first": 2, "after": after}, token=admin)
    emails = [
        e["node"]["email"] for e in page["edges"] + rest["data"]["segment"]["members"]["edges"]
    ]
    assert emails == ["m0@example.com", "m1@example.com", "m2@example.com"]  # by join date

    renamed = ok(
        await gql(api, UPDATE, {"input": {"id": big["id"], "name": "Bigger buyers"}}, token=admin),
        "updateSegment",
    )["segment"]
    assert renamed["name"] == "Bigger buyers" and renamed["rule"] == big["rule"]
    listed = await gql(api, "{ segments { name } }", token=admin)
    assert [s["name"] for s in listed["data"]["segments"]] == ["Bigger buyers", "Buyers"]

    token = api.member_token(pk(members[2]["id"]))
    mine = await gql(api, "{ me { segments { name } } }", token=token)
    assert [s["name"] for s in mine["data"]["me"]["segments"]] == ["Bigger buyers", "Buyers"]
    # ... but never who else is in them.
    for field in ("memberCount", "members { edges { node { email } } }"):
        peek = await gql(api, f"{{ me {{ segments {{ {field} }} }} }}", token=token)
        assert graphql_error_code(peek) == "FORBIDDEN", peek
        assert "m0@example.com" not in str(peek)
    other = api.member_token(pk(members[4]["id"]))
    assert (await gql(api, "{ me { segments { name } } }", token=other))["data"]["me"] == {
        "segments": []
    }
    lookup = "query($id: ID!) { member(id: $id) { segments { name } } }"
    body = await gql(api, lookup, {"id": members[2]["id"]}, token=service)
    assert graphql_error_code(body) == "FORBIDDEN"
    assert graphql_error_code(await gql(api, "{ segments { name } }", token=service)) == "FORBIDDEN"


async def test_bad_rules_are_refused_with_the_field_and_nothing_is_written(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    body = await gql(
        api,
        CREATE,
        {"input": {"name": "Bad", "rule": {"all": [{"birthdayMonth": 2}], "any": []}}},
        token=admin,
    )
    assert user_error(body, "createSegment") == {
        "field": ["input", "rule", "any"],
        "code": "INVALID",
        "message": "a group needs at least one condition",
    }
    body = await gql(
        api,
        CREATE,
        {
            "input": {
                "name": "Bad",
                "rule": {"all": [{"birthdayMonth": 2, "joinedAfter": "2026-01-01T00:00:00Z"}]},
            }
        },
        token=admin,
    )
    assert user_error(body, "createSegment")["field"] == ["input", "rule", "all", "0"]
    assert (await gql(api, "{ segments { id } }", token=admin))["data"]["segments"] == []


async def test_a_segment_in_use_is_not_deleted_and_says_by_whom(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    inner = await create(api, admin, "February", {"all": [{"birthdayMonth": 2}]})
    outer = await create(api, admin, "Outer", {"any": [{"inSegment": inner["id"]}]})
    body = await gql(api, DELETE, {"input": {"id": inner["id"]}}, token=admin)
    payload = body["data"]["deleteSegment"]
    assert payload["deletedSegmentId"] is None
    assert payload["usedBy"] == [{"id": outer["id"], "name": "Outer"}]
    assert payload["userErrors"][0]["code"] == "IN_USE"
    ok(await gql(api, DELETE, {"input": {"id": outer["id"]}}, token=admin), "deleteSegment")
    done = ok(await gql(api, DELETE, {"input": {"id": inner["id"]}}, token=admin), "deleteSegment")
    assert done["deletedSegmentId"] == inner["id"]
    gone = (await gql(api, DELETE, {"input": {"id": inner["id"]}}, token=admin))["data"]
    assert gone["deleteSegment"]["usedBy"] == []
    assert [e["code"] for e in gone["deleteSegment"]["userErrors"]] == ["NOT_FOUND"]
    trail = await gql(
        api,
        "query($t: ID) { auditLog(targetId: $t) { edges { node { operation } } } }",
        {"t": inner["id"]},
        token=admin,
    )
    assert [e["node"]["operation"] for e in trail["data"]["auditLog"]["edges"]] == [
        "deleteSegment",
        "createSegment",
    ]
