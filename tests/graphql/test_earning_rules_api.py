"""Earning rules, currency rates, purchases with lines and line refunds, and previewOrder over
HTTP (on PostgreSQL recordPurchase takes the direct path, on SQLite the general one)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from sqlalchemy import func, select

import models
from models import KeyRole
from tests.conftest import Api
from tests.graphql.test_mutations import (
    PREVIEW,
    PURCHASE,
    REFUND,
    enroll,
    graphql_error_code,
    ok,
    pk,
    user_error,
)

RULE = """id name kind match { category sku shipping giftCard discounted tax } multiplier points
    minimumAmount segment { name } startsAt endsAt active"""
CREATE = f"""mutation($input: CreateEarningRuleInput!) {{ createEarningRule(input: $input) {{
    earningRule {{ {RULE} }} userErrors {{ field code message }} }} }}"""
UPDATE = f"""mutation($input: UpdateEarningRuleInput!) {{ updateEarningRule(input: $input) {{
    earningRule {{ {RULE} }} userErrors {{ field code message }} }} }}"""
END = f"""mutation($input: EndEarningRuleInput!) {{ endEarningRule(input: $input) {{
    earningRule {{ {RULE} }} userErrors {{ field code message }} }} }}"""
RULES = f"query($activeOnly: Boolean) {{ earningRules(activeOnly: $activeOnly) {{ {RULE} }} }}"
SET_RATE = """mutation($input: SetCurrencyRateInput!) { setCurrencyRate(input: $input) {
    currencyRate { currency rate updatedAt } userErrors { field code message } } }"""
RATES = "{ currencyRates { currency rate } }"
PREVIEW_ORDER = """query($input: PreviewOrderInput!) { previewOrder(input: $input) {
    points breakdown { label points } } }"""
CREATE_SEGMENT = """mutation($input: CreateSegmentInput!) { createSegment(input: $input) {
    segment { id } userErrors { field code message } } }"""
DELETE_SEGMENT = """mutation($input: DeleteSegmentInput!) { deleteSegment(input: $input) {
    deletedSegmentId usedBy { id ... on EarningRule { name } } userErrors { field code } } }"""

LINES = [
    {"sku": "BEANS", "category": "coffee", "quantity": 2, "amount": 10.99, "tax": 0.99},
    {"sku": "MUG-1", "quantity": 2, "amount": 7.55},
    {"sku": "GIFT", "amount": 25, "isGiftCard": True},
    {"lineId": "ship", "sku": "SHIP", "amount": 4.99, "isShipping": True},
]
AMOUNT = 48.53


async def gql(
    api: Api, document: str, variables: dict[str, Any] | None = None, *, token: str
) -> dict[str, Any]:
    return cast(dict[str, Any], await api.gql(document, variables, token=token))


async def create_rule(api: Api, admin: str, **input: Any) -> dict[str, Any]:
    body = await gql(api, CREATE, {"input": input}, token=admin)
    rule: dict[str, Any] = ok(body, "createEarningRule")["earningRule"]
    return rule


async def five_rules(api: Api, admin: str) -> list[dict[str, Any]]:
    return [
        await create_rule(
            api,
            admin,
            name="Coffee",
            kind="CATEGORY_MULTIPLIER",
            match={"category": "coffee"},
            multiplier=3,
        ),
        await create_rule(
            api, admin, name="Mugs", kind="SKU_POINTS_PER_UNIT", match={"sku": "MUG-1"}, points=5
        ),
        await create_rule(
            api, admin, name="No gift cards", kind="EXCLUDE", match={"giftCard": True}
        ),
        await create_rule(
            api, admin, name="No shipping or tax", kind="EXCLUDE", match={"shipping": True}
        ),
        await create_rule(api, admin, name="Welcome", kind="FIRST_PURCHASE_BONUS", points=50),
    ]


async def test_admins_create_change_end_and_list_rules(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    coffee, *_ = await five_rules(api, admin)
    assert coffee["kind"] == "CATEGORY_MULTIPLIER" and coffee["multiplier"] == 3
    assert coffee["match"] == {
        "category": "coffee",
        "sku": None,
        "shipping": None,
        "giftCard": None,
        "discounted": None,
        "tax": None,
    }
    assert coffee["active"] is True and coffee["points"] is None

    changed = ok(
        await gql(api, UPDATE, {"input": {"id": coffee["id"], "multiplier": 2.5}}, token=admin),
        "updateEarningRule",
    )["earningRule"]
    assert (changed["multiplier"], changed["match"]["category"]) == (2.5, "coffee")
    refused = user_error(
        await gql(api, UPDATE, {"input": {"id": coffee["id"], "points": 3}}, token=admin),
        "updateEarningRule",
    )
    assert (refused["code"], refused["field"]) == ("INVALID", ["input", "points"])

    ended = ok(await gql(api, END, {"input": {"id": coffee["id"]}}, token=admin), "endEarningRule")
    assert ended["earningRule"]["active"] is False
    every = (await gql(api, RULES, token=admin))["data"]["earningRules"]
    active = (await gql(api, RULES, {"activeOnly": True}, token=admin))["data"]["earningRules"]
    assert len(every) == 5 and len(active) == 4 and coffee["id"] not in {r["id"] for r in active}


async def test_a_rule_missing_what_its_kind_needs_is_invalid_and_nothing_written(
    api: Api,
) -> None:
    admin = await api.key(KeyRole.ADMIN)
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"kind": "CATEGORY_MULTIPLIER", "match": {"category": "x"}}, ["input", "multiplier"]),
        ({"kind": "EXCLUDE"}, ["input", "match"]),
        ({"kind": "MINIMUM_ORDER_BONUS", "points": 5, "multiplier": 2}, ["input", "multiplier"]),
        ({"kind": "FIRST_PURCHASE_BONUS", "points": -1}, ["input", "points"]),
    ]
    for input, field in cases:
        body = await gql(api, CREATE, {"input": {"name": "r", **input}}, token=admin)
        error = user_error(body, "createEarningRule")
        assert (error["code"], error["field"]) == ("INVALID", field), input
    assert (await gql(api, RULES, token=admin))["data"]["earningRules"] == []


async def test_only_admins_manage_rules_and_services_read_rates(api: Api) -> None:
    service = await api.key(KeyRole.SERVICE)
    member = await enroll(api, service, "ann@example.com")
    token = api.member_token(pk(member["id"]))
    assert graphql_error_code(await gql(api, RULES, token=service)) == "FORBIDDEN"
    body = await gql(api, SET_RATE, {"input": {"currency": "EUR", "rate": 1.1}}, token=service)
    assert graphql_error_code(body) == "FORBIDDEN"
    assert (await gql(api, RATES, token=service))["data"]["currencyRates"] == []
    assert graphql_error_code(await gql(api, RATES, token=token)) == "FORBIDDEN"


async def test_set_currency_rate_checks_the_code_and_a_purchase_counts_at_the_rate(
    api: Api,
) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    for input, field in (
        ({"currency": "USD", "rate": 2}, "currency"),
        ({"currency": "euro", "rate": 2}, "currency"),
        ({"currency": "EUR", "rate": 0}, "rate"),
    ):
        error = user_error(
            await gql(api, SET_RATE, {"input": input}, token=admin), "setCurrencyRate"
        )
        assert (error["code"], error["field"]) == ("INVALID", ["input", field])
    rate = ok(
        await gql(api, SET_RATE, {"input": {"currency": "EUR", "rate": 1.1}}, token=admin),
        "setCurrencyRate",
    )["currencyRate"]
    assert (rate["currency"], rate["rate"]) == ("EUR", 1.1)
    assert (await gql(api, RATES, token=service))["data"]["currencyRates"] == [
        {"currency": "EUR", "rate": 1.1}
    ]

    member = await enroll(api, service, "ann@example.com")
    order = {"memberId": member["id"], "orderId": "o-1", "amount": 100, "currency": "EUR"}
    paid = ok(await gql(api, PURCHASE, {"input": order}, token=service), "recordPurchase")
    assert paid["transaction"]["points"] == 110
    unknown = {**order, "orderId": "o-2", "currency": "GBP"}
    error = user_error(
        await gql(api, PURCHASE, {"input": unknown}, token=service), "recordPurchase"
    )
    assert (error["code"], error["field"]) == ("INVALID", ["input", "currency"])
    async with api.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(models.Purchase)) == 1


async def test_preview_order_is_what_record_purchase_then_writes(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    await five_rules(api, admin)
    member = await enroll(api, service, "ann@example.com")
    token = api.member_token(pk(member["id"]))
    order = {"amount": AMOUNT, "lines": LINES}
    preview = (await gql(api, PREVIEW_ORDER, {"input": order}, token=token))["data"]
    as_service = await gql(
        api, PREVIEW_ORDER, {"input": {**order, "memberId": member["id"]}}, token=service
    )
    assert as_service["data"] == preview
    # 10.99 x3 = 32, 7 + 10 for the mugs, nothing for the gift card and shipping, 50 welcome
    assert preview["previewOrder"]["points"] == 32 + 17 + 50
    # previewPurchase is previewOrder without lines: the order is one line, the bonus pays.
    plain = await gql(api, PREVIEW, {"amount": AMOUNT}, token=token)
    assert plain["data"]["previewPurchase"]["points"] == 48 + 50

    body = await gql(
        api,
        PURCHASE,
        {"input": {"memberId": member["id"], "orderId": "o-1", **order}},
        token=service,
    )
    transaction = ok(body, "recordPurchase")["transaction"]
    assert transaction["points"] == preview["previewOrder"]["points"]
    assert transaction["breakdown"] == preview["previewOrder"]["breakdown"]
    labels = [c["label"] for c in transaction["breakdown"] if c["points"]]
    assert labels == ["1 point per 1.00 USD spent", "Coffee x3", "Mugs: 5 per unit", "Welcome"]

    again = (await gql(api, PREVIEW_ORDER, {"input": order}, token=token))["data"]
    assert again["previewOrder"]["points"] == 32 + 17  # the welcome bonus is paid
    other = await enroll(api, service, "bob@example.com")
    body = await gql(api, PREVIEW_ORDER, {"input": {**order, "memberId": other["id"]}}, token=token)
    assert graphql_error_code(body) == "FORBIDDEN"
    bad = await gql(api, PREVIEW_ORDER, {"input": {"amount": 1, "lines": LINES}}, token=token)
    assert graphql_error_code(bad) == "BAD_USER_INPUT"
    anonymous = cast(dict[str, Any], await api.gql(PREVIEW_ORDER, {"input": order}))
    assert graphql_error_code(anonymous) in ("UNAUTHENTICATED", "FORBIDDEN")


async def test_a_line_refund_over_http_reverses_what_the_line_earned(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    await five_rules(api, admin)
    member = await enroll(api, service, "ann@example.com")
    order = {"memberId": member["id"], "orderId": "o-1", "amount": AMOUNT, "lines": LINES}
    ok(await gql(api, PURCHASE, {"input": order}, token=service), "recordPurchase")

    def refund(refund_id: str, *lines: dict[str, Any]) -> dict[str, Any]:
        return {"orderId": "o-1", "refundId": refund_id, "lines": list(lines)}

    one = await gql(
        api, REFUND, {"input": refund("r-1", {"lineId": "MUG-1", "quantity": 1})}, token=service
    )
    assert ok(one, "refundPurchase")["transaction"]["points"] == -8  # floor(17 / 2)
    unknown = await gql(api, REFUND, {"input": refund("r-2", {"lineId": "nope"})}, token=service)
    error = user_error(unknown, "refundPurchase")
    assert (error["code"], error["field"]) == ("NOT_FOUND", ["input", "lines", "0", "lineId"])
    over = await gql(
        api, REFUND, {"input": refund("r-2", {"lineId": "MUG-1", "quantity": 2})}, token=service
    )
    error = user_error(over, "refundPurchase")
    assert (error["code"], error["field"]) == ("INVALID", ["input", "lines", "0", "quantity"])
    rest = await gql(
        api,
        REFUND,
        {
            "input": refund(
                "r-3",
                {"lineId": "MUG-1"},
                {"lineId": "BEANS"},
                {"lineId": "GIFT"},
                {"lineId": "ship"},
            )
        },
        token=service,
    )
    # 9 for the mugs, 32 for the beans, and the bonus with the last line
    assert ok(rest, "refundPurchase")["transaction"]["points"] == -(9 + 32 + 50)
    assert ok(rest, "refundPurchase")["member"]["balance"]["available"] == 0


async def test_deleting_a_segment_an_earning_rule_uses_is_refused_naming_it(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    segment = ok(
        await gql(
            api,
            CREATE_SEGMENT,
            {"input": {"name": "Fans", "rule": {"all": [{"availablePoints": {"min": 10}}]}}},
            token=admin,
        ),
        "createSegment",
    )["segment"]
    rule = await create_rule(
        api, admin, name="Fan bonus", kind="FIRST_PURCHASE_BONUS", points=5, segmentId=segment["id"]
    )
    assert rule["segment"] == {"name": "Fans"}
    body = await gql(api, DELETE_SEGMENT, {"input": {"id": segment["id"]}}, token=admin)
    payload = body["data"]["deleteSegment"]
    assert payload["userErrors"][0]["code"] == "IN_USE"
    assert payload["usedBy"] == [{"id": rule["id"], "name": "Fan bonus"}]


async def test_concurrent_first_purchases_pay_the_welcome_bonus_once(pg_api: Api) -> None:
    api = pg_api
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    await create_rule(api, admin, name="Welcome", kind="FIRST_PURCHASE_BONUS", points=50)
    member = await enroll(api, service, "ann@example.com")
    orders = [
        {
            "memberId": member["id"],
            "orderId": f"o-{n}",
            "amount": 10,
            "lines": [{"sku": "A", "amount": 10}],
        }
        for n in range(12)
    ]
    bodies = await asyncio.gather(
        *(gql(api, PURCHASE, {"input": order}, token=service) for order in orders)
    )
    points = sorted(ok(body, "recordPurchase")["transaction"]["points"] for body in bodies)
    assert points == [10] * 11 + [60]


async def test_concurrent_line_refunds_never_reverse_more_than_the_line_earned(
    pg_api: Api,
) -> None:
    api = pg_api
    service = await api.key(KeyRole.SERVICE)
    member = await enroll(api, service, "ann@example.com")
    order = {
        "memberId": member["id"],
        "orderId": "o-1",
        "amount": 10,
        "lines": [{"sku": "A", "quantity": 3, "amount": 10}],
    }
    ok(await gql(api, PURCHASE, {"input": order}, token=service), "recordPurchase")
    bodies = await asyncio.gather(
        *(
            gql(
                api,
                REFUND,
                {
                    "input": {
                        "orderId": "o-1",
                        "refundId": f"r-{n}",
                        "lines": [{"lineId": "A", "quantity": 1}],
                    }
                },
                token=service,
            )
            for n in range(8)
        )
    )
    payloads = [body["data"]["refundPurchase"] for body in bodies]
    reversed_points = [p["transaction"]["points"] for p in payloads if p["transaction"]]
    assert sorted(reversed_points) == [-4, -3, -3]
    assert sum(1 for p in payloads if p["userErrors"]) == 5
