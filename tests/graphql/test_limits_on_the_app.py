"""The query limits hold on the real app, with its parse and validation caches in front, and
hold again when the same document comes a second time (from the caches)."""

from __future__ import annotations

import pytest

from tests.conftest import Api


def codes(body: dict[str, object]) -> list[str]:
    errors = body.get("errors") or []
    assert isinstance(errors, list)
    return [e["extensions"]["code"] for e in errors]


ALIASES = "{ " + " ".join(f"a{i}: program {{ name }}" for i in range(60)) + " }"
# 14 levels of fields that exist: rewards > edges > node > partner > rewards > ...
DEEP = (
    "{ rewards { edges { node { partner { rewards { edges { node { partner { rewards { edges "
    "{ node { partner { rewards { totalCount } } } } } } } } } } } } } }"
)
TOKENS = "{ program { " + "name " * 10_500 + "} }"


@pytest.mark.parametrize(
    "document", [ALIASES, TOKENS, DEEP], ids=["60 aliases", "10,500 tokens", "depth 14"]
)
async def test_documents_past_the_limits_are_refused_every_time(api: Api, document: str) -> None:
    for _ in range(2):  # the second time from the caches
        body = await api.gql(document)
        assert codes(body) and set(codes(body)) == {"QUERY_TOO_COMPLEX"}, body
        assert body.get("data") is None


async def test_a_document_within_the_limits_runs_every_time(api: Api) -> None:
    within = "{ " + " ".join(f"a{i}: program {{ name }}" for i in range(50)) + " }"
    for _ in range(2):
        body = await api.gql(within)
        assert "errors" not in body, body
        assert len(body["data"]) == 50  # type: ignore[arg-type]
