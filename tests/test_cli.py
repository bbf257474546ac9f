"""The `laurel` command, run in-process against temporary SQLite databases.

`main` runs its own event loop (asyncio.run), so the tests call it from a worker thread.
Nothing here starts a server: `uvicorn.run` is replaced by a recorder.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
import uvicorn
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import cli
from models import AuditEntry, EntryKind, KeyRole, LedgerEntry, Member
from models.engine import create_engine, session_factory
from schema.ids import encode_id
from services import access, members
from services.clock import ManualClock, SystemClock
from services.demo import load_demo
from services.partners import create_partner
from tests.services.helpers import assert_balances_match_ledger

SECRET = "cli-test-secret-long-enough-for-hs256-signing"


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Served:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean LAUREL_* environment, the working directory in tmp_path, and the database URL."""
    for name in list(os.environ):
        if name.startswith("LAUREL_") and name != "LAUREL_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)  # `serve` and `demo` set it
    monkeypatch.chdir(tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LAUREL_DATABASE_URL", url)
    return url


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Served:
    record = Served()

    def fake_run(*args: Any, **kwargs: Any) -> None:
        record.calls.append((args, kwargs))

    monkeypatch.setattr(uvicorn, "run", fake_run)
    return record


async def laurel(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    code = await asyncio.to_thread(cli.main, list(argv))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def touch(path: str) -> None:
    Path(path).touch()


def read(path: str, *, binary: bool = False) -> Any:
    return Path(path).read_bytes() if binary else Path(path).read_text()


async def enrolled_member(url: str) -> int:
    engine = create_engine(url)
    try:
        async with session_factory(engine).begin() as session:
            member = await members.enroll(
                session,
                email="ana@example.com",
                display_name="Ana",
                now=SystemClock().now(),
            )
            return member.id
    finally:
        await engine.dispose()


async def test_serve_refuses_an_unmigrated_database(env, served, capsys):
    result = await laurel(capsys, "serve")
    assert result.code == 2
    assert "laurel migrate" in result.err and "Traceback" not in result.err

    touch(env.removeprefix("sqlite+aiosqlite:///"))  # exists, but has no schema
    result = await laurel(capsys, "serve", "--port", "9999")
    assert result.code == 2
    assert "not migrated" in result.err and "laurel migrate" in result.err
    assert result.err.count("\n") == 1
    assert served.calls == []


async def test_migrate_then_serve_runs_the_app_factory(env, served, capsys):
    result = await laurel(capsys, "migrate")
    assert result.code == 0, result.err
    assert "migrated" in result.out
    again = await laurel(capsys, "migrate")
    assert again.code == 0 and "already at the latest schema" in again.out

    result = await laurel(capsys, "serve", "--workers", "3", "--port", "8123")
    assert result.code == 0, result.err
    [(args, kwargs)] = served.calls
    assert args == ("api.app:create_app",)
    assert kwargs["factory"] is True and kwargs["workers"] == 3 and kwargs["port"] == 8123
    assert kwargs["loop"] == "uvloop" and kwargs["http"] == "httptools"
    assert kwargs["lifespan"] == "on" and kwargs["proxy_headers"] is True

    # What each worker does with that import string: call the factory with no arguments.
    from api.app import create_app

    app = create_app()
    assert app.state.laurel.settings.database_url == env
    await app.state.laurel.engine.dispose()


async def test_keys_create_prints_only_a_working_key(env, capsys):
    assert (await laurel(capsys, "migrate")).code == 0
    result = await laurel(capsys, "keys", "create", "--role", "service", "--name", "shop")
    assert result.code == 0, result.err
    secret = result.out.strip()
    assert result.out == secret + "\n"  # only the key on stdout
    assert secret not in result.err

    engine = create_engine(env)
    try:
        async with session_factory(engine)() as session:
            key = await access.find_api_key(session, secret)
    finally:
        await engine.dispose()
    assert key is not None and key.role is KeyRole.SERVICE and key.name == "shop"

    partner = await laurel(capsys, "keys", "create", "--role", "partner")
    assert partner.code == 2 and "slug" in partner.err and partner.out == ""
    unknown = await laurel(capsys, "keys", "create", "--role", "partner", "--partner", "acme")
    assert unknown.code == 2 and "no partner" in unknown.err and unknown.out == ""
    engine = create_engine(env)
    try:
        async with session_factory(engine).begin() as session:
            await create_partner(session, name="Acme", slug="acme", now=datetime.now(UTC))
    finally:
        await engine.dispose()
    bound = await laurel(capsys, "keys", "create", "--role", "partner", "--partner", "acme")
    assert bound.code == 0 and bound.out.startswith("lrl_partner_")


async def test_keys_list_shows_every_key_without_secrets_and_revoke_refuses_it(env, capsys):
    assert (await laurel(capsys, "migrate")).code == 0
    shop = (await laurel(capsys, "keys", "create", "--role", "service", "--name", "shop")).out
    ops = (await laurel(capsys, "keys", "create", "--role", "admin", "--name", "ops")).out
    listed = await laurel(capsys, "keys", "list")
    assert listed.code == 0
    lines = [line.split("\t") for line in listed.out.splitlines()]
    assert [(line[1], line[2], line[3], line[5], line[6]) for line in lines] == [
        ("ops", "ADMIN", "-", "-", "-"),  # newest first; never used, not revoked
        ("shop", "SERVICE", "-", "-", "-"),
    ]
    assert shop.strip() not in listed.out and ops.strip() not in listed.out
    shop_id = lines[1][0]

    revoked = await laurel(capsys, "keys", "revoke", shop_id)
    assert revoked.code == 0 and "shop" in revoked.err
    engine = create_engine(env)
    try:
        async with session_factory(engine)() as session:
            assert await access.find_api_key(session, shop.strip()) is None
            assert await access.find_api_key(session, ops.strip()) is not None
            trail = list(await session.scalars(select(AuditEntry)))
    finally:
        await engine.dispose()
    assert [(e.operation, e.actor_key_id, e.target_id) for e in trail] == [
        ("keys create", None, shop_id),
        ("keys create", None, lines[0][0]),
        ("keys revoke", None, shop_id),
    ]
    assert trail[0].after == {"name": "shop", "role": "service", "partner": None, "revokedAt": None}
    assert (await laurel(capsys, "keys", "list")).out.splitlines()[1].split("\t")[6] != "-"
    unknown = await laurel(capsys, "keys", "revoke", encode_id("ApiKey", 999))
    assert unknown.code == 1 and "no such API key" in unknown.err
    malformed = await laurel(capsys, "keys", "revoke", "nope")
    assert malformed.code == 1 and "not an ApiKey id" in malformed.err


async def test_token_signs_the_members_global_id(env, monkeypatch, capsys):
    assert (await laurel(capsys, "migrate")).code == 0
    member_pk = await enrolled_member(env)
    global_id = encode_id("Member", member_pk)

    missing = await laurel(capsys, "token", str(member_pk))
    assert missing.code == 1 and "LAUREL_JWT_SECRET" in missing.err and missing.out == ""

    monkeypatch.setenv("LAUREL_JWT_SECRET", SECRET)
    for given in (str(member_pk), global_id):
        result = await laurel(capsys, "token", given, "--ttl", "600")
        assert result.code == 0, result.err
        claims = jwt.decode(result.out.strip(), SECRET, algorithms=["HS256"])
        assert claims["sub"] == global_id
        assert claims["exp"] - claims["iat"] == 600
    assert SECRET not in result.out + result.err

    unknown = await laurel(capsys, "token", str(member_pk + 1000))
    assert unknown.code == 1 and "no member" in unknown.err and "Traceback" not in unknown.err
    garbage = await laurel(capsys, "token", "not-an-id")
    assert garbage.code == 2


async def test_unreachable_database_is_one_clear_line(env, monkeypatch, capsys):
    monkeypatch.setenv("LAUREL_DATABASE_URL", "postgresql+asyncpg://laurel:pw@127.0.0.1:1/x")
    result = await laurel(capsys, "migrate")
    assert result.code == 1
    assert result.err.startswith("laurel: error: cannot use the database")
    assert result.err.count("\n") == 1 and "pw" not in result.err


async def test_sweep_and_export_schema(env, capsys):
    assert (await laurel(capsys, "migrate")).code == 0
    swept = await laurel(capsys, "sweep")
    assert swept.code == 0 and "settled 0 member" in swept.out
    sdl = await laurel(capsys, "export-schema")
    assert sdl.code == 0 and "type Query" in sdl.out


async def test_demo_loads_once_and_prints_working_credentials(env, served, monkeypatch, capsys):
    monkeypatch.delenv("LAUREL_DATABASE_URL")  # the embedded default: laurel.db in the cwd
    first = await laurel(capsys, "demo", "--port", "8765")
    assert first.code == 0, first.err
    assert "http://127.0.0.1:8765/graphql" in first.out and "loaded the demo program" in first.out
    secret = read(".laurel-demo-secret").strip()
    assert read("laurel.db", binary=True).startswith(b"SQLite format 3")

    def printed(label: str, out: str) -> str:
        line = next(x for x in out.splitlines() if x.strip().startswith(label))
        return line.split()[-1]

    token = printed("member token", first.out)
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    admin_key = printed("admin key", first.out)
    assert admin_key.startswith("lrl_admin_")
    assert printed("partner key", first.out).startswith("lrl_partner_")
    # The pages' links carry their credential in the fragment, which never reaches a server.
    assert printed("member page", first.out) == f"http://127.0.0.1:8765/member#token={token}"
    assert printed("admin page", first.out) == f"http://127.0.0.1:8765/admin#key={admin_key}"
    [(args, kwargs)] = served.calls
    assert kwargs["port"] == 8765 and kwargs["host"] == "127.0.0.1"
    app = args[0]
    settings = app.state.laurel.settings
    assert settings.graphiql_enabled and settings.member_page_enabled
    assert settings.admin_page_enabled
    await app.state.laurel.engine.dispose()

    # A restart keeps the data and the secret (old tokens stay valid), with fresh credentials.
    second = await laurel(capsys, "demo", "--port", "8765")
    assert second.code == 0 and "loaded the demo program" not in second.out
    assert (
        jwt.decode(printed("member token", second.out), secret, algorithms=["HS256"])["sub"]
        == (claims["sub"])
    )
    assert printed("admin key", second.out) != admin_key
    await served.calls[1][0][0].state.laurel.engine.dispose()


async def test_load_demo_keeps_every_balance_equal_to_its_ledger(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
):
    summary = await load_demo(sessions, clock)
    assert summary.members >= 20 and summary.refunds > 0 and summary.activities > 0
    assert summary.redemptions > summary.donations > 0
    assert summary.featured_member_tier in {"Silver", "Gold"}
    async with sessions() as session:
        member_ids = list(await session.scalars(select(Member.id)))
    assert len(member_ids) == summary.members
    for member_id in member_ids:
        await assert_balances_match_ledger(sessions, member_id)
    async with sessions() as session:  # the survey activity type paid some members
        surveys = select(func.count()).where(LedgerEntry.kind == EntryKind.ACTIVITY)
        assert (await session.scalar(surveys) or 0) > 0
