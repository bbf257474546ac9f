"""Query limits, error codes and malformed requests, end to end through LaurelGraphQL."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import pytest
import strawberry
from graphql import get_introspection_query, parse, specified_rules, validate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from api import pages
from api.graphql_view import LaurelGraphQL
from schema.error_codes import ErrorCodes
from schema.exceptions import Forbidden, RateLimited, Unauthenticated
from schema.limits import (
    QueryLimits,
    QueryLimitsExtension,
    check_document,
    limit_extensions,
    measure_document,
    query_limits_rule,
)

# Resolver calls, to prove refused documents never execute.
CALLS: list[str] = []


@strawberry.type
class Node:
    name: str | None = "node"

    @strawberry.field
    def child(self, first: int | None = 10) -> Node | None:
        CALLS.append("child")
        return Node()


@strawberry.type
class Query:
    @strawberry.field
    def node(self) -> Node:
        CALLS.append("node")
        return Node()

    @strawberry.field
    def forbidden(self) -> str | None:
        raise Forbidden("nope")

    @strawberry.field
    def boom(self) -> str | None:
        raise RuntimeError("SELECT secret FROM x")

    @strawberry.field
    def limited(self) -> str | None:
        raise RateLimited("slow down", retryAfter=3)

    @strawberry.field
    def echo(self, value: int) -> int:
        return value


@strawberry.type
class Mutation:
    @strawberry.mutation
    def touch(self) -> bool:
        CALLS.append("touch")
        return True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def ticks(self) -> AsyncGenerator[int, None]:
        yield 1
        raise RuntimeError("SELECT secret FROM ws")

    @strawberry.subscription
    async def denied(self) -> AsyncGenerator[int, None]:
        raise Forbidden("not yours")
        yield 0  # pragma: no cover


def make_schema(
    *, mask_internal: bool = True, limits: QueryLimits | None = None
) -> strawberry.Schema:
    return strawberry.Schema(
        Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[
            *limit_extensions(limits or QueryLimits()),
            lambda: ErrorCodes(mask_internal=mask_internal),
        ],
    )


SCHEMA = make_schema()
UNMASKED_SCHEMA = make_schema(mask_internal=False)


async def plain_context(request: Request | WebSocket, response: Response | None) -> dict[str, Any]:
    return {"request": request, "response": response}


def make_app(
    schema: strawberry.Schema = SCHEMA,
    context_getter: Callable[
        [Request | WebSocket, Response | None], Awaitable[object]
    ] = plain_context,
) -> Starlette:
    view = LaurelGraphQL(schema, context_getter=context_getter, graphiql=False)
    return Starlette(routes=[Route("/graphql", view), WebSocketRoute("/graphql", view)])


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


async def post(client: httpx.AsyncClient, query: str, **variables: object) -> httpx.Response:
    body: dict[str, object] = {"query": query}
    if variables:
        body["variables"] = variables
    return await client.post("/graphql", json=body)


def codes(response: httpx.Response) -> list[str]:
    return [error["extensions"]["code"] for error in response.json()["errors"]]


def nested(levels: int, leaf: str = "name") -> str:
    """`{ node { child(first: 1) { ... leaf } } }`: depth levels + 2, cost levels + 2."""
    return "{ node { " + "child(first: 1) { " * levels + leaf + " }" * levels + " } }"


# -- depth ---------------------------------------------------------------------------------


async def test_depth_12_is_accepted(client: httpx.AsyncClient) -> None:
    response = await post(client, nested(10))
    assert response.status_code == 200
    assert "errors" not in response.json()


async def test_depth_13_is_refused_before_anything_runs(client: httpx.AsyncClient) -> None:
    response = await post(client, nested(11))
    body = response.json()
    assert body["data"] is None
    assert codes(response) == ["QUERY_TOO_COMPLEX"]
    assert "13 levels deep" in body["errors"][0]["message"]
    assert CALLS == []


async def test_depth_follows_fragments(client: httpx.AsyncClient) -> None:
    query = (
        "{ node { ...A } }"
        " fragment A on Node { child(first: 1) { child(first: 1) { ...B } } }"
        " fragment B on Node { " + "child(first: 1) { " * 8 + "name" + " }" * 8 + " }"
    )
    # node 1 + A 2 + B 8 + name 1 = 12
    assert "errors" not in (await post(client, query)).json()
    deeper = query.replace("{ ...B }", "{ child(first: 1) { ...B } }")
    assert codes(await post(client, deeper)) == ["QUERY_TOO_COMPLEX"]


# -- aliases -------------------------------------------------------------------------------


async def test_50_aliases_accepted_51_refused(client: httpx.AsyncClient) -> None:
    fifty = "{ " + " ".join(f"a{i}: node {{ name }}" for i in range(50)) + " }"
    assert "errors" not in (await post(client, fifty)).json()
    CALLS.clear()
    response = await post(client, fifty.replace("{ a0:", "{ extra: node { name } a0:"))
    assert codes(response) == ["QUERY_TOO_COMPLEX"]
    assert "51 aliases" in response.json()["errors"][0]["message"]
    assert CALLS == []


async def test_aliases_count_each_use_of_a_fragment(client: httpx.AsyncClient) -> None:
    fragment = "fragment F on Node { " + " ".join(f"n{i}: name" for i in range(20)) + " }"
    three_uses = "{ node { ...F child(first: 1) { ...F child(first: 1) { ...F } } } } " + fragment
    assert codes(await post(client, three_uses)) == ["QUERY_TOO_COMPLEX"]


# -- tokens --------------------------------------------------------------------------------


async def test_more_than_10000_tokens_refused(client: httpx.AsyncClient) -> None:
    query = "{ node { " + "name " * 10_000 + "} }"
    response = await post(client, query)
    assert response.status_code == 200
    assert codes(response) == ["QUERY_TOO_COMPLEX"]
    assert "10000 tokens" in response.json()["errors"][0]["message"]


async def test_comments_count_as_tokens(client: httpx.AsyncClient) -> None:
    query = "#\n" * 10_001 + "{ node { name } }"
    assert codes(await post(client, query)) == ["QUERY_TOO_COMPLEX"]


async def test_a_document_nested_past_the_parser_bound_is_too_complex(
    client: httpx.AsyncClient,
) -> None:
    query = "{" + "node{" * 300 + "name" + "}" * 301
    assert codes(await post(client, query)) == ["QUERY_TOO_COMPLEX"]


# -- cost ----------------------------------------------------------------------------------


async def test_cost_bomb_with_literal_first_refused(client: httpx.AsyncClient) -> None:
    query = "{ node { child(first: 100) { child(first: 100) { name } } } }"
    response = await post(client, query)
    assert codes(response) == ["QUERY_TOO_COMPLEX"]
    # node 1 + child 1 + child 100 + name 10,000
    assert "cost 10102" in response.json()["errors"][0]["message"]
    assert CALLS == []


async def test_cost_reads_variables_and_their_defaults(client: httpx.AsyncClient) -> None:
    query = "query($n: Int = 100) { node { child(first: $n) { child(first: $n) { name } } } }"
    assert codes(await post(client, query)) == ["QUERY_TOO_COMPLEX"]
    assert codes(await post(client, query, n=100)) == ["QUERY_TOO_COMPLEX"]
    assert "errors" not in (await post(client, query, n=5)).json()


async def test_cost_uses_the_schema_default_of_first(client: httpx.AsyncClient) -> None:
    # child(first: Int = 10): 1 + 1 + 10 + 100 + 1,000 + 10,000
    query = "{ node { child { child { child { child { name } } } } } }"
    assert codes(await post(client, query)) == ["QUERY_TOO_COMPLEX"]
    # 1 + 1 + 10 + 100 + 1,000 = 1,112
    assert (
        "errors"
        not in (await post(client, "{ node { child { child { child { name } } } } }")).json()
    )


def test_measure_reports_depth_aliases_and_cost() -> None:
    document = parse(
        "query Q { node { a: name ...F } } fragment F on Node { child(first: 3) { b: name name } }"
    )
    [measure] = measure_document(SCHEMA._schema, document)
    assert (measure.depth, measure.aliases, measure.cost) == (3, 2, 1 + 1 + 1 + 3 * 2)


# -- fragments arranged to explode ---------------------------------------------------------


def fragment_chain(length: int, body: Callable[[int], str]) -> str:
    fragments = [f"fragment F{i} on Node {{ {body(i)} }}" for i in range(length)]
    fragments.append(f"fragment F{length} on Node {{ name }}")
    return "{ node { ...F0 } }\n" + "\n".join(fragments)


def doubling(i: int) -> str:
    return f"x{i}: name ...F{i + 1} ...F{i + 1}"


def test_exponential_fragment_chain_is_measured_in_linear_steps() -> None:
    document = parse(fragment_chain(40, doubling))
    [measure] = measure_document(SCHEMA._schema, document)
    # 2^40 uses of the last fragments: saturated, far past every bound...
    assert measure.aliases > 2**39
    assert measure.cost > 2**39
    assert measure.depth == 2
    # ... yet each selection of the document was looked at a bounded number of times.
    selections = 1 + 1 + 40 * 3 + 1
    assert measure.steps <= 2 * selections


async def test_exponential_fragment_chain_refused_for_aliases_and_cost(
    client: httpx.AsyncClient,
) -> None:
    response = await post(client, fragment_chain(40, doubling))
    body = response.json()
    assert body["data"] is None
    assert codes(response) == ["QUERY_TOO_COMPLEX", "QUERY_TOO_COMPLEX"]
    messages = " ".join(error["message"] for error in body["errors"])
    assert "aliases" in messages
    assert "cost" in messages
    assert CALLS == []


async def test_exponential_chain_without_aliases_refused_for_cost(
    client: httpx.AsyncClient,
) -> None:
    response = await post(client, fragment_chain(40, lambda i: f"name ...F{i + 1} ...F{i + 1}"))
    assert codes(response) == ["QUERY_TOO_COMPLEX"]
    assert "cost" in response.json()["errors"][0]["message"]


async def test_nested_exponential_chain_refused(client: httpx.AsyncClient) -> None:
    chain = fragment_chain(
        40, lambda i: f"a: child(first: 1) {{ ...F{i + 1} }} b: child(first: 1) {{ ...F{i + 1} }}"
    )
    assert set(codes(await post(client, chain))) == {"QUERY_TOO_COMPLEX"}


async def test_fragment_cycles_are_reported_not_followed(client: httpx.AsyncClient) -> None:
    query = (
        "{ node { ...A } }"
        " fragment A on Node { name ...B ...B }"
        " fragment B on Node { child(first: 1) { ...A ...A } }"
    )
    response = await post(client, query)
    assert response.status_code == 200
    assert set(codes(response)) == {"BAD_USER_INPUT"}
    assert any("Cannot spread fragment" in e["message"] for e in response.json()["errors"])


async def test_unknown_fragment_is_bad_user_input(client: httpx.AsyncClient) -> None:
    response = await post(client, "{ node { ...Nope } }")
    assert codes(response) == ["BAD_USER_INPUT"]


def test_rule_works_with_graphql_core_validate() -> None:
    rule = query_limits_rule(QueryLimits(max_depth=2))
    errors = validate(
        SCHEMA._schema, parse("{ node { child { name } } }"), [*specified_rules, rule]
    )
    assert [error.extensions for error in errors] == [{"code": "QUERY_TOO_COMPLEX"}]
    assert validate(SCHEMA._schema, parse("{ node { name } }"), [*specified_rules, rule]) == []


def test_check_document_with_custom_limits() -> None:
    limits = QueryLimits(max_depth=100, max_aliases=100, max_cost=3)
    document = parse("{ node { child(first: $n) { name } } }")
    assert check_document(SCHEMA._schema, document, limits, {"n": 1}) == []
    [error] = check_document(SCHEMA._schema, document, limits, {"n": 2})
    assert error.extensions == {"code": "QUERY_TOO_COMPLEX"}
    assert QueryLimitsExtension().limits == QueryLimits()


# -- introspection -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "specified_by_url": True,
            "directive_is_repeatable": True,
            "schema_description": True,
            "input_value_deprecation": True,
            "one_of": True,
        },
    ],
)
async def test_introspection_query_is_accepted(
    client: httpx.AsyncClient, options: dict[str, bool]
) -> None:
    response = await post(client, get_introspection_query(**options))
    body = response.json()
    assert "errors" not in body, body.get("errors")
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_deep_introspection_still_bounded(client: httpx.AsyncClient) -> None:
    query = '{ __type(name: "Node") { ' + "fields { type { " * 6 + "name" + " } }" * 6 + " } }"
    assert codes(await post(client, query)) == ["QUERY_TOO_COMPLEX"]


# -- error codes ---------------------------------------------------------------------------


async def test_forbidden_keeps_its_code_and_message(client: httpx.AsyncClient) -> None:
    response = await post(client, "{ forbidden }")
    body = response.json()
    assert body["data"] == {"forbidden": None}
    assert body["errors"][0]["message"] == "nope"
    assert body["errors"][0]["extensions"] == {"code": "FORBIDDEN"}


async def test_coded_error_extensions_are_kept(client: httpx.AsyncClient) -> None:
    response = await post(client, "{ limited }")
    assert response.json()["errors"][0]["extensions"] == {"code": "RATE_LIMITED", "retryAfter": 3}


async def test_syntax_error_is_bad_user_input(client: httpx.AsyncClient) -> None:
    response = await post(client, "{ node { name }")
    assert response.json()["data"] is None
    assert codes(response) == ["BAD_USER_INPUT"]
    assert response.json()["errors"][0]["message"].startswith("Syntax Error")


async def test_unknown_field_is_bad_user_input(client: httpx.AsyncClient) -> None:
    response = await post(client, "{ node { nope } }")
    assert codes(response) == ["BAD_USER_INPUT"]
    assert "nope" in response.json()["errors"][0]["message"]


async def test_bad_variable_value_is_bad_user_input(client: httpx.AsyncClient) -> None:
    response = await post(client, "query($v: Int!) { echo(value: $v) }", v="abc")
    assert codes(response) == ["BAD_USER_INPUT"]
    assert "$v" in response.json()["errors"][0]["message"]


async def test_bad_variable_type_is_bad_user_input(client: httpx.AsyncClient) -> None:
    response = await post(client, "query($v: String) { echo(value: $v) }", v="1")
    assert codes(response) == ["BAD_USER_INPUT"]


async def test_internal_error_is_masked_and_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="laurel.graphql"):
        response = await post(client, "{ boom node { name } }")
    body = response.json()
    assert body["data"] == {"boom": None, "node": {"name": "node"}}
    assert body["errors"] == [
        {
            "message": "Unexpected error.",
            "locations": [{"line": 1, "column": 3}],
            "path": ["boom"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
        }
    ]
    assert "SELECT" not in response.text
    assert "secret" not in response.text
    [record] = [r for r in caplog.records if r.name == "laurel.graphql"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_internal_error_unmasked_keeps_message() -> None:
    transport = httpx.ASGITransport(app=make_app(UNMASKED_SCHEMA))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await post(http, "{ boom }")
    [error] = response.json()["errors"]
    assert error["message"] == "SELECT secret FROM x"
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}


async def test_coded_error_from_the_context_getter() -> None:
    async def refuse(request: Request | WebSocket, response: Response | None) -> object:
        raise Unauthenticated("Invalid token.")

    transport = httpx.ASGITransport(app=make_app(context_getter=refuse))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await post(http, "{ node { name } }")
    assert response.status_code == 401
    assert response.json() == {
        "data": None,
        "errors": [{"message": "Invalid token.", "extensions": {"code": "UNAUTHENTICATED"}}],
    }


async def test_unexpected_error_outside_execution_is_a_json_500() -> None:
    async def broken(request: Request | WebSocket, response: Response | None) -> object:
        raise RuntimeError("SELECT secret FROM ctx")

    transport = httpx.ASGITransport(app=make_app(context_getter=broken))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await post(http, "{ node { name } }")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json()["errors"][0]["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert "SELECT" not in response.text


# -- malformed HTTP requests ---------------------------------------------------------------

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{", id="not-json"),
        pytest.param(b'{"query": "\xff\xfe"}', id="invalid-utf8"),
        pytest.param(b'[{"query": "{ node { name } }"}]', id="batch-list"),
        pytest.param(b'"{ node { name } }"', id="json-string"),
        pytest.param(b"1", id="json-number"),
        pytest.param(b"null", id="json-null"),
        pytest.param(b"[" * 100_000, id="nested-100000"),
        pytest.param(b'{"a": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", id="nested-5000"),
        pytest.param(b"{}", id="missing-query"),
        pytest.param(b'{"query": ""}', id="empty-query"),
        pytest.param(b'{"query": 1}', id="non-string-query"),
        pytest.param(b'{"query": ["{ node { name } }"]}', id="list-query"),
        pytest.param(b'{"query": "{ node { name } }", "variables": [1]}', id="variables-list"),
        pytest.param(b'{"query": "{ node { name } }", "variables": "x"}', id="variables-str"),
        pytest.param(b'{"query": "{ node { name } }", "operationName": 1}', id="operation-int"),
        pytest.param(b'{"query": "query A { node { name } }", "operationName": "B"}', id="no-op"),
    ],
)
async def test_malformed_body_is_a_400_json_error(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/graphql", content=body, headers=JSON)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert payload["data"] is None
    assert [error["extensions"]["code"] for error in payload["errors"]] == ["BAD_USER_INPUT"]
    assert payload["errors"][0]["message"]
    assert CALLS == []


async def test_unsupported_content_type_is_a_415_json_error(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", content=b"{ node { name } }")
    assert response.status_code == 415
    assert codes(response) == ["BAD_USER_INPUT"]


async def test_mutation_over_get_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": "mutation { touch }"})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"] == "application/json"
    assert codes(response) == ["BAD_USER_INPUT"]
    assert CALLS == []


async def test_query_over_get_works(client: httpx.AsyncClient) -> None:
    params = {"query": "query($n: Int) { node { child(first: $n) { name } } }"}
    response = await client.get("/graphql", params={**params, "variables": '{"n": 1}'})
    assert response.json() == {"data": {"node": {"child": {"name": "node"}}}}
    response = await client.get("/graphql", params={**params, "variables": "null"})
    assert "errors" not in response.json()
    response = await client.get("/graphql", params={**params, "variables": "[1]"})
    assert response.status_code == 400
    assert codes(response) == ["BAD_USER_INPUT"]


async def test_other_methods_are_a_405_json_error(client: httpx.AsyncClient) -> None:
    response = await client.put("/graphql", json={"query": "{ node { name } }"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert codes(response) == ["BAD_USER_INPUT"]


async def test_graphiql_disabled_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 404
    assert codes(response) == ["BAD_USER_INPUT"]


async def test_graphiql_enabled_serves_html() -> None:
    view = LaurelGraphQL(SCHEMA, context_getter=plain_context, graphiql=True)
    transport = httpx.ASGITransport(app=Starlette(routes=[Route("/graphql", view)]))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()
    # Laurel's own page, whose script sends the Headers pane's Authorization in
    # connection_init for subscriptions (tests/browser runs it)
    assert '<script src="static/graphiql.js" defer></script>' in response.text
    script = (pages.STATIC / "graphiql.js").read_text()
    assert "wsConnectionParams: authorization ? { authorization } : {}" in script


# -- WebSocket (graphql-transport-ws) ------------------------------------------------------


class WebSocketSession:
    """A minimal in-memory ASGI WebSocket client."""

    def __init__(self, app: Starlette, subprotocols: list[str]) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self.scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"test")],
            "client": ("test", 1),
            "server": ("test", 80),
            "subprotocols": subprotocols,
            "state": {},
        }
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WebSocketSession:
        self.task = asyncio.create_task(self.app(self.scope, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "websocket.connect"})
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.inbox.put({"type": "websocket.disconnect", "code": 1000})
        assert self.task is not None
        await asyncio.wait_for(self.task, 5)

    async def event(self) -> MutableMapping[str, Any]:
        return await asyncio.wait_for(self.outbox.get(), 5)

    async def send(self, message: dict[str, Any]) -> None:
        await self.inbox.put({"type": "websocket.receive", "text": json.dumps(message)})

    async def receive(self) -> dict[str, Any]:
        event = await self.event()
        assert event["type"] == "websocket.send", event
        # graphql-transport-ws clients read text frames only.
        assert event.get("text") is not None, event
        message: dict[str, Any] = json.loads(event["text"])
        return message


async def connect(session: WebSocketSession) -> None:
    accepted = await session.event()
    assert accepted == {
        "type": "websocket.accept",
        "subprotocol": "graphql-transport-ws",
        "headers": [],
    }
    await session.send({"type": "connection_init", "payload": {}})
    assert (await session.receive())["type"] == "connection_ack"


async def test_subscription_errors_are_coded_and_masked() -> None:
    async with WebSocketSession(make_app(), ["graphql-transport-ws"]) as session:
        await connect(session)
        await session.send(
            {"id": "1", "type": "subscribe", "payload": {"query": "subscription { ticks }"}}
        )
        first = await session.receive()
        assert first == {"id": "1", "type": "next", "payload": {"data": {"ticks": 1}}}
        second = await session.receive()
        assert second["type"] == "next"
        [error] = second["payload"]["errors"]
        assert error["message"] == "Unexpected error."
        assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
        assert "SELECT" not in json.dumps(second)
        assert (await session.receive()) == {"id": "1", "type": "complete"}

        await session.send(
            {"id": "2", "type": "subscribe", "payload": {"query": "subscription { denied }"}}
        )
        denied = await session.receive()
        assert denied["payload"]["errors"][0]["extensions"] == {"code": "FORBIDDEN"}
        assert denied["payload"]["errors"][0]["message"] == "not yours"
        assert (await session.receive())["type"] == "complete"


async def test_websocket_validation_and_limits_have_codes() -> None:
    async with WebSocketSession(make_app(), ["graphql-transport-ws"]) as session:
        await connect(session)
        await session.send(
            {"id": "1", "type": "subscribe", "payload": {"query": "subscription { nope }"}}
        )
        invalid = await session.receive()
        assert invalid["type"] == "error"
        assert [e["extensions"]["code"] for e in invalid["payload"]] == ["BAD_USER_INPUT"]

        await session.send({"id": "2", "type": "subscribe", "payload": {"query": nested(11)}})
        too_deep = await session.receive()
        assert too_deep["type"] == "error"
        assert [e["extensions"]["code"] for e in too_deep["payload"]] == ["QUERY_TOO_COMPLEX"]

        await session.send({"id": "3", "type": "subscribe", "payload": {"query": "{ boom }"}})
        boom = await session.receive()
        assert boom["payload"]["errors"][0]["message"] == "Unexpected error."
        assert (await session.receive())["type"] == "complete"


async def test_only_graphql_transport_ws_is_spoken() -> None:
    async with WebSocketSession(make_app(), ["graphql-ws"]) as session:
        accepted = await session.event()
        assert accepted["type"] == "websocket.accept"
        assert accepted.get("subprotocol") is None
        closed = await session.event()
        assert closed["type"] == "websocket.close"
        assert closed["code"] == 4406


async def test_websocket_unknown_operation_name_still_closes_the_socket() -> None:
    async with WebSocketSession(make_app(), ["graphql-transport-ws"]) as session:
        await connect(session)
        payload = {"query": "subscription A { ticks }", "operationName": "B"}
        await session.send({"id": "1", "type": "subscribe", "payload": payload})
        closed = await session.event()
        assert closed["type"] == "websocket.close"
        assert closed["code"] == 4400


# -- the view's safety net and code_error --------------------------------------------------


async def test_view_codes_errors_even_without_the_extension() -> None:
    transport = httpx.ASGITransport(app=make_app(strawberry.Schema(Query)))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        boom = await post(http, "{ boom }")
        unknown = await post(http, "{ nope }")
        forbidden = await post(http, "{ forbidden }")
    assert boom.json()["errors"][0]["message"] == "Unexpected error."
    assert codes(boom) == ["INTERNAL_SERVER_ERROR"]
    assert "SELECT" not in boom.text
    assert codes(unknown) == ["BAD_USER_INPUT"]
    assert codes(forbidden) == ["FORBIDDEN"]


def test_code_error_rules() -> None:
    from graphql import GraphQLError
    from strawberry.relay.types import GlobalIDValueError

    from schema.error_codes import code_error

    bad_id = GraphQLError("bad id", original_error=GlobalIDValueError("x"), path=["node"])
    assert code_error(bad_id, mask_internal=True).extensions == {"code": "BAD_USER_INPUT"}

    kept = GraphQLError("limit", extensions={"code": "QUERY_TOO_COMPLEX"})
    assert code_error(kept, mask_internal=True) is kept

    raw = GraphQLError("password=hunter2", original_error=KeyError("k"), path=["a", 0])
    masked = code_error(raw, mask_internal=True)
    assert masked.formatted == {
        "message": "Unexpected error.",
        "path": ["a", 0],
        "extensions": {"code": "INTERNAL_SERVER_ERROR"},
    }
    assert masked.original_error is None
    assert masked.__cause__ is None
    assert masked.__context__ is None
    # Coding is idempotent: a coded error is left alone.
    assert code_error(masked, mask_internal=True) is masked
