"""Running the program's members over HTTP: admin edits, a member's own profile, suspension,
privacy requests, API keys and the audit trail."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from sqlalchemy import JSON, String, Text, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

import models
from models import KeyRole
from schema.ids import encode_id
from tests.conftest import Api, ApiFactory
from tests.graphql.test_mutations import (
    PURCHASE,
    enroll,
    graphql_error_code,
    ok,
    pk,
    update_program,
    user_error,
)

MEMBER_FIELDS = """id email displayName birthday externalId referralCode status attributes
    leaderboardOptOut balance { available }"""
UPDATE_MEMBER = f"""mutation($input: UpdateMemberInput!) {{ updateMember(input: $input) {{
    member {{ {MEMBER_FIELDS} }} userErrors {{ field code message }} }} }}"""
UPDATE_ME = """mutation($input: UpdateMeInput!) { updateMe(input: $input) {
    member { displayName birthday leaderboardOptOut } userErrors { field code message } } }"""
SET_STATUS = """mutation($input: SetMemberStatusInput!) { setMemberStatus(input: $input) {
    member { id status } userErrors { field code message } } }"""
EXPORT = """mutation($input: ExportMemberInput!) { exportMember(input: $input) {
    document userErrors { field code message } } }"""
ERASE = f"""mutation($input: EraseMemberInput!) {{ eraseMember(input: $input) {{
    member {{ {MEMBER_FIELDS} }} userErrors {{ field code message }} }} }}"""
ME = "{ me { id displayName status attributes leaderboardOptOut balance { available } } }"
MEMBER = f"query($id: ID!) {{ member(id: $id) {{ {MEMBER_FIELDS} }} }}"
MEMBER_BY_EXTERNAL_ID = "query($x: String!) { member(externalId: $x) { id } }"
REDEEM = """mutation($input: RedeemRewardInput!) { redeemReward(input: $input) {
    redemption { code } userErrors { field code message } } }"""
CREATE_REWARD = """mutation($input: CreateRewardInput!) { createReward(input: $input) {
    reward { id } userErrors { code message } } }"""
REFUND = """mutation($input: RefundPurchaseInput!) { refundPurchase(input: $input) {
    transaction { points } userErrors { code message } } }"""
AUDIT = """query($target: ID, $actor: ID, $first: Int, $after: String) {
    auditLog(targetId: $target, actorId: $actor, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { id at operation targetId before after actor { id name role } } } } }"""
API_KEYS = """query($first: Int, $after: String) { apiKeys(first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { id name role partner { slug } createdAt lastUsedAt revokedAt } } } }"""
CREATE_KEY = """mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) {
    apiKey { id name role partner { slug } revokedAt } secret userErrors { field code } } }"""
REVOKE_KEY = """mutation($input: RevokeApiKeyInput!) { revokeApiKey(input: $input) {
    apiKey { id revokedAt } userErrors { field code } } }"""
PROGRAM_STATS = """{ programStats(from: "2020-01-01T00:00:00Z", to: "2030-01-01T00:00:00Z") {
    members activeMembers pointsIssued pointsRedeemed outstandingPoints liability } }"""


async def gql(
    api: Api, document: str, variables: dict[str, Any] | None = None, *, token: str
) -> dict[str, Any]:
    """The response body, for tests that read into it."""
    return cast(dict[str, Any], await api.gql(document, variables, token=token))


async def keys(api: Api) -> tuple[str, str]:
    return await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)


async def audit_entries(api: Api, admin: str, target: str) -> list[dict[str, Any]]:
    body = await gql(api, AUDIT, {"target": target}, token=admin)
    assert "errors" not in body, body
    return [edge["node"] for edge in body["data"]["auditLog"]["edges"]]


# -- editing members ----------------------------------------------------------------------


async def test_an_admin_edits_only_the_fields_given_and_the_trail_masks_personal_data(
    api: Api,
) -> None:
    admin, service = await keys(api)
    member = await enroll(api, service, "ann@example.com", externalId="c-1", birthday="1990-04-02")
    edited = ok(
        await gql(
            api,
            UPDATE_MEMBER,
            {
                "input": {
                    "id": member["id"],
                    "email": "Ann.New@Example.com",
                    "attributes": {"shoeSize": 38, "vip": True, "store": "Leeds"},
                }
            },
            token=admin,
        ),
        "updateMember",
    )["member"]
    assert edited["email"] == "ann.new@example.com"  # normalised, compared case-insensitively
    assert edited["displayName"] == "ann" and edited["externalId"] == "c-1"
    assert edited["birthday"] == "1990-04-02"
    assert edited["attributes"] == {"shoeSize": 38, "vip": True, "store": "Leeds"}

    cleared = ok(
        await gql(
            api,
            UPDATE_MEMBER,
            {"input": {"id": member["id"], "birthday": None, "externalId": None}},
            token=admin,
        ),
        "updateMember",
    )["member"]
    assert cleared["birthday"] is None and cleared["externalId"] is None
    assert cleared["email"] == "ann.new@example.com"

    entries = await audit_entries(api, admin, member["id"])
    assert [e["operation"] for e in entries] == ["updateMember", "updateMember"]
    newest, first = entries
    assert first["before"] == {"email": "a***@example.com", "attributes": {}}
    assert first["after"] == {
        "email": "a***@example.com",
        "attributes": {"shoeSize": "***", "vip": "***", "store": "***"},
    }
    assert newest["before"] == {"birthday": "***", "externalId": "c***"}
    assert newest["after"] == {"birthday": None, "externalId": None}
    assert first["actor"]["role"] == "ADMIN" and first["actor"]["name"] == "test admin"


async def test_an_email_or_external_id_another_member_holds_is_refused(api: Api) -> None:
    admin, service = await keys(api)
    await enroll(api, service, "ann@example.com", externalId="c-1")
    bob = await enroll(api, service, "bob@example.com")
    for change, field in (
        ({"email": "ANN@example.com"}, "email"),
        ({"externalId": "c-1"}, "externalId"),
    ):
        body = await gql(api, UPDATE_MEMBER, {"input": {"id": bob["id"], **change}}, token=admin)
        error = user_error(body, "updateMember")
        assert (error["code"], error["field"]) == ("ALREADY_EXISTS", ["input", field])
    found = await gql(api, MEMBER, {"id": bob["id"]}, token=admin)
    assert found["data"]["member"]["email"] == "bob@example.com"


@pytest.mark.parametrize(
    "attributes",
    [
        {"nested": {"a": 1}},
        {"list": [1, 2]},
        {"nothing": None},
        {"k" * 65: "too long a key"},
        {"long": "x" * 1001},
        {f"key{n}": n for n in range(101)},
        ["not", "an", "object"],
    ],
)
async def test_attributes_out_of_bounds_are_invalid(api: Api, attributes: object) -> None:
    admin, service = await keys(api)
    member = await enroll(api, service, "ann@example.com")
    body = await gql(
        api, UPDATE_MEMBER, {"input": {"id": member["id"], "attributes": attributes}}, token=admin
    )
    assert user_error(body, "updateMember")["code"] == "INVALID"


async def test_fifty_long_keys_and_long_strings_are_accepted(api: Api) -> None:
    admin, service = await keys(api)
    member = await enroll(api, service, "ann@example.com")
    attributes = {f"{n:02d}".ljust(64, "k"): "v" * 1000 for n in range(20)} | {
        f"n{n:02d}".ljust(64, "k"): n * 1.5 for n in range(30)
    }
    edited = ok(
        await gql(
            api,
            UPDATE_MEMBER,
            {"input": {"id": member["id"], "attributes": attributes}},
            token=admin,
        ),
        "updateMember",
    )["member"]
    assert edited["attributes"] == attributes


async def test_editing_an_unknown_member_is_not_found(api: Api) -> None:
    admin, _ = await keys(api)
    body = await gql(
        api,
        UPDATE_MEMBER,
        {"input": {"id": encode_id("Member", 999), "displayName": "X"}},
        token=admin,
    )
    assert user_error(body, "updateMember") == {
        "field": ["input", "id"],
        "code": "NOT_FOUND",
        "message": "no such member",
    }


async def test_two_admins_editing_different_fields_at_once_both_win(pg_api: Api) -> None:
    api = pg_api
    admin, service = await keys(api)
    member = await enroll(api, service, "ann@example.com")
    await asyncio.gather(
        *(
            gql(api, UPDATE_MEMBER, {"input": {"id": member["id"], **change}}, token=admin)
            for change in (
                {"displayName": "Ann Smith"},
                {"externalId": "c-9"},
                {"attributes": {"tier": "gold"}},
                {"birthday": "1991-02-03"},
            )
        )
    )
    found = (await gql(api, MEMBER, {"id": member["id"]}, token=admin))["data"]["member"]
    assert (found["displayName"], found["externalId"]) == ("Ann Smith", "c-9")
    assert found["attributes"] == {"tier": "gold"} and found["birthday"] == "1991-02-03"


async def test_a_member_edits_its_own_name_and_sets_its_birthday_once(api: Api) -> None:
    _, service = await keys(api)
    member = await enroll(api, service, "ann@example.com")
    token = api.member_token(pk(member["id"]))
    first = ok(
        await gql(
            api,
            UPDATE_ME,
            {
                "input": {
                    "displayName": "Annie",
                    "birthday": "1990-01-01",
                    "leaderboardOptOut": True,
                }
            },
            token=token,
        ),
        "updateMe",
    )["member"]
    assert first == {"displayName": "Annie", "birthday": "1990-01-01", "leaderboardOptOut": True}
    # the same birthday again changes nothing; another one, or clearing it, is refused
    ok(await gql(api, UPDATE_ME, {"input": {"birthday": "1990-01-01"}}, token=token), "updateMe")
    for birthday in ("1990-06-01", None):
        body = await gql(api, UPDATE_ME, {"input": {"birthday": birthday}}, token=token)
        error = user_error(body, "updateMe")
        assert (error["code"], error["field"]) == ("NOT_ELIGIBLE", ["input", "birthday"])
    me = (await gql(api, ME, token=token))["data"]["me"]
    assert me["displayName"] == "Annie" and me["leaderboardOptOut"] is True


async def test_who_may_read_attributes_and_edit_members(api: Api) -> None:
    admin, service = await keys(api)
    member = await enroll(api, service, "ann@example.com")
    # a service key reads the status of the members it looks up, not the merchant's data
    body = await gql(
        api, "query($id: ID!) { member(id: $id) { status } }", {"id": member["id"]}, token=service
    )
    assert body["data"]["member"] == {"status": "ACTIVE"}
    body = await gql(
        api,
        "query($id: ID!) { member(id: $id) { attributes } }",
        {"id": member["id"]},
        token=service,
    )
    assert graphql_error_code(body) == "FORBIDDEN"
    body = await gql(
        api, UPDATE_MEMBER, {"input": {"id": member["id"], "displayName": "X"}}, token=service
    )
    assert graphql_error_code(body) == "FORBIDDEN"
    body = await gql(api, UPDATE_ME, {"input": {"displayName": "X"}}, token=admin)
    assert graphql_error_code(body) == "FORBIDDEN"


# -- status ---------------------------------------------------------------------------------


async def test_a_suspended_member_earns_nothing_cannot_redeem_and_earns_again_once_active(
    api: Api,
) -> None:
    admin, service = await keys(api)
    member = await enroll(api, service, "ann@example.com")
    token = api.member_token(pk(member["id"]))
    reward = ok(
        await gql(
            api,
            CREATE_REWARD,
            {"input": {"name": "Mug", "kind": "FREE_PRODUCT", "cost": 10}},
            token=admin,
        ),
        "createReward",
    )["reward"]
    ok(
        await gql(
            api,
            PURCHASE,
            {"input": {"memberId": member["id"], "orderId": "o-1", "amount": 50}},
            token=service,
        ),
        "recordPurchase",
    )

    suspended = ok(
        await gql(
            api,
            SET_STATUS,
            {"input": {"memberId": member["id"], "status": "SUSPENDED", "reason": "chargebacks"}},
            token=admin,
        ),
        "setMemberStatus",
    )["member"]
    assert suspended["status"] == "SUSPENDED"

    preview = await gql(
        api,
        "query($m: ID) { previewPurchase(amount: 80, memberId: $m) "
        "{ points breakdown { label points } } }",
        {"m": member["id"]},
        token=service,
    )
    withheld = ok(
        await gql(
            api,
            PURCHASE,
            {"input": {"memberId": member["id"], "orderId": "o-2", "amount": 80}},
            token=service,
        ),
        "recordPurchase",
    )["transaction"]
    assert withheld["kind"] == "PURCHASE" and withheld["points"] == 0
    assert [c["points"] for c in withheld["breakdown"]] == [80, -80]
    assert "suspended" in withheld["breakdown"][-1]["label"]
    # the preview said so beforehand, line for line
    assert preview["data"]["previewPurchase"] == {
        "points": 0,
        "breakdown": withheld["breakdown"],
    }
    body = await gql(
        api, REDEEM, {"input": {"rewardId": reward["id"], "idempotencyKey": "r-1"}}, token=token
    )
    assert user_error(body, "redeemReward")["code"] == "MEMBER_SUSPENDED"
    me = (await gql(api, ME, token=token))["data"]["me"]  # its token still reads its data
    assert me["status"] == "SUSPENDED" and me["balance"]["available"] == 50
    # a refund of the withheld purchase reverses what it earned: nothing
    refund = ok(
        await gql(api, REFUND, {"input": {"orderId": "o-2", "refundId": "f-2"}}, token=service),
        "refundPurchase",
    )
    assert refund["transaction"]["points"] == 0

    ok(
        await gql(
            api,
            SET_STATUS,
            {"input": {"memberId": member["id"], "status": "ACTIVE", "reason": "resolved"}},
            token=admin,
        ),
        "setMemberStatus",
    )
    again = ok(
        await gql(
            api,
            PURCHASE,
            {"input": {"memberId": member["id"], "orderId": "o-3", "amount": 20}},
            token=service,
        ),
        "recordPurchase",
    )
    assert again["transaction"]["points"] == 20
    assert again["member"]["balance"]["available"] == 70  # nothing withheld was paid back
    ok(
        await gql(
            api, REDEEM, {"input": {"rewardId": reward["id"], "idempotencyKey": "r-1"}}, token=token
        ),
        "redeemReward",
    )
    entries = await audit_entries(api, admin, member["id"])
    assert [(e["before"], e["after"]) for e in entries] == [
        (
            {"status": "SUSPENDED", "statusReason": "chargebacks"},
            {"status": "ACTIVE", "statusReason": "resolved"},
        ),
        (
            {"status": "ACTIVE", "statusReason": None},
            {"status": "SUSPENDED", "statusReason": "chargebacks"},
        ),
    ]


async def test_a_status_change_needs_a_reason(api: Api) -> None:
    admin, service = await keys(api)
    member = await enroll(api, service, "ann@example.com")
    body = await gql(
        api,
        SET_STATUS,
        {"input": {"memberId": member["id"], "status": "SUSPENDED", "reason": "  "}},
        token=admin,
    )
    assert user_error(body, "setMemberStatus")["field"] == ["input", "reason"]


# -- privacy ----------------------------------------------------------------------------------


async def text_columns_holding(engine: AsyncEngine, needles: list[str]) -> list[str]:
    """Every (table.column) of a text or JSON type, in every table, whose value holds one of
    `needles` (case-insensitive)."""
    found = []
    async with engine.connect() as connection:
        for table in models.Base.metadata.sorted_tables:
            for column in table.columns:
                if not isinstance(column.type, String | Text | JSON):
                    continue
                as_text = (
                    func.lower(func.cast(column, Text))
                    if isinstance(column.type, JSON)
                    else func.lower(column)
                )
                for needle in needles:
                    hits = await connection.scalar(
                        select(func.count())
                        .select_from(table)
                        .where(as_text.contains(needle.lower()))
                    )
                    if hits:
                        found.append(f"{table.name}.{column.name} holds {needle!r}")
        if engine.dialect.name == "postgresql":
            for needle in needles:
                hits = await connection.scalar(
                    text("SELECT count(*) FROM member_search WHERE text LIKE :p"),
                    {"p": f"%{needle.lower()}%"},
                )
                if hits:
                    found.append(f"member_search.text holds {needle!r}")
    return found


async def test_erasure_leaves_no_personal_data_anywhere_and_keeps_the_figures(
    api: Api, engine: AsyncEngine
) -> None:
    admin, service = await keys(api)
    await update_program(api, admin, referralBonus=25)
    ann = await enroll(
        api, service, "zelda.quux@example.org", externalId="crm-7731", birthday="1985-07-09"
    )
    code = ann["referralCode"]
    bob = await enroll(api, service, "bob@example.com", referralCode=code)  # ann referred bob
    ok(
        await gql(
            api,
            UPDATE_MEMBER,
            {
                "input": {
                    "id": ann["id"],
                    "displayName": "Zelda Quux",
                    "attributes": {"phone": "+44 7700 900123"},
                }
            },
            token=admin,
        ),
        "updateMember",
    )
    for order, member in (("o-ann", ann), ("o-bob", bob)):
        ok(
            await gql(
                api,
                PURCHASE,
                {"input": {"memberId": member["id"], "orderId": order, "amount": 40}},
                token=service,
            ),
            "recordPurchase",
        )
    figures = (await gql(api, PROGRAM_STATS, token=admin))["data"]["programStats"]

    document = ok(
        await gql(api, EXPORT, {"input": {"memberId": ann["id"]}}, token=admin), "exportMember"
    )["document"]
    assert document["profile"]["email"] == "zelda.quux@example.org"
    assert document["profile"]["externalId"] == "crm-7731"
    assert document["profile"]["birthday"] == "1985-07-09"
    assert document["attributes"] == {"phone": "+44 7700 900123"}
    assert [e["reference"] for e in document["ledger"] if e["kind"] == "PURCHASE"] == ["o-ann"]
    assert {"ledger", "redemptions", "badges", "challenges", "events", "purchases"} <= set(document)

    token = api.member_token(pk(ann["id"]))
    assert (await gql(api, ME, token=token))["data"]["me"]["id"] == ann["id"]
    erased = ok(
        await gql(
            api, ERASE, {"input": {"memberId": ann["id"], "reason": "GDPR art. 17"}}, token=admin
        ),
        "eraseMember",
    )["member"]
    assert erased["displayName"] == "Erased member" and erased["externalId"] is None
    assert erased["birthday"] is None and erased["attributes"] == {}
    assert erased["balance"]["available"] == 65  # 40 and a referral bonus: the ledger stays

    needles = ["zelda.quux@example.org", "Zelda Quux", "crm-7731", code, "zelda", "7700 900123"]
    assert await text_columns_holding(engine, needles) == []
    assert (await gql(api, PROGRAM_STATS, token=admin))["data"]["programStats"] == figures
    by_old_id = await gql(api, MEMBER_BY_EXTERNAL_ID, {"x": "crm-7731"}, token=admin)
    assert by_old_id["data"]["member"] is None
    assert graphql_error_code(await gql(api, ME, token=token)) == "UNAUTHENTICATED"
    # acting on an erased member is NOT_FOUND; erasing again answers the same, no userErrors
    body = await gql(
        api,
        PURCHASE,
        {"input": {"memberId": ann["id"], "orderId": "o-2", "amount": 5}},
        token=service,
    )
    assert user_error(body, "recordPurchase")["code"] == "NOT_FOUND"
    body = await gql(
        api, UPDATE_MEMBER, {"input": {"id": ann["id"], "displayName": "Z"}}, token=admin
    )
    assert user_error(body, "updateMember")["code"] == "NOT_FOUND"
    again = ok(
        await gql(api, ERASE, {"input": {"memberId": ann["id"]}}, token=admin), "eraseMember"
    )
    assert again["member"] == erased
    operations = [e["operation"] for e in await audit_entries(api, admin, ann["id"])]
    assert operations == ["eraseMember", "eraseMember", "exportMember", "updateMember"]
    # bob's referral entry no longer names her
    bob_export = ok(
        await gql(api, EXPORT, {"input": {"memberId": bob["id"]}}, token=admin), "exportMember"
    )["document"]
    referral = [e for e in bob_export["ledger"] if e["kind"] == "REFERRAL"]
    assert referral and all("Zelda" not in e["description"] for e in referral)


# -- API keys -------------------------------------------------------------------------------


async def test_keys_are_listed_without_secrets_created_and_revoked_at_once(api: Api) -> None:
    admin, service = await keys(api)
    assert (await gql(api, "{ program { name } }", token=service))["data"]  # in use
    created = ok(
        await gql(api, CREATE_KEY, {"input": {"name": "Checkout", "role": "SERVICE"}}, token=admin),
        "createApiKey",
    )
    secret, key = created["secret"], created["apiKey"]
    assert secret.startswith("lrl_") and key["role"] == "SERVICE" and key["partner"] is None
    lookup = "query($id: ID!) { member(id: $id) { id } }"
    assert (await gql(api, lookup, {"id": encode_id("Member", 1)}, token=secret))["data"]

    listed = (await gql(api, API_KEYS, token=admin))["data"]["apiKeys"]
    assert listed["totalCount"] == 3
    names = [edge["node"]["name"] for edge in listed["edges"]]
    assert names == ["Checkout", "test service", "test admin"]  # newest first
    assert all(edge["node"]["lastUsedAt"] for edge in listed["edges"])  # each one was used
    assert secret not in str(listed)

    revoked = ok(
        await gql(api, REVOKE_KEY, {"input": {"id": key["id"]}}, token=admin), "revokeApiKey"
    )
    assert revoked["apiKey"]["revokedAt"] is not None
    body = await gql(api, lookup, {"id": encode_id("Member", 1)}, token=secret)
    assert graphql_error_code(body) == "UNAUTHENTICATED"
    entries = await audit_entries(api, admin, key["id"])
    assert [(e["operation"], e["before"], e["after"] is not None) for e in entries] == [
        ("revokeApiKey", {"revokedAt": None}, True),
        ("createApiKey", None, True),
    ]
    assert entries[1]["after"] == {
        "name": "Checkout",
        "role": "service",
        "partner": None,
        "revokedAt": None,
    }
    # revoking again changes nothing; an unknown key is NOT_FOUND
    ok(await gql(api, REVOKE_KEY, {"input": {"id": key["id"]}}, token=admin), "revokeApiKey")
    body = await gql(api, REVOKE_KEY, {"input": {"id": encode_id("ApiKey", 999)}}, token=admin)
    assert user_error(body, "revokeApiKey")["code"] == "NOT_FOUND"


async def test_partner_keys_name_an_existing_partner_and_only_they_do(api: Api) -> None:
    admin, _ = await keys(api)
    partner = ok(
        await gql(
            api,
            """mutation { createPartner(input: {name: "Bakery", slug: "bakery"}) {
            partner { id } userErrors { code } } }""",
            token=admin,
        ),
        "createPartner",
    )["partner"]
    made = ok(
        await gql(
            api,
            CREATE_KEY,
            {"input": {"name": "Bakery 2", "role": "PARTNER", "partnerId": partner["id"]}},
            token=admin,
        ),
        "createApiKey",
    )
    assert made["apiKey"]["partner"] == {"slug": "bakery"}
    for bad in (
        {"name": "x", "role": "PARTNER"},
        {"name": "x", "role": "ADMIN", "partnerId": partner["id"]},
        {"name": " ", "role": "ADMIN"},
    ):
        body = await gql(api, CREATE_KEY, {"input": bad}, token=admin)
        assert user_error(body, "createApiKey")["code"] == "INVALID"
    body = await gql(
        api,
        CREATE_KEY,
        {"input": {"name": "x", "role": "PARTNER", "partnerId": encode_id("Partner", 99)}},
        token=admin,
    )
    assert user_error(body, "createApiKey")["code"] == "NOT_FOUND"


async def test_the_audit_log_pages_newest_first_and_filters_by_actor(api: Api) -> None:
    admin, service = await keys(api)
    other_admin = await api.key(KeyRole.ADMIN)
    member = await enroll(api, service, "ann@example.com")
    for n in range(5):
        who = admin if n % 2 == 0 else other_admin
        ok(
            await gql(
                api,
                UPDATE_MEMBER,
                {"input": {"id": member["id"], "displayName": f"Ann {n}"}},
                token=who,
            ),
            "updateMember",
        )
    first = (await gql(api, AUDIT, {"first": 3}, token=admin))["data"]["auditLog"]
    assert first["totalCount"] == 5 and first["pageInfo"]["hasNextPage"]
    rest = (
        await gql(api, AUDIT, {"first": 3, "after": first["pageInfo"]["endCursor"]}, token=admin)
    )["data"]["auditLog"]
    names = [e["node"]["after"]["displayName"] for e in first["edges"] + rest["edges"]]
    assert names == ["A***"] * 5  # masked
    ids = [e["node"]["id"] for e in first["edges"] + rest["edges"]]
    assert len(set(ids)) == 5
    actor = first["edges"][0]["node"]["actor"]["id"]
    mine = (await gql(api, AUDIT, {"actor": actor}, token=admin))["data"]["auditLog"]
    assert mine["totalCount"] == 3
    assert graphql_error_code(await gql(api, AUDIT, {"actor": member["id"]}, token=admin)) == (
        "BAD_USER_INPUT"
    )
    assert graphql_error_code(await gql(api, AUDIT, token=service)) == "FORBIDDEN"


async def test_a_deactivated_partners_keys_are_refused(api: Api, make_api: ApiFactory) -> None:
    admin, _ = await keys(api)
    made = ok(
        await gql(
            api,
            """mutation { createPartner(input: {name: "Bakery", slug: "bakery"}) {
            partner { id } apiKey userErrors { code } } }""",
            token=admin,
        ),
        "createPartner",
    )
    partner_key = made["apiKey"]
    assert (await gql(api, "{ partner { name } }", token=partner_key))["data"]["partner"]
    async with api.sessions.begin() as session:
        await session.execute(update(models.Partner).values(deactivated_at=api.clock.now()))
    await api.app.state.laurel.runtime.credentials_changed()
    body = await gql(api, "{ partner { name } }", token=partner_key)
    assert graphql_error_code(body) == "UNAUTHENTICATED"
