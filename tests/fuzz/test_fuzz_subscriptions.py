"""A property-based fuzz of every subscription over a real WebSocket (graphql-transport-ws).

`laurel serve` runs in production mode on the test PostgreSQL database, loaded with the demo
program; each case connects as an admin, service or partner key or a member token (or, as
anonymous, with a hostile `authorization`), subscribes to one root field written by
hypothesis-graphql (the same scalar strategies as test_fuzz_operations: real IDs, NUL bytes,
SQL, long text), its arguments as literals, as variables, or as variables of the wrong JSON
type, then completes it. Whatever it is, the connection handler must survive it: every
refusal is a graphql-transport-ws `error` message holding GraphQL errors with a code (never
INTERNAL_SERVER_ERROR, never internals), the connection still answers `ping` with `pong`,
and the server logs no error. A table of malformed protocol messages checks the same of the
handler itself: a protocol close code (44xx), never 1011 (internal error).

hypothesis-graphql writes no subscriptions: its query strategy is given a schema whose query
root is Laurel's Subscription type, and the operation is turned into a subscription.
Cases per field: LAUREL_FUZZ_EXAMPLES (default 20), derandomized when CI=true.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import graphql
import pytest
import websockets
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis_graphql import queries
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection

from services.clock import ManualClock
from tests.fuzz.test_fuzz_operations import (
    EXAMPLES,
    HOSTILE,
    IN_CI,
    ROLES,
    SCHEMA,
    _as_variables,
    _leaks,
    load_world,
)
from tests.live.conftest import Server, free_port, server_env

assert SCHEMA.subscription_type is not None
FIELDS = list(SCHEMA.subscription_type.fields)
# The subscription root as a query root, so that hypothesis-graphql writes its selections.
AS_QUERIES = graphql.GraphQLSchema(
    query=SCHEMA.subscription_type,
    types=[t for name, t in SCHEMA.type_map.items() if not name.startswith("__")],
)
PROTOCOL = "graphql-transport-ws"
FIRST_MESSAGE_SECONDS = 0.3  # how long a case waits for the operation's first message

# JSON values of any type, for variables sent with the wrong one.
WRONG_JSON = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(HOSTILE),
    st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.sampled_from(["a", "period", "__proto__"]), st.integers(), max_size=2),
)


@dataclass
class Live:
    server: Server
    credentials: dict[str, str | None]
    scalars: dict[str, st.SearchStrategy[graphql.ValueNode]]
    connections: dict[str, ClientConnection] = field(default_factory=dict)
    documents: dict[str, st.SearchStrategy[str]] = field(default_factory=dict)

    def documents_for(self, name: str) -> st.SearchStrategy[str]:
        if name not in self.documents:
            self.documents[name] = queries(
                AS_QUERIES, fields=[name], custom_scalars=self.scalars
            ).map(_as_subscription)
        return self.documents[name]

    async def connection(self, role: str) -> ClientConnection:
        """This role's open connection (acknowledged), opened again if the last case's
        assertions left it closed."""
        known = self.connections.get(role)
        if known is not None and known.close_code is None:
            return known
        connection = await connect(self.server)
        credential = self.credentials[role]
        await send(connection, {"type": "connection_init", "payload": auth(credential)})
        ack = await receive(connection)
        assert ack["type"] == "connection_ack", ack
        self.connections[role] = connection
        return connection


def _as_subscription(document: str) -> str:
    parsed = graphql.parse(document)
    operation = parsed.definitions[0]
    assert isinstance(operation, graphql.OperationDefinitionNode)
    operation = dataclasses.replace(operation, operation=graphql.OperationType.SUBSCRIPTION)
    return graphql.print_ast(graphql.DocumentNode(definitions=(operation,)))


def auth(credential: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {credential}"} if credential is not None else {}


async def connect(server: Server) -> ClientConnection:
    return await websockets.connect(
        server.ws, subprotocols=[websockets.Subprotocol(PROTOCOL)], open_timeout=5
    )


async def send(connection: ClientConnection, message: object) -> None:
    await connection.send(json.dumps(message))


async def receive(connection: ClientConnection, within: float = 5) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(connection.recv(), within))
    assert isinstance(message, dict), message
    return message


def assert_graphql_errors(errors: object) -> None:
    """GraphQL errors as the protocol carries them: each with a message and a code, none an
    internal error, none showing internals."""
    assert isinstance(errors, list) and errors, errors
    for error in errors:
        assert isinstance(error, dict) and isinstance(error.get("message"), str), error
        code = (error.get("extensions") or {}).get("code")
        assert isinstance(code, str) and code != "INTERNAL_SERVER_ERROR", error
    assert list(_leaks(errors)) == [], errors


@pytest.fixture(scope="module")
async def live(pg_engine: AsyncEngine) -> AsyncIterator[Live]:
    # The server runs on the real clock: the demo is built up to now, the token valid now.
    credentials, scalars = await load_world(pg_engine, ManualClock(datetime.now(UTC)))
    server = Server(
        free_port(),
        server_env(
            f"laureltest:{uuid.uuid4().hex[:12]}:",
            LAUREL_RATE_LIMITS="false",  # the fuzz calls fast: no 429s in the way
            LAUREL_MAX_SUBSCRIPTIONS_PER_CONNECTION="3",
        ),
    ).start()
    target = Live(server, credentials, scalars)
    try:
        yield target
        # The handler met no case it did not expect: nothing logged as an error.
        errors = [line for line in server.output().splitlines() if '"level":"ERROR"' in line]
        assert errors == [], "\n".join(errors)
    finally:
        for connection in target.connections.values():
            await connection.close()
        server.stop()


def _cases() -> Iterator[str]:
    yield from FIELDS


@pytest.mark.parametrize("name", list(_cases()))
@settings(
    max_examples=EXAMPLES,
    derandomize=IN_CI,
    database=None if IN_CI else settings().database,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
async def test_no_subscription_breaks_the_connection_or_leaks_internals(
    live: Live, name: str, data: st.DataObject
) -> None:
    document = data.draw(live.documents_for(name), "document")
    role = data.draw(st.sampled_from(ROLES), "role")
    variables: dict[str, Any] = {}
    how = data.draw(st.sampled_from(["literals", "variables", "wrong variables"]), "as")
    if how != "literals":
        document, variables = _as_variables(document, "subscription")
        if how == "wrong variables":
            variables = {key: data.draw(WRONG_JSON, key) for key in variables}
    note(f"as {role}: {json.dumps({'query': document, 'variables': variables})}")

    if role == "anonymous":
        # No credential, or a hostile one: refused at connection_init with 4403, cleanly.
        credential = data.draw(st.one_of(st.none(), st.sampled_from(HOSTILE)), "credential")
        connection = await connect(live.server)
        try:
            await send(connection, {"type": "connection_init", "payload": auth(credential)})
            with pytest.raises(websockets.ConnectionClosed):
                await receive(connection)
            assert connection.close_code == 4403, connection.close_reason
        finally:
            await connection.close()
        return

    connection = await live.connection(role)
    operation = uuid.uuid4().hex
    await send(
        connection,
        {
            "id": operation,
            "type": "subscribe",
            "payload": {"query": document, "variables": variables},
        },
    )
    ended = False
    try:
        while True:
            message = await receive(connection, FIRST_MESSAGE_SECONDS)
            if message.get("id") != operation:
                continue  # a late message of an earlier case's operation
            if message["type"] == "error":
                assert_graphql_errors(message["payload"])
                ended = True
            elif message["type"] == "next":
                errors = message["payload"].get("errors")
                if errors is not None:
                    assert_graphql_errors(errors)
            else:
                assert message["type"] == "complete", message
                ended = True
            break
    except TimeoutError:
        pass  # live, and nothing to say yet
    if not ended:
        await send(connection, {"id": operation, "type": "complete"})
    # The handler is still there: it answers a ping on the same connection
    await send(connection, {"type": "ping"})
    while (message := await receive(connection))["type"] != "pong":
        assert message.get("type") in ("next", "complete", "error"), message
        if message["type"] == "error":
            assert_graphql_errors(message["payload"])


SUBSCRIBE = "subscription { pointsUpdated { balance { available } } }"

# Messages a client may send by mistake or on purpose, after a valid connection_init as a
# member, and what graphql-transport-ws prescribes: the close code, or None when the
# operation is answered (`next`, `error` or `complete`) and the connection stays.
MALFORMED: list[tuple[str, object, int | None]] = [
    ("not JSON", "{", 4400),
    ("JSON, not an object", "[1, 2]", 4400),
    ("a JSON string", '"subscribe"', 4400),
    ("no type", {"id": "1"}, 4400),
    ("type a number", {"type": 1}, 4400),
    ("unknown type", {"type": "hello"}, 4400),
    ("subscribe without id", {"type": "subscribe", "payload": {"query": SUBSCRIBE}}, 4400),
    ("subscribe without payload", {"type": "subscribe", "id": "1"}, 4400),
    ("payload not an object", {"type": "subscribe", "id": "1", "payload": "x"}, 4400),
    ("query a number", {"type": "subscribe", "id": "1", "payload": {"query": 1}}, 4400),
    ("id a number", {"type": "subscribe", "id": 1, "payload": {"query": SUBSCRIBE}}, 4400),
    ("complete, id an object", {"type": "complete", "id": {}}, 4400),
    (
        "variables a list",
        {"type": "subscribe", "id": "1", "payload": {"query": SUBSCRIBE, "variables": [1]}},
        4400,
    ),
    (
        "operationName a list",
        {"type": "subscribe", "id": "1", "payload": {"query": SUBSCRIBE, "operationName": []}},
        4400,
    ),
    ("second connection_init", {"type": "connection_init", "payload": {}}, 4429),
    (
        "an integer past 64 bits",
        '{"type": "subscribe", "id": "1", "payload": {"query": "subscription($f: Int) '
        '{ leaderboardUpdated(period: ALL_TIME, first: $f) { totalRanked } }", '
        '"variables": {"f": 123456789012345678901234567890}}}',
        None,
    ),
    # The reference server (graphql-ws) closes on a document that does not parse, too.
    (
        "a syntax error",
        {"type": "subscribe", "id": "1", "payload": {"query": "subscription {"}},
        4400,
    ),
    (
        "NUL in the document",
        {"type": "subscribe", "id": "1", "payload": {"query": "subscription { \u0000 }"}},
        4400,
    ),
    (
        "a document over the size limit (RFC 6455: message too big)",
        {"type": "subscribe", "id": "1", "payload": {"query": "#" + "x" * 200_000}},
        1009,
    ),
    ("a query", {"type": "subscribe", "id": "1", "payload": {"query": "{ __typename }"}}, None),
    (
        "a mutation",
        {"type": "subscribe", "id": "1", "payload": {"query": "mutation { __typename }"}},
        None,
    ),
    (
        "a validation error",
        {"type": "subscribe", "id": "1", "payload": {"query": "subscription { nope }"}},
        None,
    ),
    (
        "NUL in a variable",
        {
            "type": "subscribe",
            "id": "1",
            "payload": {
                "query": "subscription($a: String) { memberEvents(after: $a) { __typename } }",
                "variables": {"a": "x\u0000"},
            },
        },
        None,
    ),
    (
        "a variable of the wrong type",
        {
            "type": "subscribe",
            "id": "1",
            "payload": {
                "query": "subscription($p: LeaderboardPeriod!) "
                "{ leaderboardUpdated(period: $p) { totalRanked } }",
                "variables": {"p": {"x": [1]}},
            },
        },
        None,
    ),
]


@pytest.mark.parametrize(
    ("message", "close_code"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
async def test_malformed_protocol_messages_get_the_protocols_answer(
    live: Live, message: object, close_code: int | None
) -> None:
    connection = await connect(live.server)
    try:
        await send(
            connection, {"type": "connection_init", "payload": auth(live.credentials["member"])}
        )
        assert (await receive(connection))["type"] == "connection_ack"
        await connection.send(message if isinstance(message, str) else json.dumps(message))
        if close_code is None:
            answer = await receive(connection)
            assert answer["id"] == "1" and answer["type"] in ("next", "error"), answer
            if answer["type"] == "error":
                assert_graphql_errors(answer["payload"])
            elif "errors" in answer["payload"]:
                assert_graphql_errors(answer["payload"]["errors"])
            await send(connection, {"type": "complete", "id": "1"})
            await send(connection, {"type": "ping"})
            while (message := await receive(connection))["type"] != "pong":
                assert message["id"] == "1" and message["type"] in ("next", "complete"), message
        else:
            with pytest.raises(websockets.ConnectionClosed):
                await receive(connection)
            assert connection.close_code == close_code, connection.close_reason
    finally:
        await connection.close()
