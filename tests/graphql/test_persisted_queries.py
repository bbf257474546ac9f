"""Persisted queries and trusted documents on the real app over HTTP.

The requests are the ones Apollo Client's persisted-query link and urql's persisted exchange
send (their documented wire format): the hash alone first, the hash and the query after a
`PersistedQueryNotFound`, and the hash alone over GET for queries when asked to.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any, Protocol
from uuid import uuid4

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import AppState, create_app
from api.settings import Settings
from models import KeyRole, TrustedDocument
from services.clock import ManualClock
from services.trusted_documents import NewDocument, add_documents
from tests.conftest import JWT_SECRET, Api
from tests.graphql.test_limits_and_errors import WebSocketSession
from tests.live.conftest import REDIS_URL

QUERY = "query ProgramName {\n  program {\n    name\n  }\n}"
OTHER = "query Tiers {\n  tiers {\n    name\n  }\n}"
# Apollo Client 4's default Accept (3.x sends */*); urql's.
APOLLO_ACCEPT = "application/graphql-response+json,application/json;q=0.9"
URQL_ACCEPT = (
    "application/graphql-response+json, application/graphql+json, application/json, "
    "text/event-stream, multipart/mixed"
)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(text: str, **extra: object) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256(text), **extra}}


class AppFactory(Protocol):
    async def __call__(self, engine: AsyncEngine, **settings: Any) -> Api: ...


@pytest.fixture
async def make_app(clock: ManualClock) -> AsyncIterator[AppFactory]:
    made: list[tuple[Api, AppState]] = []

    async def factory(engine: AsyncEngine, **overrides: Any) -> Api:
        settings = Settings(
            database_url=engine.url.render_as_string(hide_password=False),
            jwt_secret=SecretStr(JWT_SECRET),
            sweep_interval_seconds=0,
            _env_file=None,  # type: ignore[call-arg]
            **overrides,
        )
        app = create_app(settings, clock=clock)
        state: AppState = app.state.laurel
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        api = Api(client=client, sessions=state.runtime.sessions, clock=clock, app=app)
        made.append((api, state))
        return api

    yield factory
    for api, state in made:
        await api.client.aclose()
        await api.app.state.rate_limits.settle()  # the leases of calls served, sent
        boards = state.runtime.leaderboards
        if boards is not None and boards.store is not None:
            await boards.store.redis.aclose()  # the app's client (no lifespan ran)
        await state.engine.dispose()


async def post(api: Api, body: dict[str, Any], *, token: str | None = None, accept: str = "*/*"):
    headers = {"content-type": "application/json", "accept": accept}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return await api.client.post("/graphql", content=json.dumps(body), headers=headers)


async def get(api: Api, params: dict[str, str], *, token: str | None = None, accept: str = "*/*"):
    headers = {"accept": accept}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return await api.client.get("/graphql", params=params, headers=headers)


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def register(api: Api, *texts: str) -> None:
    async with api.sessions.begin() as session:
        await add_documents(
            session, [NewDocument(sha256(t), t, None) for t in texts], api.clock.now()
        )


# ---------------------------------------------------------------- automatic persisted queries


@pytest.mark.parametrize("accept", ["*/*", APOLLO_ACCEPT])
async def test_apollo_clients_apq_round_trip_then_get(engine, make_app, accept):
    # Given the app with no persisted document
    api = await make_app(engine)
    hashed = {"operationName": "ProgramName", "variables": {}, "extensions": persisted(QUERY)}

    # When Apollo's link sends the hash alone: PersistedQueryNotFound, a 200 either way
    response = await post(api, hashed, accept=accept)
    assert response.status_code == 200
    body = response.json()
    assert body["errors"] == [
        {"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}
    ]

    # Then it sends the hash and the query: answered, and kept
    response = await post(api, {**hashed, "query": QUERY}, accept=accept)
    assert response.status_code == 200
    assert response.json() == {"data": {"program": {"name": "Laurel Rewards"}}}

    # The hash alone is answered now, over POST and over GET (useGETForHashedQueries)
    response = await post(api, hashed, accept=accept)
    assert response.json() == {"data": {"program": {"name": "Laurel Rewards"}}}
    params = {
        "operationName": "ProgramName",
        "variables": "{}",
        "extensions": json.dumps(persisted(QUERY)),
    }
    response = await get(api, params, accept=accept)
    assert response.status_code == 200
    assert response.json() == {"data": {"program": {"name": "Laurel Rewards"}}}

    # ...on the compiled fast path: the document has a plan
    state: AppState = api.app.state.laurel
    compiled = state.schema.compiled  # type: ignore[attr-defined]
    assert compiled.find(QUERY, "ProgramName") is not None


async def test_urqls_persisted_exchange_requests(engine, make_app):
    # urql's persisted exchange: GET with the hash (no query), then on a miss the query with
    # `miss: true` in the extension, then GET with the hash again
    api = await make_app(engine)
    params = {"operationName": "Tiers", "extensions": json.dumps(persisted(OTHER))}
    response = await get(api, params, accept=URQL_ACCEPT)
    assert response.status_code == 200
    assert codes(response.json()) == ["PERSISTED_QUERY_NOT_FOUND"]

    body = {"operationName": "Tiers", "query": OTHER, "extensions": persisted(OTHER, miss=True)}
    response = await post(api, body, accept=URQL_ACCEPT)
    assert response.status_code == 200
    tiers = response.json()["data"]["tiers"]
    assert tiers

    response = await get(api, params, accept=URQL_ACCEPT)
    assert response.status_code == 200
    assert response.json() == {"data": {"tiers": tiers}}


async def test_a_hash_that_is_not_the_querys_is_refused_and_not_kept(engine, make_app):
    api = await make_app(engine)
    wrong = {"query": QUERY, "extensions": persisted(OTHER)}

    response = await post(api, wrong)
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_USER_INPUT"]
    assert "does not match" in response.json()["errors"][0]["message"]

    # Nothing was kept under the other document's hash
    response = await post(api, {"extensions": persisted(OTHER)})
    assert codes(response.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


@pytest.mark.parametrize(
    "extension",
    [
        {"persistedQuery": {"version": 2, "sha256Hash": "0" * 64}},
        {"persistedQuery": {"version": 1, "sha256Hash": "not-a-hash"}},
        {"persistedQuery": "yes"},
    ],
)
async def test_malformed_persisted_query_extensions_are_bad_input(engine, make_app, extension):
    api = await make_app(engine)
    response = await post(api, {"extensions": extension})
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_USER_INPUT"]


async def test_a_mutation_by_hash_over_get_is_refused(engine, make_app):
    api = await make_app(engine)
    mutation = "mutation { __typename }"
    admin = await api.key(KeyRole.ADMIN)
    await post(api, {"query": mutation, "extensions": persisted(mutation)}, token=admin)

    response = await get(api, {"extensions": json.dumps(persisted(mutation))}, token=admin)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_two_processes_share_persisted_queries_through_redis(pg, make_app):
    # Given two app instances on one Redis (a key prefix of their own)
    prefix = f"laureltest:{uuid4().hex}:"
    first = await make_app(pg, redis_url=REDIS_URL, redis_prefix=prefix, apq_ttl_seconds=60)
    second = await make_app(pg, redis_url=REDIS_URL, redis_prefix=prefix, apq_ttl_seconds=60)
    redis = Redis.from_url(REDIS_URL)
    try:
        hashed = {"extensions": persisted(QUERY)}
        assert codes((await post(second, hashed)).json()) == ["PERSISTED_QUERY_NOT_FOUND"]

        # When the first registers the document
        await post(first, {**hashed, "query": QUERY})

        # Then the second answers its hash, and Redis holds it with a TTL
        response = await post(second, hashed)
        assert response.json() == {"data": {"program": {"name": "Laurel Rewards"}}}
        ttl = await redis.ttl(f"{prefix}apq:{sha256(QUERY)}")
        assert 0 < ttl <= 60
    finally:
        keys = [key async for key in redis.scan_iter(f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def test_the_in_process_store_is_bounded(engine, make_app):
    api = await make_app(engine, apq_cache_size=2)
    texts = [f"query Q{i} {{ program {{ name }} }}" for i in range(3)]
    for text in texts:
        await post(api, {"query": text, "extensions": persisted(text)})

    # The least recently used went past two entries
    assert codes((await post(api, {"extensions": persisted(texts[0])})).json()) == [
        "PERSISTED_QUERY_NOT_FOUND"
    ]
    for text in texts[1:]:
        assert "data" in (await post(api, {"extensions": persisted(text)})).json()


# ---------------------------------------------------------------- trusted documents


async def test_trusted_mode_refuses_a_members_unregistered_document_but_not_an_admins(
    engine, make_app
):
    api = await make_app(engine, trusted_documents=True)
    await register(api, QUERY)
    member = api.member_token(1)
    admin = await api.key(KeyRole.ADMIN)
    service = await api.key(KeyRole.SERVICE)

    # An unregistered document from a member token, or from no credential: refused
    for token in (member, None):
        response = await post(api, {"query": OTHER}, token=token)
        assert response.status_code == 403
        assert codes(response.json()) == ["PERSISTED_QUERY_NOT_IN_LIST"]
        assert response.json()["data"] is None
        # ...over GET, and registering it as a persisted query does not make it trusted
        response = await get(api, {"query": OTHER}, token=token)
        assert codes(response.json()) == ["PERSISTED_QUERY_NOT_IN_LIST"]
        response = await post(api, {"query": OTHER, "extensions": persisted(OTHER)}, token=token)
        assert codes(response.json()) == ["PERSISTED_QUERY_NOT_IN_LIST"]
        response = await post(api, {"extensions": persisted(OTHER)}, token=token)
        assert codes(response.json()) == ["PERSISTED_QUERY_NOT_IN_LIST"]

    # Admin and service keys may send any document
    for key in (admin, service):
        response = await post(api, {"query": OTHER}, token=key)
        assert response.status_code == 200
        assert response.json()["data"]["tiers"]

    # A registered document runs for the member: by documentId, by hash, or as its text
    expected = {"data": {"program": {"name": "Laurel Rewards"}}}
    document_id = f"sha256:{sha256(QUERY)}"
    assert (await post(api, {"documentId": document_id}, token=member)).json() == expected
    assert (await get(api, {"documentId": document_id}, token=member)).json() == expected
    assert (await post(api, {"extensions": persisted(QUERY)}, token=member)).json() == expected
    assert (await post(api, {"query": QUERY}, token=member)).json() == expected


async def test_document_ids_name_registered_documents_in_any_mode(engine, make_app):
    api = await make_app(engine)
    await register(api, QUERY)
    member = api.member_token(1)

    response = await post(api, {"documentId": f"sha256:{sha256(QUERY)}"}, token=member)
    assert response.json() == {"data": {"program": {"name": "Laurel Rewards"}}}
    # A registered document's hash is known without being sent first
    response = await post(api, {"extensions": persisted(QUERY)}, token=member)
    assert response.json() == {"data": {"program": {"name": "Laurel Rewards"}}}

    response = await post(api, {"documentId": f"sha256:{sha256(OTHER)}"}, token=member)
    assert codes(response.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    for malformed in ("md5:abc", sha256(QUERY), f"sha256:{'z' * 64}"):
        response = await post(api, {"documentId": malformed}, token=member)
        assert response.status_code == 400
        assert codes(response.json()) == ["BAD_USER_INPUT"]
    # Outside trusted mode a member may still send any document
    assert "data" in (await post(api, {"query": OTHER}, token=member)).json()


async def test_adding_documents_twice_changes_nothing(engine, make_app):
    api = await make_app(engine)
    await register(api, QUERY, OTHER)
    await register(api, QUERY)
    async with api.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(TrustedDocument)) == 2


async def test_trusted_mode_applies_to_websocket_operations(engine, make_app):
    api = await make_app(engine, trusted_documents=True)
    await register(api, QUERY)
    token = api.member_token(1)
    async with WebSocketSession(api.app, ["graphql-transport-ws"]) as socket:
        assert (await socket.event())["type"] == "websocket.accept"
        await socket.send(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        )
        assert (await socket.receive())["type"] == "connection_ack"

        # An unregistered document: the operation's error, the connection stays open
        await socket.send({"id": "1", "type": "subscribe", "payload": {"query": OTHER}})
        refused = await socket.receive()
        assert refused["type"] == "error" and refused["id"] == "1"
        assert [e["extensions"]["code"] for e in refused["payload"]] == [
            "PERSISTED_QUERY_NOT_IN_LIST"
        ]

        # A registered one, in full or by its hash alone
        for id_, payload in (("2", {"query": QUERY}), ("3", {"extensions": persisted(QUERY)})):
            await socket.send({"id": id_, "type": "subscribe", "payload": payload})
            answer = await socket.receive()
            assert answer == {
                "id": id_,
                "type": "next",
                "payload": {"data": {"program": {"name": "Laurel Rewards"}}},
            }
            assert (await socket.receive()) == {"id": id_, "type": "complete"}


async def test_only_documents_that_parse_are_kept(engine, make_app):
    api = await make_app(engine)
    broken = "query Broken { program { "
    response = await post(api, {"query": broken, "extensions": persisted(broken)})
    assert codes(response.json()) == ["BAD_USER_INPUT"]  # the syntax error, as always
    response = await post(api, {"extensions": persisted(broken)})
    assert codes(response.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


async def test_a_persisted_query_takes_the_compiled_fast_path(engine, make_app, monkeypatch):
    api = await make_app(engine)
    await post(api, {"query": QUERY, "extensions": persisted(QUERY)})
    view = next(r for r in api.app.routes if getattr(r, "path", None) == "/graphql").app

    async def full_view(*_: object) -> None:
        raise AssertionError("the full view ran")

    monkeypatch.setattr(view, "run", full_view)
    response = await post(api, {"operationName": "ProgramName", "extensions": persisted(QUERY)})
    assert response.json() == {"data": {"program": {"name": "Laurel Rewards"}}}


async def test_with_redis_down_persisted_queries_still_work_in_each_process(engine, make_app):
    # Nothing listens on port 9: every Redis call fails fast, and is a miss
    api = await make_app(engine, redis_url="redis://127.0.0.1:9/0")
    hashed = {"extensions": persisted(QUERY)}
    assert codes((await post(api, hashed)).json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    response = await post(api, {**hashed, "query": QUERY})
    assert response.json() == {"data": {"program": {"name": "Laurel Rewards"}}}
    response = await post(api, hashed)
    assert response.json() == {"data": {"program": {"name": "Laurel Rewards"}}}
