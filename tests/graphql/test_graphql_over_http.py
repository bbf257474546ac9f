"""GraphQL over HTTP: status codes and media types for both kinds of client, on the real app.

Under `application/json` (the contract's clients) a GraphQL response is a 200 whatever its
errors; under `application/graphql-response+json` a request that never ran gets the
specification's 4xx and no `data` entry.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api.http_media import MediaType, negotiate
from models import KeyRole
from tests.conftest import Api, ApiFactory

NEW = "application/graphql-response+json"
OLD = "application/json"

QUERY = "{ program { name } }"
# (name, method, body or params, content type, status under NEW, status under OLD, data?)
CASES: list[tuple[str, str, Any, str | None, int, int, bool]] = [
    ("ok", "POST", {"query": QUERY}, OLD, 200, 200, True),
    ("ok over GET", "GET", {"query": QUERY}, None, 200, 200, True),
    ("body not JSON", "POST", b"{", OLD, 400, 400, False),
    ("no query", "POST", {}, OLD, 400, 400, False),
    ("document does not parse", "POST", {"query": "{ program { "}, OLD, 400, 200, False),
    ("unknown field", "POST", {"query": "{ program { nope } }"}, OLD, 422, 200, False),
    (
        "variables do not coerce",
        "POST",
        {
            "query": "query($n: Int) { leaderboard(first: $n) { totalRanked } }",
            "variables": {"n": "x"},
        },
        OLD,
        400,
        200,
        False,
    ),
    ("mutation over GET", "GET", {"query": "mutation { __typename }"}, None, 405, 405, False),
    ("unsupported content type", "POST", b"{ program { name } }", "text/plain", 415, 415, False),
]


async def _send(api: Api, key: str, case: tuple[Any, ...], accept: str | None) -> Any:
    _, method, payload, content_type, *_ = case
    headers = {"authorization": f"Bearer {key}"}
    if accept is not None:
        headers["accept"] = accept
    if method == "GET":
        return await api.client.get("/graphql", params=payload, headers=headers)
    if content_type is not None:
        headers["content-type"] = content_type
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return await api.client.post("/graphql", content=content, headers=headers)


@pytest.fixture
async def service_api(engine: AsyncEngine, make_api: ApiFactory) -> tuple[Api, str]:
    api = await make_api(engine)
    return api, await api.key(KeyRole.SERVICE)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_graphql_response_json_status_codes(
    service_api: tuple[Api, str], case: tuple[Any, ...]
) -> None:
    api, key = service_api
    response = await _send(api, key, case, NEW)
    _, _, _, _, status, _, has_data = case
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(NEW)
    body = response.json()
    assert ("data" in body) is has_data, body
    if not has_data:
        assert body["errors"] and all(e["extensions"]["code"] for e in body["errors"])
    if status == 405:
        assert response.headers["allow"] == "POST"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_application_json_keeps_the_contracts_behaviour(
    service_api: tuple[Api, str], case: tuple[Any, ...]
) -> None:
    api, key = service_api
    for accept in (OLD, None, "*/*"):
        response = await _send(api, key, case, accept)
        assert response.status_code == case[5], (accept, response.text)
        assert response.headers["content-type"].startswith(OLD)
        assert "data" in response.json()


async def test_an_execution_error_is_a_200_with_data_under_either_type(
    service_api: tuple[Api, str],
) -> None:
    api, key = service_api
    # A service key may not read the admin-only `members`: FORBIDDEN at a path, data null.
    for accept in (NEW, OLD):
        response = await _send(
            api, key, ("", "POST", {"query": "{ members { totalCount } }"}, OLD), accept
        )
        assert response.status_code == 200
        body = response.json()
        assert "data" in body and body["errors"][0]["path"] == ["members"]


async def test_a_client_accepting_neither_type_gets_406(service_api: tuple[Api, str]) -> None:
    api, key = service_api
    response = await _send(api, key, CASES[0], "text/plain")
    assert response.status_code == 406
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, MediaType.JSON),
        ("*/*", MediaType.JSON),
        ("application/json", MediaType.JSON),
        ("application/graphql-response+json", MediaType.GRAPHQL_RESPONSE),
        ("application/graphql-response+json, application/json;q=0.9", MediaType.GRAPHQL_RESPONSE),
        ("application/json, application/graphql-response+json;q=0.5", MediaType.JSON),
        (
            "application/json;q=0.5, application/graphql-response+json;q=0.5",
            MediaType.GRAPHQL_RESPONSE,
        ),
        ("text/html, application/*;q=0.1", MediaType.JSON),
        ("application/graphql-response+json;q=0", None),
        ("text/plain", None),
    ],
)
def test_accept_negotiation(accept: str | None, expected: MediaType | None) -> None:
    assert negotiate(accept) is expected
