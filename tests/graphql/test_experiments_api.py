"""Promotion experiments over HTTP: created with a checked control share, visible to admins
only, held out of control members' promotions, purchases and previews, and read back per
group from the ledger by promotionResults."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from models import KeyRole
from schema.ids import decode_id, encode_id
from services.experiments import ExperimentGroup, assigned
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
    written,
)

CREATE = """mutation($input: CreatePromotionInput!) { createPromotion(input: $input) {
    promotion { id name experiment { controlShare } } userErrors { field code message } } }"""
RESULTS = """query($id: ID!) { promotionResults(id: $id) {
    promotion { id name } method
    groups { group members buyers purchasesPerMember revenuePerMember pointsCost }
    uplift { revenuePerMember { estimate low high }
        purchasesPerMember { estimate low high } } } }"""
GROUP = """query($member: ID!, $promotion: ID!) { member(id: $member) {
    experimentGroup(promotionId: $promotion) } }"""
PROMOTIONS = "{ promotions { id experiment { controlShare } } }"
NODE = "query($id: ID!) { node(id: $id) { id ... on Promotion { name } } }"


async def gql(
    api: Api, document: str, variables: dict[str, Any] | None = None, *, token: str
) -> dict[str, Any]:
    return cast(dict[str, Any], await api.gql(document, variables, token=token))


async def create(api: Api, admin: str, **given: Any) -> dict[str, Any]:
    now = api.clock.now()
    promotion = {
        "name": "Double points",
        "multiplier": 2,
        "startsAt": (now - timedelta(days=1)).isoformat(),
        "endsAt": (now + timedelta(days=10)).isoformat(),
        **given,
    }
    return await gql(api, CREATE, {"input": promotion}, token=admin)


def promotion_pk(promotion_id: str) -> int:
    decoded = decode_id(promotion_id)
    assert decoded is not None
    return decoded[1]


async def split(
    api: Api, service: str, promotion_id: str, count: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`count` new members as (treatment, control) for an experiment holding out half."""
    new = [await enroll(api, service, f"m{n}@example.com") for n in range(count)]
    control = [
        m
        for m in new
        if assigned(0.5, promotion_pk(promotion_id), pk(m["id"])) is ExperimentGroup.CONTROL
    ]
    return [m for m in new if m not in control], control


async def test_a_control_share_outside_0_and_1_is_invalid_and_nothing_written(api: Api) -> None:
    admin = await api.key(KeyRole.ADMIN)
    before = await written(api)
    for share in (0, 1, 1.25, -0.5):
        error = user_error(
            await create(api, admin, experiment={"controlShare": share}), "createPromotion"
        )
        assert error["code"] == "INVALID"
        assert error["field"] == ["input", "experiment", "controlShare"]
    assert await written(api) == before


