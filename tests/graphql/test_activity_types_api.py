"""Activity types over HTTP: created and changed by admins with typed userErrors, listed with
the built-ins for admins and services, paid by recordActivity (kind CUSTOM and a key), named
on their transactions, kept from a segment's deletion, and never paid past a cap by concurrent
requests."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from sqlalchemy import func, select

import models
from models import KeyRole
from tests.conftest import Api
from tests.graphql.test_mutations import (
    UPDATE_PROGRAM,
    balance,
    enroll,
    graphql_error_code,
    ok,
    pk,
    user_error,
    written,
)
from tests.graphql.test_segments_api import DELETE as DELETE_SEGMENT
from tests.graphql.test_segments_api import create as create_segment

TYPE = """id key name points caps { perDay perWeek perMonth lifetime } segment { name }
    tierMultiplierApplies builtIn active"""
CREATE = f"""mutation($input: CreateActivityTypeInput!) {{ createActivityType(input: $input) {{
    activityType {{ {TYPE} }} userErrors {{ field code message }} }} }}"""
UPDATE = f"""mutation($input: UpdateActivityTypeInput!) {{ updateActivityType(input: $input) {{
    activityType {{ {TYPE} }} userErrors {{ field code message }} }} }}"""
LIST = f"{{ activityTypes {{ {TYPE} }} }}"
RECORD = """mutation($input: RecordActivityInput!) { recordActivity(input: $input) {
    transaction { id kind points description breakdown { label points }
    activityType { key name } } member { balance { available } }
    userErrors { field code message } } }"""
TRANSACTIONS = """query($id: ID!) { member(id: $id) { transactions(first: 10) {
    edges { node { kind activityType { key builtIn } } } } } }"""


async def gql(
    api: Api, document: str, variables: dict[str, Any] | None = None, *, token: str
) -> dict[str, Any]:
    return cast(dict[str, Any], await api.gql(document, variables, token=token))


async def create(api: Api, admin: str, **input: Any) -> dict[str, Any]:
    given = {"key": "survey_completed", "name": "Survey completed", "points": 10, **input}
    body = await gql(api, CREATE, {"input": given}, token=admin)
    created: dict[str, Any] = ok(body, "createActivityType")["activityType"]
    return created


def activity(member_id: str, reference: str, key: str | None, kind: str = "CUSTOM") -> Any:
    return {
        "input": {"memberId": member_id, "kind": kind, "reference": reference, "activityType": key}
    }


async def test_admins_create_list_and_change_types_with_the_built_ins_listed_first(
    api: Api,
) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    update = {"input": {"reviewPoints": 25, "socialSharePoints": 5}}
    ok(await gql(api, UPDATE_PROGRAM, update, token=admin), "updateProgram")
    coffee = await create_segment(
        api, admin, "Coffee lovers", {"all": [{"availablePoints": {"min": 1}}]}
    )

    survey = await create(api, admin, caps={"perDay": 1, "lifetime": 3}, segmentId=coffee["id"])

    assert survey["caps"] == {"perDay": 1, "perWeek": None, "perMonth": None, "lifetime": 3}
    assert survey["segment"] == {"name": "Coffee lovers"}
    assert (survey["tierMultiplierApplies"], survey["builtIn"], survey["active"]) == (
        False,
        False,
        True,
    )
    listed = (await gql(api, LIST, token=service))["data"]["activityTypes"]
    assert [(t["key"], t["points"], t["builtIn"]) for t in listed] == [
        ("review", 25, True),
        ("social_share", 5, True),
        ("survey_completed", 10, False),
    ]
    assert listed[0]["caps"]["perDay"] == 10  # the program's dailyActivityCap

    # Only the fields given change; an explicit null clears a cap and the segment.
    changed = ok(
        await gql(
            api,
            UPDATE,
            {
                "input": {
                    "id": survey["id"],
                    "points": 12,
                    "caps": {"perDay": None, "perWeek": 4},
                    "segmentId": None,
                    "tierMultiplierApplies": True,
                }
            },
            token=admin,
        ),
        "updateActivityType",
    )["activityType"]
    assert changed["caps"] == {"perDay": None, "perWeek": 4, "perMonth": None, "lifetime": 3}
    assert (changed["points"], changed["name"], changed["segment"]) == (
        12,
        "Survey completed",
        None,
    )
    assert changed["tierMultiplierApplies"] is True
    node = await gql(
        api,
        "query($id: ID!) { node(id: $id) { ... on ActivityType { key } } }",
        {"id": survey["id"]},
        token=admin,
    )
    assert node["data"]["node"] == {"key": "survey_completed"}


async def test_bad_types_are_refused_with_the_field_and_nothing_is_written(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    await create(api, admin)
    async with api.sessions() as session:
        before = await session.scalar(select(func.count()).select_from(models.ActivityType))

    cases: list[tuple[dict[str, Any], list[str], str]] = [
        ({"key": "Survey Done"}, ["input", "key"], "INVALID"),
        ({"key": "x" * 65}, ["input", "key"], "INVALID"),
        ({"key": "survey_completed"}, ["input", "key"], "ALREADY_EXISTS"),
        ({"key": "review"}, ["input", "key"], "ALREADY_EXISTS"),
        ({"key": "ok", "points": 0}, ["input", "points"], "INVALID"),
        ({"key": "ok", "name": "  "}, ["input", "name"], "INVALID"),
        ({"key": "ok", "caps": {"perWeek": 0}}, ["input", "caps", "perWeek"], "INVALID"),
        ({"key": "ok", "caps": {"lifetime": -1}}, ["input", "caps", "lifetime"], "INVALID"),
        ({"key": "ok", "segmentId": "U2VnbWVudDo5OTk"}, ["input", "segmentId"], "NOT_FOUND"),
        ({"key": "ok", "segmentId": "TWVtYmVyOjE"}, ["input", "segmentId"], "INVALID"),
    ]
    for given, field, code in cases:
        input = {"key": "survey_completed", "name": "Survey", "points": 10, **given}
        error = user_error(
            await gql(api, CREATE, {"input": input}, token=admin), "createActivityType"
        )
        assert (error["field"], error["code"]) == (field, code), given

    listed = (await gql(api, LIST, token=admin))["data"]["activityTypes"]
    review = next(t for t in listed if t["key"] == "review")
    body = await gql(api, UPDATE, {"input": {"id": review["id"], "points": 3}}, token=admin)
    assert user_error(body, "updateActivityType")["field"] == ["input", "id"]
    survey = next(t for t in listed if t["key"] == "survey_completed")
    body = await gql(api, UPDATE, {"input": {"id": survey["id"], "points": -5}}, token=admin)
    assert user_error(body, "updateActivityType")["field"] == ["input", "points"]
    async with api.sessions() as session:
        after = await session.scalar(select(func.count()).select_from(models.ActivityType))
    assert after == before


async def test_only_admins_write_types_and_members_do_not_read_them(api: Api) -> None:
    service = await api.key(KeyRole.SERVICE)
    ann = await enroll(api, service, "ann@example.com")
    body = await gql(api, CREATE, {"input": {"key": "k", "name": "K", "points": 1}}, token=service)
    assert graphql_error_code(body) == "FORBIDDEN"
    token = api.member_token(pk(ann["id"]))
    assert graphql_error_code(await gql(api, LIST, token=token)) == "FORBIDDEN"


async def test_record_activity_pays_a_custom_type_and_names_it_on_its_transaction(
    api: Api,
) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    update = {"input": {"reviewPoints": 7}}
    ok(await gql(api, UPDATE_PROGRAM, update, token=admin), "updateProgram")
    await create(api, admin, caps={"perDay": 1})
    ann = await enroll(api, service, "ann@example.com")

    paid = ok(
        await gql(api, RECORD, activity(ann["id"], "s-1", "survey_completed"), token=service),
        "recordActivity",
    )
    review = ok(
        await gql(api, RECORD, activity(ann["id"], "r-1", None, "REVIEW"), token=service),
        "recordActivity",
    )

    assert paid["transaction"]["kind"] == "ACTIVITY"
    assert paid["transaction"]["activityType"] == {
        "key": "survey_completed",
        "name": "Survey completed",
    }
    assert paid["transaction"]["breakdown"] == [{"label": "Survey completed", "points": 10}]
    assert review["transaction"]["activityType"] == {"key": "review", "name": "Review"}
    assert review["member"]["balance"]["available"] == 17
    listed = await gql(api, TRANSACTIONS, {"id": ann["id"]}, token=service)
    nodes = [e["node"] for e in listed["data"]["member"]["transactions"]["edges"]]
    assert {(n["kind"], n["activityType"]["key"]) for n in nodes if n["activityType"]} == {
        ("ACTIVITY", "survey_completed"),
        ("REVIEW", "review"),
    }
    for node in nodes:
        assert (node["activityType"] is not None) == (node["kind"] in ("ACTIVITY", "REVIEW"))

    before = await written(api)
    capped = await gql(api, RECORD, activity(ann["id"], "s-2", "survey_completed"), token=service)
    assert user_error(capped, "recordActivity")["code"] == "LIMIT_REACHED"
    body = await gql(api, RECORD, activity(ann["id"], "s-2", None), token=service)
    assert user_error(body, "recordActivity")["field"] == ["input", "activityType"]
    body = await gql(api, RECORD, activity(ann["id"], "s-2", "nope"), token=service)
    assert user_error(body, "recordActivity")["code"] == "NOT_FOUND"
    assert await written(api) == before


async def test_a_segment_an_activity_type_uses_is_not_deleted(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    coffee = await create_segment(
        api, admin, "Coffee lovers", {"all": [{"availablePoints": {"min": 1}}]}
    )
    await create(api, admin, segmentId=coffee["id"])
    document = DELETE_SEGMENT.replace("name } }", "name } ... on ActivityType { key } }")

    body = await gql(api, document, {"input": {"id": coffee["id"]}}, token=admin)

    payload = body["data"]["deleteSegment"]
    assert payload["userErrors"][0]["code"] == "IN_USE"
    assert "activity type 'Survey completed'" in payload["userErrors"][0]["message"]
    assert payload["usedBy"][0]["key"] == "survey_completed"


async def test_twenty_concurrent_awards_never_pay_past_a_cap(pg_api: Api) -> None:
    admin, service = await pg_api.key(KeyRole.ADMIN), await pg_api.key(KeyRole.SERVICE)
    await create(pg_api, admin, caps={"perDay": 3})
    ann = await enroll(pg_api, service, "ann@example.com")

    bodies = await asyncio.gather(
        *(
            gql(pg_api, RECORD, activity(ann["id"], f"s-{n}", "survey_completed"), token=service)
            for n in range(20)
        )
    )

    payloads = [body["data"]["recordActivity"] for body in bodies]
    paid = [p for p in payloads if p["transaction"] is not None]
    refused = [p["userErrors"][0]["code"] for p in payloads if p["transaction"] is None]
    assert (len(paid), refused) == (3, ["LIMIT_REACHED"] * 17)
    assert (await balance(pg_api, service, ann["id"]))["balance"]["available"] == 30
    async with pg_api.sessions() as session:
        kinds = select(func.count()).where(models.LedgerEntry.kind == models.EntryKind.ACTIVITY)
        assert await session.scalar(kinds) == 3


async def test_a_member_sees_the_type_it_was_paid_but_not_its_segment(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    ann = await enroll(api, service, "ann@example.com")
    everyone = await create_segment(
        api, admin, "Everyone", {"all": [{"availablePoints": {"min": 0}}]}
    )
    await create(api, admin, segmentId=everyone["id"])
    paid = ok(
        await gql(api, RECORD, activity(ann["id"], "s-1", "survey_completed"), token=service),
        "recordActivity",
    )
    document = """query($id: ID!) { node(id: $id) { ... on PointsTransaction {
        activityType { key segment { name } } } } }"""
    variables = {"id": paid["transaction"]["id"]}

    as_member = await gql(api, document, variables, token=api.member_token(pk(ann["id"])))
    as_service = await gql(api, document, variables, token=service)

    assert as_member["data"]["node"]["activityType"] == {"key": "survey_completed", "segment": None}
    assert as_service["data"]["node"]["activityType"]["segment"]["name"] == "Everyone"
    # Who is in it stays with admins (Segment.members), whatever path leads to the segment.
    members = document.replace("segment { name }", "segment { name members { totalCount } }")
    peek = await gql(api, members, variables, token=service)
    assert peek["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert peek["errors"][0]["path"][-1] == "members"
