"""`laurel import members` and `laurel export ledger`: a program moved in from another
platform, and the ledger out for accounting (registered by `api.cli`)."""

from __future__ import annotations

import argparse
import csv
import gc
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import Any, TextIO

from api.cli import CliError, _database, _err, _require_migrated, _run, _settings
from api.settings import Settings
from models.engine import is_sqlite, read_only, session_factory
from schema.ids import encode_id
from services.clock import SystemClock
from services.errors import DomainError
from services.events import Notifier, notifying
from services.importing.members import DEFAULT_BATCH, ImportReport, Problem, import_members
from services.importing.rows import Format, Mode
from services.ledger.export import ExportedEntry, ledger_window

# An import allocates millions of short-lived dicts and tuples: the collector's default
# thresholds would scan them again and again (about a sixth of the import's CPU).
IMPORT_GC_THRESHOLDS = (50_000, 50, 100)
EXPORT_HEADER = (
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
)


def add_data_commands(commands: Any) -> None:
    """Add `import` and `export` to the `laurel` command's subcommands."""
    importing = commands.add_parser("import", help="bring members over from another platform")
    what = importing.add_subparsers(dest="import_command", required=True, metavar="WHAT")
    members = what.add_parser(
        "members",
        help="create or match members from a CSV file and import their balances and tiers",
        description="Formats: smile (email,points), loyaltylion (customer_id,email,points,"
        "enrolled_at), laurel (email,name,externalId,birthday,joinedAt,points,lifetimePoints,"
        "tier), told by --format or from the header. Re-running a file changes nothing.",
    )
    members.add_argument("file", metavar="FILE.csv")
    members.add_argument(
        "--format", choices=[f.value for f in Format], help="default: from the header"
    )
    members.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        help="smile and loyaltylion: add the points to the balance (default), or reset the "
        "balance to them",
    )
    members.add_argument(
        "--dry-run", action="store_true", help="report what would change and write nothing"
    )
    members.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=argparse.SUPPRESS)
    members.set_defaults(handler=cmd_import_members)

    exporting = commands.add_parser("export", help="data out, for accounting")
    what = exporting.add_subparsers(dest="export_command", required=True, metavar="WHAT")
    ledger = what.add_parser(
        "ledger",
        help="the ledger's transactions created in a window, as CSV on stdout (no personal data)",
    )
    ledger.add_argument(
        "--from", dest="start", required=True, metavar="DATE", help="a date or datetime (UTC)"
    )
    ledger.add_argument(
        "--to",
        dest="end",
        required=True,
        metavar="DATE",
        help="a datetime (excluded), or a date (that whole day included)",
    )
    ledger.set_defaults(handler=cmd_export_ledger)


# ---------------------------------------------------------------- import members


def cmd_import_members(args: argparse.Namespace) -> int:
    settings = _settings()
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"there is no file at {path}", code=2)
    if args.batch_size < 1:
        raise CliError("--batch-size must be at least 1", code=2)
    progress = ProgressBar(_data_lines(path), sys.stderr)
    gc.set_threshold(*IMPORT_GC_THRESHOLDS)

    def problem(found: Problem) -> None:
        progress.clear()
        _err(str(found))

    async def run(lines: TextIO) -> ImportReport:
        async with _database(settings.database_url) as engine, _hints(settings) as notify:
            await _require_migrated(engine)
            sessions = session_factory(engine, info=notifying(notify) if notify else None)
            return await import_members(
                sessions,
                lines,
                source=path.name,
                clock=SystemClock(),
                file_format=Format(args.format) if args.format else None,
                mode=Mode(args.mode) if args.mode else None,
                dry_run=args.dry_run,
                batch_size=args.batch_size,
                on_problem=problem,
                on_progress=progress.update,
            )

    started = time.monotonic()
    # Undecodable bytes are kept as surrogates: the lines holding them are reported, not the
    # whole file refused halfway through.
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as lines:
        try:
            report = _run(run(lines))
        except DomainError as exc:
            raise CliError(f"{path.name}: {exc.message}", code=2) from exc
        finally:
            progress.finish()
    print("\n".join(summary(report, path.name, time.monotonic() - started)), flush=True)
    return 0 if report.complete else 1


def summary(report: ImportReport, name: str, seconds: float) -> list[str]:
    rate = report.rows / seconds if seconds > 0 else 0.0
    would = "would be " if report.dry_run else ""
    lines = [
        f"{'dry run of' if report.dry_run else 'imported'} {name} ({report.format.value} format):"
        f" {report.rows:,} rows in {seconds:.1f} s ({rate:,.0f} rows/s)"
        + ("; nothing was written" if report.dry_run else ""),
        f"  members {would}created: {report.created:,}, {would}updated: {report.updated:,}, "
        f"unchanged: {report.unchanged:,}, already imported: {report.already_imported:,}",
        f"  points {would}added: {report.points_added:,}, {would}removed: "
        f"{report.points_removed:,} (net {report.points_added - report.points_removed:+,}); "
        f"tier changes: {report.tier_changes:,}",
    ]
    if report.skipped or report.notes:
        lines.append(
            f"  skipped: {report.skipped:,} line(s), notes: {report.notes:,} (listed above, "
            "on stderr)"
        )
    if report.skipped:
        lines.append("  fix the skipped lines in place and run the file again: only they go in")
    return lines


