"""`laurel documents add` and `laurel documents list`, in-process on a temporary SQLite
database (as tests/test_cli.py runs the command), then the app serving what they added."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from api.app import create_app
from api.settings import Settings
from schema.ids import encode_id
from services import access
from services.clock import SystemClock
from tests.test_cli import laurel

SECRET = "documents-test-secret-long-enough-for-hs256"
PROGRAM = "query ProgramName {\n  program {\n    name\n  }\n}"
# What graphql-codegen's client preset writes with `persistedDocuments: true`.
CODEGEN = {hashlib.sha256(PROGRAM.encode()).hexdigest(): PROGRAM}
GRAPHQL_FILE = """
query Tiers { tiers { ...TierFields } }
fragment TierFields on Tier { name multiplier }
query Program { program { name } }
"""
TIERS_PRINTED = "query Tiers {\n  tiers {\n    ...TierFields\n  }\n}\n\n" + (
    "fragment TierFields on Tier {\n  name\n  multiplier\n}"
)

PROGRAM_PRINTED = "query Program {\n  program {\n    name\n  }\n}"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean LAUREL_* environment (as in tests/test_cli.py) and the database URL."""
    for name in list(os.environ):
        if name.startswith("LAUREL_") and name != "LAUREL_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LAUREL_DATABASE_URL", url)
    return url


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_documents_add_takes_both_formats_and_is_idempotent(env, tmp_path, capsys):
    assert (await laurel(capsys, "migrate")).code == 0
    codegen = tmp_path / "persisted-documents.json"
    codegen.write_text(json.dumps(CODEGEN))
    operations = tmp_path / "operations.graphql"
    operations.write_text(GRAPHQL_FILE)

    result = await laurel(capsys, "documents", "add", str(codegen), str(operations))
    assert result.code == 0, result.err
    assert "3 document(s) added, 0 already registered" in result.err

    # Adding the same files again changes nothing
    result = await laurel(capsys, "documents", "add", str(operations), str(codegen))
    assert result.code == 0
    assert "0 document(s) added, 3 already registered" in result.err

    listed = (await laurel(capsys, "documents", "list")).out.splitlines()
    ids = {line.split("\t")[0]: line.split("\t")[1] for line in listed}
    assert ids == {
        f"sha256:{sha256(PROGRAM)}": "ProgramName",
        f"sha256:{sha256(TIERS_PRINTED)}": "Tiers",
        f"sha256:{sha256(PROGRAM_PRINTED)}": "Program",
    }


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("bad.json", json.dumps({"0" * 64: PROGRAM}), "is not the SHA-256 of its document"),
        ("bad.json", "[1]", "expected a JSON object"),
        ("bad.json", json.dumps({sha256("{"): "{"}), "not a GraphQL document"),
        ("bad.graphql", "fragment F on Tier { name }", "no operation"),
        ("bad.graphql", "query { tiers { ...Missing } }", "'Missing' is not defined"),
    ],
)
async def test_documents_add_refuses_a_bad_file_whole(
    env, tmp_path, capsys, name, content, problem
):
    assert (await laurel(capsys, "migrate")).code == 0
    good = tmp_path / "good.json"
    good.write_text(json.dumps(CODEGEN))
    bad = tmp_path / name
    bad.write_text(content)

    result = await laurel(capsys, "documents", "add", str(good), str(bad))
    assert result.code == 2
    assert problem in result.err and "Traceback" not in result.err
    # Nothing of the good file was added either
    assert (await laurel(capsys, "documents", "list")).out == ""


async def test_the_app_in_trusted_mode_runs_what_the_command_added(env, tmp_path, capsys):
    assert (await laurel(capsys, "migrate")).code == 0
    codegen = tmp_path / "persisted-documents.json"
    codegen.write_text(json.dumps(CODEGEN))
    assert (await laurel(capsys, "documents", "add", str(codegen))).code == 0

    settings = Settings(
        database_url=env,
        jwt_secret=SecretStr(SECRET),
        trusted_documents=True,
        sweep_interval_seconds=0,
        _env_file=None,  # type: ignore[call-arg]
    )
    app = create_app(settings)
    token = access.issue_member_token(
        subject=encode_id("Member", 1), secret=SECRET, now=SystemClock().now()
    )
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        body = {"documentId": f"sha256:{sha256(PROGRAM)}"}
        response = await client.post("/graphql", json=body, headers=headers)
        assert response.json() == {"data": {"program": {"name": "Laurel Rewards"}}}
        response = await client.post(
            "/graphql", json={"query": "{ tiers { name } }"}, headers=headers
        )
        assert response.status_code == 403
        assert response.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"
    await app.state.laurel.engine.dispose()