async def test_the_experiment_is_shown_to_admins_only(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    created = ok(await create(api, admin, experiment={"controlShare": 0.5}), "createPromotion")
    promotion = created["promotion"]
    assert promotion["experiment"] == {"controlShare": 0.5}
    plain = ok(await create(api, admin, name="Plain"), "createPromotion")["promotion"]
    assert plain["experiment"] is None

    listed = (await gql(api, PROMOTIONS, token=admin))["data"]["promotions"]
    assert {p["id"]: p["experiment"] for p in listed} == {
        promotion["id"]: {"controlShare": 0.5},
        plain["id"]: None,
    }
    treatment, control = await split(api, service, promotion["id"], 12)
    assert treatment and control
    for token in (service, api.member_token(pk(treatment[0]["id"]))):
        listed = (await gql(api, PROMOTIONS, token=token))["data"]["promotions"]
        assert promotion["id"] in [p["id"] for p in listed]
        assert all(p["experiment"] is None for p in listed)

    # Member.experimentGroup: the admin reads it; anyone else is FORBIDDEN.
    for member, expected in ((treatment[0], "TREATMENT"), (control[0], "CONTROL")):
        asked = {"member": member["id"], "promotion": promotion["id"]}
        body = await gql(api, GROUP, asked, token=admin)
        assert body["data"]["member"]["experimentGroup"] == expected
        assert graphql_error_code(await gql(api, GROUP, asked, token=service)) == "FORBIDDEN"
    own = """query($promotion: ID!) { me { experimentGroup(promotionId: $promotion) } }"""
    token = api.member_token(pk(control[0]["id"]))
    body = await gql(api, own, {"promotion": promotion["id"]}, token=token)
    assert graphql_error_code(body) == "FORBIDDEN"
    asked = {"member": control[0]["id"], "promotion": plain["id"]}
    assert (await gql(api, GROUP, asked, token=admin))["data"]["member"]["experimentGroup"] is None


async def test_a_control_member_neither_sees_nor_earns_the_promotion(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    created = ok(await create(api, admin, experiment={"controlShare": 0.5}), "createPromotion")
    promotion = created["promotion"]
    treatment, control = await split(api, service, promotion["id"], 12)
    treated, held_out = treatment[0], control[0]

    held_token, treated_token = (api.member_token(pk(m["id"])) for m in (held_out, treated))
    listed = (await gql(api, PROMOTIONS, token=held_token))["data"]["promotions"]
    assert listed == []
    assert (await gql(api, NODE, {"id": promotion["id"]}, token=held_token))["data"] == {
        "node": None
    }
    node = (await gql(api, NODE, {"id": promotion["id"]}, token=treated_token))["data"]["node"]
    assert node == {"id": promotion["id"], "name": "Double points"}

    preview = (await gql(api, PREVIEW, {"amount": 10}, token=held_token))["data"]
    assert preview["previewPurchase"]["points"] == 10
    preview = (await gql(api, PREVIEW, {"amount": 10}, token=treated_token))["data"]
    assert preview["previewPurchase"]["points"] == 20

    for member, order, points in ((treated, "t-1", 50), (held_out, "c-1", 25)):
        order_input = {"memberId": member["id"], "orderId": order, "amount": 25}
        paid = ok(await gql(api, PURCHASE, {"input": order_input}, token=service), "recordPurchase")
        assert paid["transaction"]["points"] == points


async def test_promotion_results_read_the_ledger_per_group(api: Api) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    created = ok(await create(api, admin, experiment={"controlShare": 0.5}), "createPromotion")
    promotion = created["promotion"]
    treatment, control = await split(api, service, promotion["id"], 8)
    purchases = [(treatment[0], "t-1", 40), (treatment[0], "t-2", 10), (control[0], "c-1", 30)]
    for member, order, amount in purchases:
        order_input = {"memberId": member["id"], "orderId": order, "amount": amount}
        ok(await gql(api, PURCHASE, {"input": order_input}, token=service), "recordPurchase")
    refund = {"orderId": "t-2", "refundId": "r-1"}
    ok(await gql(api, REFUND, {"input": refund}, token=service), "refundPurchase")

    body = await gql(api, RESULTS, {"id": promotion["id"]}, token=admin)
    assert "errors" not in body, body
    results = body["data"]["promotionResults"]
    assert results["promotion"] == {"id": promotion["id"], "name": "Double points"}
    assert "Welch" in results["method"]
    by_group = {g["group"]: g for g in results["groups"]}
    n_t, n_c = len(treatment), len(control)
    assert by_group["TREATMENT"] == {
        "group": "TREATMENT",
        "members": n_t,
        "buyers": 1,
        "purchasesPerMember": 2 / n_t,
        "revenuePerMember": 40 / n_t,
        "pointsCost": 80 + 20 - 20,
    }
    assert by_group["CONTROL"] == {
        "group": "CONTROL",
        "members": n_c,
        "buyers": 1,
        "purchasesPerMember": 1 / n_c,
        "revenuePerMember": 30 / n_c,
        "pointsCost": 30,
    }
    uplift = results["uplift"]["revenuePerMember"]
    assert uplift["low"] < uplift["estimate"] == 40 / n_t - 30 / n_c < uplift["high"]


async def test_promotion_results_are_admin_only_and_null_for_an_unknown_promotion(
    api: Api,
) -> None:
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    plain = ok(await create(api, admin), "createPromotion")["promotion"]
    member = await enroll(api, service, "ann@example.com")
    for token in (service, api.member_token(pk(member["id"]))):
        body = await gql(api, RESULTS, {"id": plain["id"]}, token=token)
        assert graphql_error_code(body) == "FORBIDDEN"
    results = (await gql(api, RESULTS, {"id": plain["id"]}, token=admin))["data"]
    assert [g["group"] for g in results["promotionResults"]["groups"]] == ["TREATMENT"]
    assert results["promotionResults"]["groups"][0]["members"] == 1
    assert results["promotionResults"]["uplift"] is None
    unknown = encode_id("Promotion", 9999)
    assert (await gql(api, RESULTS, {"id": unknown}, token=admin))["data"] == {
        "promotionResults": None
    }
