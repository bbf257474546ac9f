"""`laurel import members` and `laurel export ledger`, run through the command's `main`.

`main` runs its own event loop (asyncio.run), so the tests call it from a worker thread.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api import cli
from api.cli_data import ProgressBar
from models import AuditEntry, LedgerEntry, Member, MemberEvent
from models.engine import create_engine, session_factory
from schema.ids import encode_id
from services import members
from services.importing.plan import OPERATION
from services.ledger.adjustments import adjust_points
from services.ledger.purchases import record_purchase

REDIS_URL = os.environ.get("LAUREL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean LAUREL_* environment, the working directory in tmp_path, and a SQLite URL."""
    for name in list(os.environ):
        if name.startswith("LAUREL_") and name != "LAUREL_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LAUREL_DATABASE_URL", url)
    return url


def write(name: str, content: str) -> None:
    Path(name).write_text(content)


async def laurel(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    code = await asyncio.to_thread(cli.main, list(argv))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


async def table_counts(url: str) -> tuple[int, int, int, int]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            return tuple(  # type: ignore[return-value]
                [
                    int(await session.scalar(select(func.count()).select_from(model)) or 0)
                    for model in (Member, LedgerEntry, MemberEvent, AuditEntry)
                ]
            )
    finally:
        await engine.dispose()


GOOD = "email,points\nann@example.com,100\nbob@example.com,250\n"
WITH_BAD_LINES = "email,points\ncat@example.com,5\nnot-an-email,5\ndan@example.com,-3\n"


async def test_import_members_exits_0_when_every_row_is_in_and_1_when_some_are_skipped(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a migrated database, a clean file and one with bad lines
    assert (await laurel(capsys, "migrate")).code == 0
    write("good.csv", GOOD)
    write("bad.csv", WITH_BAD_LINES)

    # when each is imported
    good = await laurel(capsys, "import", "members", "good.csv")
    bad = await laurel(capsys, "import", "members", "bad.csv", "--format", "smile")

    # then the clean one exits 0, the other 1, naming its bad lines on stderr
    assert good.code == 0, good.err
    assert "imported good.csv (smile format): 2 rows" in good.out
    assert "created: 2" in good.out and "points added: 350" in good.out
    assert bad.code == 1
    assert "line 3: email: not a valid email address" in bad.err
    assert "line 4: points: must not be negative" in bad.err
    assert "skipped: 2 line(s)" in bad.out
    assert await table_counts(env) == (3, 3, 3, 3)

    # and running them again changes nothing
    again = await laurel(capsys, "import", "members", "good.csv")
    assert again.code == 0 and "already imported: 2" in again.out
    assert await table_counts(env) == (3, 3, 3, 3)


async def test_a_dry_run_reports_and_writes_nothing(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (await laurel(capsys, "migrate")).code == 0
    write("members.csv", GOOD)

    dry = await laurel(capsys, "import", "members", "members.csv", "--dry-run")

    assert dry.code == 0, dry.err
    assert "dry run of members.csv" in dry.out and "nothing was written" in dry.out
    assert "members would be created: 2" in dry.out
    assert await table_counts(env) == (0, 0, 0, 0)


async def test_reset_mode_sets_balances(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (await laurel(capsys, "migrate")).code == 0
    write("first.csv", GOOD)
    write("second.csv", "email,points\nann@example.com,40\n")
    assert (await laurel(capsys, "import", "members", "first.csv")).code == 0

    reset = await laurel(capsys, "import", "members", "second.csv", "--mode", "reset")

    assert reset.code == 0, reset.err
    assert "removed: 60" in reset.out
    engine = create_engine(env)
    try:
        async with session_factory(engine)() as session:
            ann = await session.scalar(select(Member).where(Member.email == "ann@example.com"))
    finally:
        await engine.dispose()
    assert ann is not None and ann.available == 40


async def test_a_file_that_cannot_be_read_exits_2_and_writes_nothing(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (await laurel(capsys, "migrate")).code == 0
    write("unknown.csv", "mail,balance\na@example.com,1\n")
    write("laurel.csv", "email,name,points\na@example.com,A,1\n")

    missing = await laurel(capsys, "import", "members", "nowhere.csv")
    unknown = await laurel(capsys, "import", "members", "unknown.csv")
    mode = await laurel(capsys, "import", "members", "laurel.csv", "--mode", "add")

    assert missing.code == 2 and "no file" in missing.err
    assert unknown.code == 2 and "cannot tell the format" in unknown.err
    assert mode.code == 2 and "--mode does not apply" in mode.err
    assert "Traceback" not in missing.err + unknown.err + mode.err
    assert await table_counts(env) == (0, 0, 0, 0)


async def test_import_members_on_postgresql_records_the_command_line_in_the_audit_trail(
    pg: AsyncEngine,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given the PostgreSQL database and a laurel file with a bad line
    url = pg.url.render_as_string(hide_password=False)
    monkeypatch.setenv("LAUREL_DATABASE_URL", url)
    path = tmp_path / "laurel.csv"
    path.write_text(
        "email,name,externalId,birthday,joinedAt,points,lifetimePoints,tier\n"
        "ann@example.com,Ann,a-1,1990-01-01,2024-01-01,300,,\n"
        "bob@example.com,Bob,b-1,,,abc,,\n"
    )

    # when it is imported through the command
    result = await laurel(capsys, "import", "members", str(path))

    # then the good row is in (through the COPY writer), the bad one reported, and the
    # trail names the command line (no key) and the member
    assert result.code == 1
    assert "line 3: points: must be a whole number" in result.err
    async with session_factory(pg)() as session:
        ann = await session.scalar(select(Member).where(Member.email == "ann@example.com"))
        trail = list(await session.scalars(select(AuditEntry)))
    assert ann is not None and ann.available == 300
    assert [(e.operation, e.actor_key_id, e.actor_name, e.target_id) for e in trail] == [
        (OPERATION, None, None, encode_id("Member", ann.id))
    ]


def test_the_progress_bar_redraws_one_line_on_a_terminal_and_logs_lines_elsewhere() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    log = io.StringIO()
    bar = ProgressBar(100, log)
    bar.update(100)
    assert log.getvalue().count("\n") == 1 and "100% 100/100 rows" in log.getvalue()

    terminal = Terminal()
    bar = ProgressBar(100, terminal)
    bar.update(100)
    bar.clear()
    assert terminal.getvalue().startswith("\r[") and "\n" not in terminal.getvalue()
    assert terminal.getvalue().endswith("\r")


# ---------------------------------------------------------------- export ledger


async def test_export_ledger_writes_the_window_as_csv_without_personal_data(
    engine: AsyncEngine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a small ledger over three days, with names and emails that must not leak
    monkeypatch.setenv("LAUREL_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    sessions = session_factory(engine)
    day = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    async with sessions.begin() as session:
        member = await members.enroll(
            session, email="zelda.secret@example.com", display_name="Zelda Secretname", now=day
        )
        await record_purchase(
            session, member_id=member.id, order_id="=HYPERLINK(1)", amount=20, now=day
        )
        await record_purchase(
            session, member_id=member.id, order_id="o-2", amount=30, now=day + timedelta(days=1)
        )
        await adjust_points(
            session,
            member_id=member.id,
            points=-5,
            reason="Zelda Secretname asked",
            idempotency_key="k-1",
            actor="admin-key-7",
            now=day + timedelta(days=2, hours=14),  # 23:00 on the 3rd
        )
    async with sessions() as session:
        ids = list(await session.scalars(select(LedgerEntry.id).order_by(LedgerEntry.id)))

    # when the first two days, and then the whole third day, are exported
    first = await laurel(
        capsys, "export", "ledger", "--from", "2026-03-01", "--to", "2026-03-02T09:00:00Z"
    )
    third = await laurel(capsys, "export", "ledger", "--from", "2026-03-03", "--to", "2026-03-03")

    # then one CSV row per transaction in each window, by global IDs, and nothing personal
    assert first.code == 0 and third.code == 0, first.err + third.err
    rows = list(csv.reader(io.StringIO(first.out)))
    assert rows[0] == [
        "id",
        "member_id",
        "kind",
        "status",
        "points",
        "reference",
        "created_at",
        "available_at",
        "expires_at",
        "actor",
    ]
    assert rows[1] == [
        encode_id("PointsTransaction", ids[0]),
        encode_id("Member", member.id),
        "PURCHASE",
        "POSTED",
        "20",
        "'=HYPERLINK(1)",  # a spreadsheet shows it as text, never runs it
        "2026-03-01T09:00:00+00:00",
        "2026-03-01T09:00:00+00:00",
        "",
        "system",
    ]
    assert len(rows) == 2  # the second purchase is at the window's (excluded) end
    [_, adjustment] = list(csv.reader(io.StringIO(third.out)))
    assert adjustment[0] == encode_id("PointsTransaction", ids[2])
    assert adjustment[2:5] == ["ADJUSTMENT", "POSTED", "-5"] and adjustment[9] == "admin-key-7"
    for output in (first.out, third.out):
        assert "zelda" not in output.lower() and "secretname" not in output.lower()
        assert "@" not in output


async def test_export_ledger_refuses_a_window_that_ends_before_it_starts(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (await laurel(capsys, "migrate")).code == 0
    backwards = await laurel(
        capsys, "export", "ledger", "--from", "2026-03-02", "--to", "2026-03-01"
    )
    garbled = await laurel(capsys, "export", "ledger", "--from", "yesterday", "--to", "2026-03-01")
    assert backwards.code == 2 and "--to must be after --from" in backwards.err
    assert garbled.code == 2 and "not an ISO date" in garbled.err
    assert backwards.out == garbled.out == ""


async def test_with_redis_the_import_tells_running_servers_which_members_changed(
    env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a server's view of Redis: the member-events channel of a prefix of our own
    prefix = f"laureltest:{uuid4().hex}:"
    monkeypatch.setenv("LAUREL_REDIS_URL", REDIS_URL)
    monkeypatch.setenv("LAUREL_REDIS_PREFIX", prefix)
    assert (await laurel(capsys, "migrate")).code == 0
    write("members.csv", GOOD)
    client = Redis.from_url(REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{prefix}member-events")
    try:
        # when members are imported
        assert (await laurel(capsys, "import", "members", "members.csv")).code == 0

        # then the hints name them, as a server's own commits would
        heard: set[int] = set()
        deadline = asyncio.get_running_loop().time() + 5
        while len(heard) < 2 and asyncio.get_running_loop().time() < deadline:
            message = await pubsub.get_message(timeout=0.5)
            if message is not None:
                _, _, ids = message["data"].decode().partition(":")
                heard.update(int(i) for i in ids.split(","))
    finally:
        await pubsub.aclose()
        await client.aclose()
    engine = create_engine(env)
    try:
        async with session_factory(engine)() as session:
            imported = set(await session.scalars(select(Member.id)))
    finally:
        await engine.dispose()
    assert heard == imported and len(imported) == 2
