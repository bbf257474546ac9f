"""Text the database cannot store, and what production error messages give away.

Found by a black-box run (issue 15): a NUL byte in refundPurchase, useRedemption or
member(externalId:) reached PostgreSQL and came back as INTERNAL_SERVER_ERROR, and production
errors suggested field and type names. Every string input now refuses such text as it is read
(schema.scalars.guard_text_inputs), and production messages carry no suggestions.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from models import KeyRole, LedgerEntry, Member
from schema.ids import encode_id
from tests.conftest import Api, ApiFactory
from tests.services.helpers import new_member

NUL = "order\x00one"
LONE_SURROGATE = "order\ud800one"

REFUND = """mutation($input: RefundPurchaseInput!) {
  refundPurchase(input: $input) { transaction { id } userErrors { code } } }"""
USE = """mutation($input: UseRedemptionInput!) {
  useRedemption(input: $input) { redemption { id } userErrors { code } } }"""
BY_EXTERNAL_ID = "query($externalId: String) { member(externalId: $externalId) { id } }"
PURCHASE = """mutation($input: RecordPurchaseInput!) {
  recordPurchase(input: $input) { transaction { id } userErrors { code } } }"""
UPDATE = """mutation($input: UpdateMemberInput!) {
  updateMember(input: $input) { member { id } userErrors { code } } }"""


def _codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors") or []]


async def _member(api: Api) -> int:
    return await new_member(api.sessions, api.clock, "nul")


@pytest.mark.parametrize("text", [NUL, LONE_SURROGATE], ids=["nul", "lone-surrogate"])
async def test_unstorable_text_is_the_clients_mistake_in_every_string_input(
    engine: AsyncEngine, make_api: ApiFactory, text: str
) -> None:
    api = await make_api(engine, production=True)
    service = await api.key(KeyRole.SERVICE)
    admin = await api.key(KeyRole.ADMIN)
    member_id = await _member(api)
    member_gid = encode_id("Member", member_id)

    attempts = [
        (REFUND, {"input": {"orderId": text, "refundId": "r1"}}, service),
        (USE, {"input": {"code": text}}, service),
        (BY_EXTERNAL_ID, {"externalId": text}, service),
        (PURCHASE, {"input": {"memberId": member_gid, "orderId": text, "amount": 10}}, service),
        (PURCHASE, {"input": {"externalId": text, "orderId": "o-2", "amount": 10}}, service),
        (UPDATE, {"input": {"id": member_gid, "attributes": {"note": text}}}, admin),
        (UPDATE, {"input": {"id": member_gid, "attributes": {text: "x"}}}, admin),
        (UPDATE, {"input": {"id": member_gid, "displayName": text}}, admin),
    ]
    for query, variables, key in attempts:
        response = await api.client.post(
            "/graphql",
            # json.dumps escapes a lone surrogate as \\ud800, as a browser's JSON.stringify does.
            content=json.dumps({"query": query, "variables": variables}),
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        )
        body = response.json()
        assert _codes(body) == ["BAD_USER_INPUT"], (query, body)
        assert "data" not in body or body["data"] is None
        message = body["errors"][0]["message"]
        # A lone surrogate is already refused as the body is parsed (not valid UTF-8 JSON).
        assert any(reason in message for reason in ("NUL", "Unicode", "JSON")), message

    async with api.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(LedgerEntry)) == 0
        member = await session.get(Member, member_id)
        assert member is not None and member.display_name == "Nul"
        assert not member.attributes


async def test_a_nul_escape_in_a_document_literal_is_refused_too(
    engine: AsyncEngine, make_api: ApiFactory
) -> None:
    api = await make_api(engine, production=True)
    service = await api.key(KeyRole.SERVICE)
    body = await api.gql('{ member(externalId: "a\\u0000b") { id } }', token=service)
    assert _codes(body) == ["BAD_USER_INPUT"], body


@pytest.mark.parametrize(
    "document",
    [
        "{ program { nmae } }",
        "query($x: Quer) { program { name } }",
        "{ memberz { id } }",
        'mutation { recordPurchase(input: {orderId: "o", amount: 1, amout: 2}) { __typename } }',
    ],
)
async def test_production_errors_suggest_no_names(
    engine: AsyncEngine, make_api: ApiFactory, document: str
) -> None:
    api = await make_api(engine, production=True)
    service = await api.key(KeyRole.SERVICE)
    body: dict[str, Any] = await api.gql(document, token=service)
    assert _codes(body), body
    for error in body["errors"]:
        assert "Did you mean" not in error["message"], error


async def test_development_errors_keep_their_suggestions(
    engine: AsyncEngine, make_api: ApiFactory
) -> None:
    api = await make_api(engine)
    body = await api.gql("{ program { nmae } }")
    assert "Did you mean 'name'?" in body["errors"][0]["message"]  # type: ignore[index]


async def test_an_oversized_body_is_refused_with_413_before_it_runs(
    engine: AsyncEngine, make_api: ApiFactory
) -> None:
    api = await make_api(engine, production=True)
    service = await api.key(KeyRole.SERVICE)
    headers = {"authorization": f"Bearer {service}"}
    comment = "#" + "x" * (101 * 1024) + "\n"
    big = await api.client.post(
        "/graphql", json={"query": comment + "{ program { name } }"}, headers=headers
    )
    assert big.status_code == 413
    assert big.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

    async def chunks() -> Any:  # no Content-Length: counted as it arrives
        yield b'{"query": "{ program { name } }", "variables": {"pad": "'
        for _ in range(30):
            yield b"y" * 4096
        yield b'"}}'

    streamed = await api.client.post(
        "/graphql", content=chunks(), headers={**headers, "content-type": "application/json"}
    )
    assert streamed.status_code == 413

    small = await api.client.post(
        "/graphql", json={"query": "#" + "x" * 1000 + "\n{ program { name } }"}, headers=headers
    )
    assert small.status_code == 200 and small.json()["data"]["program"]["name"]
