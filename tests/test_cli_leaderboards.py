"""`laurel leaderboards rebuild`, in-process, on a temporary SQLite database and real Redis.

`main` runs its own event loop (asyncio.run), so the tests call it from a worker thread. Each
test's Redis keys live under a prefix of its own (`--prefix`), deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from api import cli
from api.database import prepare_database
from models.engine import create_engine, session_factory
from services.clock import SystemClock
from services.leaderboards import LeaderboardStore, Period, board_from_database
from services.ledger.purchases import record_purchase
from services.members import enroll

REDIS_URL = os.environ.get("LAUREL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean LAUREL_* environment, the working directory in tmp_path, and the database URL."""
    for name in list(os.environ):
        if name.startswith("LAUREL_") and name != "LAUREL_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LAUREL_DATABASE_URL", url)
    return url


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    value = f"laureltest:{uuid4().hex}:"
    yield value
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{value}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def laurel(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    code = await asyncio.to_thread(cli.main, list(argv))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


async def seed(url: str) -> list[int]:
    """Four members earning 300, 200, 200 and 100 points now, and one earning nothing."""
    engine = create_engine(url)
    try:
        await prepare_database(engine)
        sessions = session_factory(engine)
        now = SystemClock().now()
        ids = []
        for name, amount in (("ann", 300), ("bob", 200), ("cy", 200), ("dee", 100), ("eve", 0)):
            async with sessions.begin() as session:
                member = await enroll(
                    session, email=f"{name}@example.com", display_name=name.title(), now=now
                )
                if amount:
                    await record_purchase(
                        session, member_id=member.id, order_id=f"o-{name}", amount=amount, now=now
                    )
            ids.append(member.id)
        return ids
    finally:
        await engine.dispose()


async def test_rebuild_needs_redis(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = await laurel(capsys, "leaderboards", "rebuild")
    assert result.code == 2
    assert "LAUREL_REDIS_URL is not set" in result.err
    assert "Traceback" not in result.err


async def test_rebuild_fills_every_board_as_the_database_ranks_it(
    env: str, prefix: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await seed(env)
    monkeypatch.setenv("LAUREL_REDIS_URL", REDIS_URL)
    result = await laurel(capsys, "leaderboards", "rebuild", "--prefix", prefix)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "ALL_TIME: 4 member(s) ranked"
    assert re.fullmatch(r"MONTHLY \(\d{4}-\d{2}\): 4 member\(s\) ranked", lines[1])
    assert re.fullmatch(r"WEEKLY \(\d{4}-W\d{2}\): 4 member\(s\) ranked", lines[2])
    assert len(lines) == 3

    engine = create_engine(env)
    client = Redis.from_url(REDIS_URL)
    try:
        store = LeaderboardStore(client, prefix=prefix)
        now = SystemClock().now()
        for period in Period:
            async with session_factory(engine)() as session:
                expected = await board_from_database(
                    session, period, now, first=10, member_id=ids[2]
                )
            got = await store.board(period, now, first=10, member_id=ids[2])
            assert got == expected
            assert got is not None and [s.rank for s in got.entries] == [1, 2, 2, 4]
    finally:
        await client.aclose()
        await engine.dispose()


async def test_rebuild_one_period(
    env: str, prefix: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(env)
    monkeypatch.setenv("LAUREL_REDIS_URL", REDIS_URL)
    result = await laurel(
        capsys, "leaderboards", "rebuild", "--period", "WEEKLY", "--prefix", prefix
    )
    assert result.code == 0, result.err
    assert result.out.startswith("WEEKLY (") and result.out.count("\n") == 1
    client = Redis.from_url(REDIS_URL)
    try:
        store = LeaderboardStore(client, prefix=prefix)
        now = SystemClock().now()
        assert await store.is_built(Period.WEEKLY, now)
        assert not await store.is_built(Period.ALL_TIME, now)
    finally:
        await client.aclose()

    with pytest.raises(SystemExit) as exit_info:  # argparse's own refusal
        await laurel(capsys, "leaderboards", "rebuild", "--period", "DAILY")
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err


async def test_rebuild_reports_unreachable_redis_clearly(
    env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(env)
    monkeypatch.setenv("LAUREL_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    result = await laurel(capsys, "leaderboards", "rebuild")
    assert result.code == 1
    assert result.err.startswith("laurel: error: cannot use Redis at redis://:***@127.0.0.1:1/0")
    assert "hunter2" not in result.err and "Traceback" not in result.err


async def test_rebuild_refuses_a_missing_database(
    env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAUREL_REDIS_URL", REDIS_URL)
    result = await laurel(capsys, "leaderboards", "rebuild")
    assert result.code == 2
    assert "laurel migrate" in result.err
