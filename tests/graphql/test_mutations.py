"""The in-scope mutations over HTTP: results, `userErrors` codes, and nothing written on refusal."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

import models
from models import KeyRole
from schema.ids import decode_id, encode_id
from services.clock import ManualClock
from tests.conftest import Api

# -- documents ----------------------------------------------------------------------------

TRANSACTION = "id kind points status description reference breakdown { label points }"
MEMBER = "id email balance { available pending lifetimeEarned } tier { name }"

ENROLL = """mutation($input: EnrollInput!) { enroll(input: $input) {
    member { id email displayName externalId referralCode balance { available } }
    token userErrors { field code message } } }"""


def ledger_mutation(field: str, input_type: str) -> str:
    """A points-moving mutation returning its entry, the member after it, and userErrors."""
    return f"""mutation($input: {input_type}!) {{ {field}(input: $input) {{
        transaction {{ {TRANSACTION} }} member {{ {MEMBER} }}
        userErrors {{ field code message }} }} }}"""


PURCHASE = ledger_mutation("recordPurchase", "RecordPurchaseInput")
REFUND = ledger_mutation("refundPurchase", "RefundPurchaseInput")
ACTIVITY = ledger_mutation("recordActivity", "RecordActivityInput")
ADJUST = ledger_mutation("adjustPoints", "AdjustPointsInput")
PROGRAM_FIELDS = """name currency pointsPerCurrencyUnit pointValue pendingDays expiryDays
    signupBonus referralBonus reviewPoints socialSharePoints birthdayPoints tierWindowDays"""
UPDATE_PROGRAM = f"""mutation($input: UpdateProgramInput!) {{ updateProgram(input: $input) {{
    program {{ {PROGRAM_FIELDS} }} userErrors {{ field code message }} }} }}"""
CREATE_TIER = """mutation($input: CreateTierInput!) { createTier(input: $input) {
    tier { id name rank threshold multiplier benefits } userErrors { field code message } } }"""
CREATE_PROMOTION = """mutation($input: CreatePromotionInput!) { createPromotion(input: $input) {
    promotion { id name multiplier startsAt endsAt } userErrors { field code message } } }"""
MEMBER_BY_ID = f"""query($id: ID!) {{ member(id: $id) {{ {MEMBER}
    tierProgress {{ current {{ name }} next {{ name }} qualifyingPoints pointsToNext }} }} }}"""
TRANSACTIONS = """query($id: ID!, $first: Int) { member(id: $id) {
    transactions(first: $first) { totalCount edges { node { id points } } } } }"""
PREVIEW = """query($amount: Float!, $memberId: ID) {
    previewPurchase(amount: $amount, memberId: $memberId) { points breakdown { label points } } }"""


# -- helpers ------------------------------------------------------------------------------


def ok(body: dict[str, Any], field: str) -> dict[str, Any]:
    """The payload of a mutation that succeeded: no GraphQL errors, no userErrors."""
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"][field]
    assert payload.get("userErrors", []) == [], payload
    return payload


def user_error(body: dict[str, Any], field: str) -> dict[str, Any]:
    """The one userError of a refused mutation, whose objects are then all null."""
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"][field]
    assert len(payload["userErrors"]) == 1, payload
    for name, value in payload.items():
        if name != "userErrors":
            assert value is None, payload
    error: dict[str, Any] = payload["userErrors"][0]
    return error


def graphql_error_code(body: dict[str, Any]) -> str:
    errors = body.get("errors")
    assert errors, body
    return str(errors[0]["extensions"]["code"])


def pk(member_id: str) -> int:
    decoded = decode_id(member_id)
    assert decoded is not None and decoded[0] == "Member", member_id
    return decoded[1]


def breakdown_total(transaction: dict[str, Any]) -> int:
    return sum(component["points"] for component in transaction["breakdown"])


async def written(api: Api) -> tuple[int, ...]:
    """Row counts of everything a mutation may write."""
    async with api.sessions() as session:
        return tuple(
            [
                int(await session.scalar(select(func.count()).select_from(table)) or 0)
                for table in (
                    models.Member,
                    models.LedgerEntry,
                    models.Purchase,
                    models.Refund,
                    models.IdempotencyRecord,
                    models.Tier,
                    models.Promotion,
                )
            ]
        )


async def enroll(api: Api, key: str, email: str, **extra: object) -> dict[str, Any]:
    body = await api.gql(
        ENROLL, {"input": {"email": email, "displayName": email.split("@")[0], **extra}}, token=key
    )
    member: dict[str, Any] = ok(body, "enroll")["member"]
    return member


async def purchase(api: Api, key: str, **input: object) -> dict[str, Any]:
    return await api.gql(PURCHASE, {"input": input}, token=key)


async def balance(api: Api, key: str, member_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await api.gql(MEMBER_BY_ID, {"id": member_id}, token=key)
    assert "errors" not in body, body
    member: dict[str, Any] = body["data"]["member"]
    return member


async def update_program(api: Api, admin: str, **settings: object) -> dict[str, Any]:
    program: dict[str, Any] = ok(
        await api.gql(UPDATE_PROGRAM, {"input": settings}, token=admin), "updateProgram"
    )["program"]
    return program


# -- enroll -------------------------------------------------------------------------------


async def test_given_a_messy_email_when_enrolling_then_it_is_stored_normalised(api: Api) -> None:
    service = await api.key(KeyRole.SERVICE)

    member = await enroll(api, service, "  Ann.Lee@Example.COM ", externalId="crm-1")

    assert member["email"] == "ann.lee@example.com"
    assert member["externalId"] == "crm-1"
    assert len(member["referralCode"]) >= 6


@pytest.mark.parametrize(
    ("second", "field"),
    [
        ({"email": "ANN@example.com", "externalId": "crm-2"}, "email"),
        ({"email": "other@example.com", "externalId": "crm-1"}, "externalId"),
    ],
    ids=["same-email-other-case", "same-external-id"],
)
async def test_given_a_member_when_enrolling_the_same_email_or_external_id_then_already_exists(
    api: Api, second: dict[str, str], field: str
) -> None:
    service = await api.key(KeyRole.SERVICE)
    await enroll(api, service, "ann@example.com", externalId="crm-1")
    before = await written(api)

    body = await api.gql(ENROLL, {"input": {**second, "displayName": "Twin"}}, token=service)

    error = user_error(body, "enroll")
    assert error["code"] == "ALREADY_EXISTS"
    assert error["field"] == ["input", field]
    assert await written(api) == before


async def test_given_an_unknown_referral_code_when_enrolling_then_invalid_and_nothing_written(
    api: Api,
) -> None:
    service = await api.key(KeyRole.SERVICE)
    before = await written(api)

    body = await api.gql(
        ENROLL,
        {"input": {"email": "bob@example.com", "displayName": "Bob", "referralCode": "NOPE2345"}},
        token=service,
    )

    error = user_error(body, "enroll")
    assert (error["code"], error["field"]) == ("INVALID", ["input", "referralCode"])
    assert await written(api) == before


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "", "   ", "x" * 300 + "@example.com"])
async def test_given_a_bad_email_when_enrolling_then_invalid_and_nothing_written(
    pg_api: Api, email: str
) -> None:
    before = await written(pg_api)

    body = await pg_api.gql(ENROLL, {"input": {"email": email, "displayName": "Bad"}})

    error = user_error(body, "enroll")
    assert (error["code"], error["field"]) == ("INVALID", ["input", "email"])
    assert await written(pg_api) == before


async def test_given_a_referral_code_when_the_referred_member_first_buys_then_both_earn_the_bonus(
    api: Api,
) -> None:
    service, admin = await api.key(KeyRole.SERVICE), await api.key(KeyRole.ADMIN)
    await update_program(api, admin, referralBonus=50)
    ann = await enroll(api, service, "ann@example.com")
    bob = await enroll(api, service, "bob@example.com", referralCode=ann["referralCode"].lower())

    ok(await purchase(api, service, memberId=bob["id"], orderId="o-1", amount=10), "recordPurchase")

    assert (await balance(api, service, ann["id"]))["balance"]["available"] == 50
    assert (await balance(api, service, bob["id"]))["balance"]["available"] == 60


# -- recordPurchase -----------------------------------------------------------------------


async def test_given_a_member_when_a_purchase_is_recorded_by_member_id_then_points_are_credited(
    api: Api,
) -> None:
    service = await api.key(KeyRole.SERVICE)
    ann = await enroll(api, service, "ann@example.com")

    payload = ok(
        await purchase(api, service, memberId=ann["id"], orderId="order-1", amount=42.75),
        "recordPurchase",
    )

    transaction = payload["transaction"]
    assert transaction["kind"] == "PURCHASE"
    assert transaction["points"] == 42
    assert transaction["status"] == "POSTED"
    assert transaction["reference"] == "order-1"
    assert breakdown_total(transaction) == transaction["points"]
    assert payload["member"]["id"] == ann["id"]
    assert payload["member"]["balance"]["available"] == 42
    assert (await balance(api, service, ann["id"]))["balance"]["available"] == 42


async def test_given_a_member_when_a_purchase_is_recorded_by_external_id_then_points_are_credited(
    api: Api,
) -> None:
    service, admin = await api.key(KeyRole.SERVICE), await api.key(KeyRole.ADMIN)
    await update_program(api, admin, pointsPerCurrencyUnit=2.5)
    ann = await enroll(api, service, "ann@example.com", externalId="crm-ann")

    payload = ok(
        await purchase(api, service, externalId="crm-ann", orderId="order-1", amount=10.1),
        "recordPurchase",
    )

    transaction = payload["transaction"]
    assert transaction["points"] == 25  # floor(10.10 x 2.5)
    assert breakdown_total(transaction) == 25
    assert payload["member"]["id"] == ann["id"]
    assert (await balance(api, service, ann["id"]))["balance"]["available"] == 25


async def test_same_order_recorded_twenty_times_at_once_credits_once(pg_api: Api) -> None:
    service = await pg_api.key(KeyRole.SERVICE)
    ann = await enroll(pg_api, service, "ann@example.com")
    variables = {"input": {"memberId": ann["id"], "orderId": "order-1", "amount": 99.99}}

    async def record() -> dict[str, Any]:
        response = await pg_api.client.post(
            "/graphql",
            json={
                "query": "mutation($input: RecordPurchaseInput!) { recordPurchase(input: $input)"
                " { transaction { id points } userErrors { code } } }",
                "variables": variables,
            },
            headers={"authorization": f"Bearer {service}"},
        )
        body: dict[str, Any] = response.json()
        return body

    bodies = await asyncio.gather(*(record() for _ in range(20)))

    answers = {json.dumps(body, sort_keys=True) for body in bodies}
    assert len(answers) == 1, answers
    assert ok(bodies[0], "recordPurchase")["transaction"]["points"] == 99
    member = await balance(pg_api, service, ann["id"])
    assert member["balance"]["available"] == 99
    async with pg_api.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(models.Purchase)) == 1
        assert await session.scalar(select(func.count()).select_from(models.LedgerEntry)) == 1


async def test_given_a_recorded_order_when_recorded_again_with_another_amount_then_conflict(
    api: Api,
) -> None:
    service = await api.key(KeyRole.SERVICE)
    ann = await enroll(api, service, "ann@example.com")
    first = ok(
        await purchase(api, service, memberId=ann["id"], orderId="order-1", amount=10),
        "recordPurchase",
    )
    again = ok(
        await purchase(api, service, memberId=ann["id"], orderId="order-1", amount=10),
        "recordPurchase",
    )
    assert again["transaction"] == first["transaction"]
    before = await written(api)

    body = await purchase(api, service, memberId=ann["id"], orderId="order-1", amount=11)

    assert user_error(body, "recordPurchase")["code"] == "IDEMPOTENCY_CONFLICT"
    assert await written(api) == before
    assert (await balance(api, service, ann["id"]))["balance"]["available"] == 10


@pytest.mark.parametrize(
    ("amount", "code"),
    [(-1, "INVALID"), (-0.01, "INVALID"), (1e12, "INVALID"), (1e300, "INVALID")],
)
async def test_given_an_out_of_range_amount_when_recording_then_invalid_and_nothing_written(
    api: Api, amount: float, code: str
) -> None:
    service = await api.key(KeyRole.SERVICE)
    ann = await enroll(api, service, "ann@example.com")
    before = await written(api)

    body = await purchase(api, service, memberId=ann["id"], orderId="order-1", amount=amount)

    error = user_error(body, "recordPurchase")
    assert (error["code"], error["field"]) == (code, ["input", "amount"])
    assert await written(api) == before


@pytest.mark.parametrize(
    "amount",
    ["NaN", "Infinity", "-Infinity", "12", None, True, [1], {"value": 1}],
    ids=repr,
)
async def test_given_an_amount_graphql_cannot_coerce_when_recording_then_bad_user_input(
    pg_api: Api, amount: object
) -> None:
    service = await pg_api.key(KeyRole.SERVICE)
    ann = await enroll(pg_api, service, "ann@example.com")
    before = await written(pg_api)

    body = await purchase(pg_api, service, memberId=ann["id"], orderId="order-1", amount=amount)

    assert graphql_error_code(body) == "BAD_USER_INPUT"
    assert body.get("data") is None
    assert await written(pg_api) == before


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "NaN", '"12"'])
async def test_given_a_non_finite_or_non_numeric_amount_literal_then_refused_and_nothing_written(
    pg_api: Api, literal: str
) -> None:
    service = await pg_api.key(KeyRole.SERVICE)
    ann = await enroll(pg_api, service, "ann@example.com")
    before = await written(pg_api)

    body = await pg_api.gql(
        f"""mutation($id: ID!) {{ recordPurchase(input: {{memberId: $id, orderId: "o",
            amount: {literal}}}) {{ transaction {{ id }} userErrors {{ field code }} }} }}""",
        {"id": ann["id"]},
        token=service,
    )

    if "errors" in body:
        assert graphql_error_code(body) == "BAD_USER_INPUT"
    else:
        assert user_error(body, "recordPurchase")["code"] == "INVALID"
    assert await written(pg_api) == before


async def test_given_a_huge_json_number_as_amount_then_refused_and_nothing_written(
    pg_api: Api,
) -> None:
    service = await pg_api.key(KeyRole.SERVICE)
    ann = await enroll(pg_api, service, "ann@example.com")
    before = await written(pg_api)
    raw = (
        '{"query": "mutation($input: RecordPurchaseInput!) { recordPurchase(input: $input)'
        ' { transaction { id } userErrors { code } } }", "variables": {"input": {"memberId": "'
        + ann["id"]
        + '", "orderId": "o", "amount": 1e400}}}'
    )

    response = await pg_api.client.post(
        "/graphql",
        content=raw,
        headers={"authorization": f"Bearer {service}", "content-type": "application/json"},
    )

    assert response.status_code < 500
    body = response.json()
    if "errors" in body:
        assert graphql_error_code(body) == "BAD_USER_INPUT"
    else:
        assert user_error(body, "recordPurchase")["code"] == "INVALID"
    assert await written(pg_api) == before


async def test_given_ids_of_the_wrong_kind_when_recording_then_invalid_or_not_found(
    api: Api,
) -> None:
    service = await api.key(KeyRole.SERVICE)
    await enroll(api, service, "ann@example.com", externalId="crm-ann")
    tier_id = (await api.gql("{ tiers { id } }"))["data"]["tiers"][0]["id"]  # type: ignore[index]
    before = await written(api)
    cases: list[tuple[dict[str, object], str]] = [
        ({"memberId": "garbage"}, "INVALID"),
        ({"memberId": tier_id}, "INVALID"),
        ({"memberId": encode_id("PointsTransaction", 1)}, "INVALID"),
        ({"memberId": "x" * 5000}, "INVALID"),
        ({"memberId": encode_id("Member", 999_999)}, "NOT_FOUND"),
        ({"externalId": "crm-nobody"}, "NOT_FOUND"),
        ({}, "INVALID"),
        ({"memberId": encode_id("Member", 1), "externalId": "crm-ann"}, "INVALID"),
    ]

    for target, code in cases:
        body = await purchase(api, service, orderId="order-1", amount=10, **target)
        assert user_error(body, "recordPurchase")["code"] == code, target

    assert await written(api) == before


async def test_given_a_member_id_of_the_wrong_graphql_type_then_bad_user_input(pg_api: Api) -> None:
    service = await pg_api.key(KeyRole.SERVICE)
    before = await written(pg_api)

    for member_id in ([1], {"id": 1}, 1.5, True):
        body = await purchase(pg_api, service, memberId=member_id, orderId="order-1", amount=10)
        assert graphql_error_code(body) == "BAD_USER_INPUT", member_id

    assert await written(pg_api) == before


@pytest.mark.parametrize(
    "order_id", ["x" * 10_000, "x" * 201, "", "   "], ids=["10000", "201", "empty", "blank"]
)
async def test_given_an_oversized_or_blank_order_id_when_recording_then_invalid(
    api: Api, order_id: str
) -> None:
    service = await api.key(KeyRole.SERVICE)
    ann = await enroll(api, service, "ann@example.com")
    before = await written(api)

    body = await purchase(api, service, memberId=ann["id"], orderId=order_id, amount=10)

    error = user_error(body, "recordPurchase")
    assert (error["code"], error["field"]) == ("INVALID", ["input", "orderId"])
    assert await written(api) == before


@pytest.mark.parametrize("first", [0, 101, -1])
async def test_given_a_page_size_outside_1_to_100_when_listing_transactions_then_bad_user_input(
    api: Api, first: int
) -> None:
    service = await api.key(KeyRole.SERVICE)
    ann = await enroll(api, service, "ann@example.com")

    body = await api.gql(TRANSACTIONS, {"id": ann["id"], "first": first}, token=service)

    assert graphql_error_code(body) == "BAD_USER_INPUT"


async def test_given_a_page_size_of_1_and_100_when_listing_transactions_then_pages(
    pg_api: Api,
) -> None:
    service = await pg_api.key(KeyRole.SERVICE)
    ann = await enroll(pg_api, service, "ann@example.com")
    for order in ("o-1", "o-2"):
        ok(
            await purchase(pg_api, service, memberId=ann["id"], orderId=order, amount=5),
            "recordPurchase",
        )

    for first, shown in ((1, 1), (100, 2)):
        body = await pg_api.gql(TRANSACTIONS, {"id": ann["id"], "first": first}, token=service)
        transactions = body["data"]["member"]["transactions"]  # type: ignore[index]
        assert len(transactions["edges"]) == shown
        assert transactions["totalCount"] == 2


# -- refundPurchase -----------------------------------------------------------------------


async def test_given_a_purchase_when_refunded_in_part_then_in_full_then_all_its_points_reverse(
    api: Api,
) -> None:
    service = await api.key(KeyRole.SERVICE)
    ann = await enroll(api, service, "ann@example.com")
    ok(
        await purchase(api, service, memberId=ann["id"], orderId="order-1", amount=100),
        "recordPurchase",
    )

    partial = ok(
        await api.gql(
            REFUND,
            {"input": {"orderId": "order-1", "refundId": "r-1", "amount": 25}},
            token=service,
        ),
        "refundPurchase",
    )
    transaction = partial["transaction"]
    assert (transaction["kind"], transaction["points"]) == ("REVERSAL", -25)
    assert breakdown_total(transaction) == -25
    assert partial["member"]["balance"]["available"] == 75

    full = ok(
        await api.gql(REFUND, {"input": {"orderId": "order-1", "refundId": "r-2"}}, token=service),
        "refundPurchase",
    )
    assert full["transaction"]["points"] == -75
    assert breakdown_total(full["transaction"]) == -75
    assert full["member"]["balance"]["available"] == 0

    retried = ok(
        await api.gql(
            REFUND,
            {"input": {"orderId": "order-1", "refundId": "r-1", "amount": 25}},
            token=service,
        ),
        "refundPurchase",
    )
    assert retried["transaction"] == transaction
    assert (await balance(api, service, ann["id"]))["balance"]["available"] == 0


async def test_given_an_unknown_order_when_refunding_then_not_found_and_nothing_written(
    api: Api,
) -> None:
    service = await api.key(KeyRole.SERVICE)
    before = await written(api)

    body = await api.gql(REFUND, {"input": {"orderId": "nope", "refundId": "r-1"}}, token=service)

    assert user_error(body, "refundPurchase")["code"] == "NOT_FOUND"
    assert await written(api) == before


# -- recordActivity -----------------------------------------------------------------------


async def test_given_a_daily_cap_of_two_when_a_third_review_comes_the_same_day_then_limit_reached(
    api: Api, clock: ManualClock
) -> None:
    service, admin = await api.key(KeyRole.SERVICE), await api.key(KeyRole.ADMIN)
    program = ok(
        await api.gql(
            "mutation { updateProgram(input: {dailyActivityCap: 2, reviewPoints: 10}) {"
            " program { reviewPoints dailyActivityCap } userErrors { code } } }",
            token=admin,
        ),
        "updateProgram",
    )["program"]
    assert program == {"reviewPoints": 10, "dailyActivityCap": 2}
    ann = await enroll(api, service, "ann@example.com")

    def review(reference: str) -> dict[str, object]:
        return {"input": {"memberId": ann["id"], "kind": "REVIEW", "reference": reference}}

    first = ok(await api.gql(ACTIVITY, review("review-1"), token=service), "recordActivity")
    assert (first["transaction"]["kind"], first["transaction"]["points"]) == ("REVIEW", 10)
    ok(await api.gql(ACTIVITY, review("review-2"), token=service), "recordActivity")
    # The same review again is a retry, answered with the first result: it uses no allowance.
    again = ok(await api.gql(ACTIVITY, review("review-1"), token=service), "recordActivity")
    assert again["transaction"] == first["transaction"]
    before = await written(api)

    third = await api.gql(ACTIVITY, review("review-3"), token=service)

    assert user_error(third, "recordActivity")["code"] == "LIMIT_REACHED"
    assert await written(api) == before
    assert (await balance(api, service, ann["id"]))["balance"]["available"] == 20

    clock.advance(timedelta(days=1))
    ok(await api.gql(ACTIVITY, review("review-3"), token=service), "recordActivity")
    assert (await balance(api, service, ann["id"]))["balance"]["available"] == 30


# -- adjustPoints -------------------------------------------------------------------------


async def test_given_an_admin_adjustment_then_its_entry_records_the_reason(api: Api) -> None:
    service, admin = await api.key(KeyRole.SERVICE), await api.key(KeyRole.ADMIN)
    ann = await enroll(api, service, "ann@example.com")

    def adjustment(points: int, key: str) -> dict[str, object]:
        return {
            "input": {
                "memberId": ann["id"],
                "points": points,
                "reason": "Goodwill for ticket #123",
                "idempotencyKey": key,
            }
        }

    payload = ok(await api.gql(ADJUST, adjustment(40, "adj-1"), token=admin), "adjustPoints")

    transaction = payload["transaction"]
    assert (transaction["kind"], transaction["points"]) == ("ADJUSTMENT", 40)
    assert "Goodwill for ticket #123" in transaction["description"]
    assert payload["member"]["balance"]["available"] == 40
    listed = await api.gql(TRANSACTIONS, {"id": ann["id"], "first": 5}, token=admin)
    assert listed["data"]["member"]["transactions"]["edges"][0]["node"] == {  # type: ignore[index]
        "id": transaction["id"],
        "points": 40,
    }
    before = await written(api)

    overdraw = await api.gql(ADJUST, adjustment(-41, "adj-2"), token=admin)
    conflict = await api.gql(ADJUST, adjustment(41, "adj-1"), token=admin)
    zero = await api.gql(ADJUST, adjustment(0, "adj-3"), token=admin)

    assert user_error(overdraw, "adjustPoints")["code"] == "INSUFFICIENT_POINTS"
    assert user_error(conflict, "adjustPoints")["code"] == "IDEMPOTENCY_CONFLICT"
    assert user_error(zero, "adjustPoints")["code"] == "INVALID"
    assert await written(api) == before


async def test_given_points_beyond_a_graphql_int_when_adjusting_then_bad_user_input(
    pg_api: Api,
) -> None:
    service, admin = await pg_api.key(KeyRole.SERVICE), await pg_api.key(KeyRole.ADMIN)
    ann = await enroll(pg_api, service, "ann@example.com")
    before = await written(pg_api)

    body = await pg_api.gql(
        ADJUST,
        {
            "input": {
                "memberId": ann["id"],
                "points": 2**31,
                "reason": "typo",
                "idempotencyKey": "adj-1",
            }
        },
        token=admin,
    )

    assert graphql_error_code(body) == "BAD_USER_INPUT"
    assert await written(pg_api) == before


# -- updateProgram ------------------------------------------------------------------------


async def test_given_a_partial_update_then_only_the_given_settings_change(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    original = (await api.gql(f"{{ program {{ {PROGRAM_FIELDS} }} }}"))["data"]["program"]  # type: ignore[index]

    renamed = await update_program(api, admin, name="Club Laurel", expiryDays=365)
    assert renamed == {**original, "name": "Club Laurel", "expiryDays": 365}

    bonus = await update_program(api, admin, signupBonus=25)
    assert bonus == {**renamed, "signupBonus": 25}

    cleared = await update_program(api, admin, expiryDays=None)
    assert cleared == {**bonus, "expiryDays": None}
    assert (await api.gql(f"{{ program {{ {PROGRAM_FIELDS} }} }}"))["data"] == {"program": cleared}


@pytest.mark.parametrize(
    "settings",
    [{"name": None}, {"pendingDays": -1}, {"currency": "EURO"}, {"pointsPerCurrencyUnit": 0}],
    ids=lambda s: next(iter(s)),
)
async def test_given_an_invalid_setting_then_invalid_and_the_program_is_unchanged(
    pg_api: Api, settings: dict[str, object]
) -> None:
    admin = await pg_api.key(KeyRole.ADMIN)
    original = (await pg_api.gql(f"{{ program {{ {PROGRAM_FIELDS} }} }}"))["data"]

    body = await pg_api.gql(UPDATE_PROGRAM, {"input": {"signupBonus": 99, **settings}}, token=admin)

    error = user_error(body, "updateProgram")
    assert (error["code"], error["field"]) == ("INVALID", ["input", next(iter(settings))])
    assert (await pg_api.gql(f"{{ program {{ {PROGRAM_FIELDS} }} }}"))["data"] == original


# -- createTier ---------------------------------------------------------------------------


async def test_given_a_member_above_a_new_tier_threshold_when_the_tier_is_created_it_moves_up(
    api: Api,
) -> None:
    service, admin = await api.key(KeyRole.SERVICE), await api.key(KeyRole.ADMIN)
    ann = await enroll(api, service, "ann@example.com")
    bob = await enroll(api, service, "bob@example.com")
    ok(
        await purchase(api, service, memberId=ann["id"], orderId="o-1", amount=500),
        "recordPurchase",
    )

    gold = ok(
        await api.gql(
            CREATE_TIER,
            {"input": {"name": "Gold", "threshold": 300, "multiplier": 1.5, "benefits": ["Gift"]}},
            token=admin,
        ),
        "createTier",
    )["tier"]

    assert {k: gold[k] for k in ("name", "rank", "threshold", "multiplier", "benefits")} == {
        "name": "Gold",
        "rank": 1,
        "threshold": 300,
        "multiplier": 1.5,
        "benefits": ["Gift"],
    }
    assert (await balance(api, service, ann["id"]))["tier"]["name"] == "Gold"
    assert (await balance(api, service, bob["id"]))["tier"]["name"] == "Member"

    silver = ok(
        await api.gql(CREATE_TIER, {"input": {"name": "Silver", "threshold": 100}}, token=admin),
        "createTier",
    )["tier"]

    assert (silver["rank"], silver["multiplier"], silver["benefits"]) == (1, 1.0, [])
    tiers = (await api.gql("{ tiers { name rank threshold } }"))["data"]["tiers"]  # type: ignore[index]
    assert tiers == [
        {"name": "Member", "rank": 0, "threshold": 0},
        {"name": "Silver", "rank": 1, "threshold": 100},
        {"name": "Gold", "rank": 2, "threshold": 300},
    ]
    progress = (await balance(api, service, bob["id"]))["tierProgress"]
    assert progress == {
        "current": {"name": "Member"},
        "next": {"name": "Silver"},
        "qualifyingPoints": 0,
        "pointsToNext": 100,
    }
    ann_after = await balance(api, service, ann["id"])
    assert ann_after["tier"]["name"] == "Gold"
    assert ann_after["tierProgress"]["next"] is None
    assert ann_after["tierProgress"]["pointsToNext"] is None


@pytest.mark.parametrize(
    ("tier", "code"),
    [
        ({"name": "Gold", "threshold": 500}, "ALREADY_EXISTS"),
        ({"name": "Platinum", "threshold": 300}, "ALREADY_EXISTS"),
        ({"name": "Zero", "threshold": 0}, "INVALID"),
        ({"name": "Neg", "threshold": -5}, "INVALID"),
        ({"name": "Free", "threshold": 900, "multiplier": 0}, "INVALID"),
        ({"name": " ", "threshold": 900}, "INVALID"),
    ],
    ids=["same-name", "same-threshold", "zero", "negative", "zero-multiplier", "blank-name"],
)
async def test_given_a_clashing_or_invalid_tier_then_refused_and_nothing_written(
    pg_api: Api, tier: dict[str, object], code: str
) -> None:
    admin = await pg_api.key(KeyRole.ADMIN)
    ok(
        await pg_api.gql(CREATE_TIER, {"input": {"name": "Gold", "threshold": 300}}, token=admin),
        "createTier",
    )
    before = await written(pg_api)

    body = await pg_api.gql(CREATE_TIER, {"input": tier}, token=admin)

    assert user_error(body, "createTier")["code"] == code
    assert await written(pg_api) == before


# -- createPromotion and previewPurchase ---------------------------------------------------


async def test_given_an_active_promotion_when_buying_then_the_multiplier_applies_with_its_line(
    api: Api, clock: ManualClock
) -> None:
    service, admin = await api.key(KeyRole.SERVICE), await api.key(KeyRole.ADMIN)
    ann = await enroll(api, service, "ann@example.com")
    now = clock.now()

    promotion = ok(
        await api.gql(
            CREATE_PROMOTION,
            {
                "input": {
                    "name": "Double points weekend",
                    "multiplier": 2,
                    "startsAt": (now - timedelta(hours=1)).isoformat(),
                    "endsAt": (now + timedelta(days=2)).isoformat(),
                }
            },
            token=admin,
        ),
        "createPromotion",
    )["promotion"]

    assert (promotion["name"], promotion["multiplier"]) == ("Double points weekend", 2.0)
    listed = (await api.gql("{ promotions { id } }"))["data"]["promotions"]  # type: ignore[index]
    assert listed == [{"id": promotion["id"]}]

    transaction = ok(
        await purchase(api, service, memberId=ann["id"], orderId="o-1", amount=10),
        "recordPurchase",
    )["transaction"]

    assert transaction["points"] == 20
    assert breakdown_total(transaction) == 20
    lines = {line["label"]: line["points"] for line in transaction["breakdown"]}
    promotion_lines = [label for label in lines if "Double points weekend" in label]
    assert len(promotion_lines) == 1
    assert lines[promotion_lines[0]] == 10

    clock.advance(timedelta(days=3))
    later = ok(
        await purchase(api, service, memberId=ann["id"], orderId="o-2", amount=10),
        "recordPurchase",
    )["transaction"]
    assert later["points"] == 10


async def test_given_a_promotion_ending_before_it_starts_then_invalid_and_nothing_written(
    api: Api, clock: ManualClock
) -> None:
    admin = await api.key(KeyRole.ADMIN)
    now = clock.now()
    before = await written(api)

    body = await api.gql(
        CREATE_PROMOTION,
        {
            "input": {
                "name": "Backwards",
                "multiplier": 2,
                "startsAt": now.isoformat(),
                "endsAt": (now - timedelta(days=1)).isoformat(),
            }
        },
        token=admin,
    )

    assert user_error(body, "createPromotion")["code"] == "INVALID"
    assert await written(api) == before


async def test_given_a_tier_and_a_promotion_when_previewing_then_record_purchase_earns_the_same(
    api: Api, clock: ManualClock
) -> None:
    service, admin = await api.key(KeyRole.SERVICE), await api.key(KeyRole.ADMIN)
    await update_program(api, admin, pointsPerCurrencyUnit=1.5)
    ann = await enroll(api, service, "ann@example.com")
    ok(
        await purchase(api, service, memberId=ann["id"], orderId="o-0", amount=100),
        "recordPurchase",
    )
    ok(
        await api.gql(
            CREATE_TIER,
            {"input": {"name": "Gold", "threshold": 100, "multiplier": 1.25}},
            token=admin,
        ),
        "createTier",
    )
    now = clock.now()
    ok(
        await api.gql(
            CREATE_PROMOTION,
            {
                "input": {
                    "name": "Spring boost",
                    "multiplier": 1.5,
                    "startsAt": now.isoformat(),
                    "endsAt": (now + timedelta(days=1)).isoformat(),
                }
            },
            token=admin,
        ),
        "createPromotion",
    )
    before = await written(api)

    preview_body = await api.gql(PREVIEW, {"amount": 33.33, "memberId": ann["id"]}, token=service)
    assert "errors" not in preview_body, preview_body
    preview = preview_body["data"]["previewPurchase"]  # type: ignore[index]
    own_preview = await api.gql(PREVIEW, {"amount": 33.33}, token=api.member_token(pk(ann["id"])))
    assert await written(api) == before

    transaction = ok(
        await purchase(api, service, memberId=ann["id"], orderId="o-1", amount=33.33),
        "recordPurchase",
    )["transaction"]

    assert preview["points"] == transaction["points"] == 93  # floor(33.33 x 1.5 x 1.25 x 1.5)
    assert preview["breakdown"] == transaction["breakdown"]
    assert own_preview["data"] == {"previewPurchase": preview}