class ProgressBar:
    """Rows done, on stderr: a line redrawn in place on a terminal, else a line every few
    seconds (logs)."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = 0.2 if self.tty else 5.0
        self.started = self.last = time.monotonic()
        self.shown = ""

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < self.interval and done < self.total:
            return
        self.last = now
        share = min(done / self.total, 1.0)
        rate = done / max(now - self.started, 1e-6)
        filled = round(share * self.WIDTH)
        text = (
            f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {share:4.0%} "
            f"{done:,}/{self.total:,} rows, {rate:,.0f} rows/s"
        )
        if self.tty:
            self.stream.write("\r" + text.ljust(len(self.shown)))
            self.shown = text
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Make room for a message (a terminal's bar is redrawn by the next update)."""
        if self.tty and self.shown:
            self.stream.write("\r" + " " * len(self.shown) + "\r")
            self.stream.flush()
            self.shown = ""

    def finish(self) -> None:
        self.clear()


def _data_lines(path: Path) -> int:
    """About how many rows the file holds (its lines less the header), for the bar."""
    count = 0
    with path.open("rb") as raw:
        while chunk := raw.read(1 << 20):
            count += chunk.count(b"\n")
    return max(count - 1, 1)


@asynccontextmanager
async def _hints(settings: Settings) -> AsyncIterator[Notifier | None]:
    """With Redis configured, the bus that tells the API processes which members changed,
    once the import is done (members it created have no subscribers before it ends);
    without Redis, nothing: they read the changes from the database at their next look."""
    if not settings.redis_url:
        yield None
        return
    from services.bus import RedisBus, hint_channel
    from services.leaderboards import connect_redis

    publisher = connect_redis(settings.redis_url, timeout=2.0)
    # Not started: no listener, no publishing task. The commits' hints are kept, and
    # `stop` publishes them (giving up after a second if Redis is down).
    bus = RedisBus(publisher, channel=hint_channel(settings.redis_prefix))
    try:
        yield bus.committed
    finally:
        await bus.stop()
        await publisher.aclose()


# ---------------------------------------------------------------- export ledger


def parse_moment(value: str, *, end: bool) -> datetime:
    """A date (midnight UTC; as an end, the next midnight: the day is included) or an ISO
    datetime (UTC unless it says otherwise)."""
    text = value.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        moment = datetime.combine(day, day_time(), tzinfo=UTC)
        return moment + timedelta(days=1) if end else moment
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        flag = "--to" if end else "--from"
        raise CliError(f"{flag}: {value!r} is not an ISO date or datetime", code=2) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def cmd_export_ledger(args: argparse.Namespace) -> int:
    settings = _settings()
    start = parse_moment(args.start, end=False)
    end = parse_moment(args.end, end=True)
    if end <= start:
        raise CliError("--to must be after --from", code=2)
    out = csv.writer(sys.stdout, lineterminator="\n")

    async def run() -> int:
        written = 0
        async with _database(settings.database_url) as engine:
            await _require_migrated(engine)
            # A transaction (PostgreSQL's cursors need one), and no write lock on SQLite.
            reads = read_only(engine) if is_sqlite(settings.database_url) else engine
            async with session_factory(reads)() as session:
                out.writerow(EXPORT_HEADER)
                async for batch in ledger_window(session, start, end):
                    out.writerows(_csv_row(entry) for entry in batch)
                    written += len(batch)
        return written

    try:
        written = _run(run())
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early (`| head`): not a failure
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    _err(
        f"laurel: exported {written:,} transaction(s) created from {start.isoformat()} "
        f"to {end.isoformat()} (excluded)"
    )
    return 0


def _csv_row(entry: ExportedEntry) -> list[object]:
    return [
        encode_id("PointsTransaction", entry.id),
        encode_id("Member", entry.member_id),
        entry.kind.value,
        entry.status.value,
        entry.points,
        _cell(entry.reference),
        entry.created_at.isoformat(),
        entry.available_at.isoformat() if entry.available_at else "",
        entry.expires_at.isoformat() if entry.expires_at else "",
        _cell(entry.actor),
    ]


def _cell(value: str | None) -> str:
    """Text as a spreadsheet shows it, never as a formula it would run (`=`, `+`, `-`, `@`)."""
    if not value:
        return ""
    return "'" + value if value[0] in "=+-@\t\r" else value
