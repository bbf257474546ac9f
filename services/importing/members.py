"""`laurel import members`: a file's rows, checked line by line, then planned and written a
batch at a time, each batch in one transaction.

A row is all or nothing: a line that cannot be read, or that breaks a rule when planned, is
reported (`Problem`) and skipped, and writes nothing; the batch's other rows go in. A batch
that meets a concurrent change (an email or referral code taken meanwhile, a deadlock) is
rolled back and planned again; if it keeps failing, its rows are tried one by one, so only
the row that conflicts is skipped. A dry run plans every batch and rolls it back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.clock import Clock
from services.events import touched
from services.importing.plan import Planner, RowOutcome
from services.importing.rows import (
    Format,
    Header,
    ImportFileError,
    ImportRow,
    Mode,
    RowError,
    RowReader,
    records,
)
from services.importing.writers import WriteConflict, ids_for, writer_for
from services.program import get_program

# Rows a transaction: big enough that each statement carries many rows, small enough that a
# batch holds its members' locks only briefly (measured in bench/import_members.py).
DEFAULT_BATCH = 2_000
ATTEMPTS = 3
# Batches in flight at once on PostgreSQL: one planned (Python) while the other is written.
PIPELINE = 2
# Rows planned or read between two chances for the batch in flight to send its next statement.
YIELD_EVERY = 100


@dataclass(frozen=True, slots=True)
class Problem:
    """A line skipped (`skipped`), or imported with a note (something kept as it was)."""

    line: int
    message: str
    skipped: bool

    def __str__(self) -> str:
        return f"line {self.line}: {self.message if self.skipped else 'note: ' + self.message}"


@dataclass(slots=True)
class ImportReport:
    format: Format
    dry_run: bool
    rows: int = 0  # data lines read
    created: int = 0
    updated: int = 0
    unchanged: int = 0  # nothing to change
    already_imported: int = 0  # claimed by an earlier run of the same file
    skipped: int = 0
    notes: int = 0
    points_added: int = 0
    points_removed: int = 0
    tier_changes: int = 0

    @property
    def complete(self) -> bool:
        """Every row is in."""
        return self.skipped == 0


async def import_members(
    sessions: async_sessionmaker[AsyncSession],
    lines: Iterable[str],
    *,
    source: str,
    clock: Clock,
    file_format: Format | None = None,
    mode: Mode | None = None,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH,
    bulk: bool = True,
    on_problem: Callable[[Problem], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import the CSV text `lines` of the file named `source` (its base name keys the rows'
    idempotency and appears in their entries). `bulk` False writes with the portable writer
    on PostgreSQL too."""
    name = PurePath(source).name
    if not name:
        raise ImportFileError("the file needs a name: it keys the import of each row")
    numbered = records(lines)
    first = next(numbered, None)
    if first is None:
        raise ImportFileError("the file is empty")
    if isinstance(first[1], str):
        raise ImportFileError(f"the header is {first[1]}")
    header = Header.read(first[1], file_format)
    if header.format is Format.LAUREL and mode is not None:
        raise ImportFileError("the laurel format sets balances: --mode does not apply to it")
    run = _Run(
        sessions,
        report=ImportReport(format=header.format, dry_run=dry_run),
        source=name,
        clock=clock,
        dry_run=dry_run,
        bulk=bulk,
        on_problem=on_problem or (lambda problem: None),
    )
    reader = RowReader(header, name, mode or Mode.ADD, clock.now())
    # On PostgreSQL two batches are in flight: one is planned (Python) while the other's
    # statements run (the server). SQLite has one writer.
    async with sessions() as probe:  # no connection is made
        concurrency = PIPELINE if probe.bind.dialect.name == "postgresql" else 1
    in_flight: deque[tuple[asyncio.Task[Done], list[Problem], int]] = deque()

    async def report_oldest() -> None:
        task, unreadable, rows_read = in_flight.popleft()
        run.count(*await task, unreadable)
        if on_progress is not None:
            on_progress(rows_read)

    def submit(rows: list[ImportRow]) -> None:
        unreadable, run.pending = run.pending, []
        in_flight.append((asyncio.create_task(run.batch(rows)), unreadable, run.report.rows))

    batch: list[ImportRow] = []
    try:
        for line, record in numbered:
            run.report.rows += 1
            try:
                if isinstance(record, str):
                    raise RowError(line, record)
                batch.append(reader.row(line, record))
            except RowError as error:
                run.pending.append(Problem(error.line, error.reason, skipped=True))
            if len(batch) >= batch_size:
                submit(batch)
                batch = []
                if len(in_flight) >= concurrency:
                    await report_oldest()
            elif run.report.rows % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the batch in flight go on
        submit(batch)
        while in_flight:
            await report_oldest()
    finally:
        for task, _, _ in in_flight:
            task.cancel()
        for task, _, _ in in_flight:
            with contextlib.suppress(BaseException):
                await task
    return run.report


Done = tuple[list[RowOutcome], list[RowError]]


class _Run:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        report: ImportReport,
        source: str,
        clock: Clock,
        dry_run: bool,
        bulk: bool,
        on_problem: Callable[[Problem], None],
    ) -> None:
        self.sessions = sessions
        self.report = report
        self.source = source
        self.clock = clock
        self.dry_run = dry_run
        self.bulk = bulk
        self.on_problem = on_problem
        self.pending: list[Problem] = []  # the next batch's unreadable lines, reported with it

    async def batch(self, rows: Sequence[ImportRow]) -> Done:
        for _ in range(ATTEMPTS):
            try:
                return await self._attempt(rows)
            except WriteConflict:
                continue
        # It conflicts every time: row by row, so that only the conflicting row is skipped.
        outcomes: list[RowOutcome] = []
        errors: list[RowError] = []
        for row in rows:
            try:
                done, failed = await self._attempt([row])
            except WriteConflict as conflict:
                done = []
                failed = [RowError(row.line, f"conflicts with a concurrent change ({conflict})")]
            outcomes += done
            errors += failed
        return outcomes, errors

    async def _attempt(self, rows: Sequence[ImportRow]) -> tuple[list[RowOutcome], list[RowError]]:
        outcomes: list[RowOutcome] = []
        errors: list[RowError] = []
        if not rows:
            return outcomes, errors
        async with self.sessions() as session:
            try:
                if session.bind.dialect.name == "postgresql":
                    # The batch's lookups are prepared statements, and after five runs
                    # PostgreSQL may keep a generic plan made while the tables were still
                    # small (a sequential scan): an import makes them grow as it goes.
                    await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
                now = self.clock.now()
                planner = await Planner.start(
                    session,
                    rows,
                    program=await get_program(session),
                    now=now,
                    source=self.source,
                    ids=ids_for(session, dry_run=self.dry_run),
                    lock=not self.dry_run,
                )
                for index, row in enumerate(rows, 1):
                    try:
                        outcomes.append(await planner.plan(row))
                    except RowError as error:
                        errors.append(error)
                    if index % YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # the other batch's next statement goes out
                written = planner.finish()
                if not self.dry_run:
                    await writer_for(session, bulk=self.bulk).write(session, written)
                    touched(session, written.touched)
            except BaseException:
                await session.rollback()
                raise
            if self.dry_run:
                await session.rollback()
            else:
                await session.commit()
        return outcomes, errors

    def count(
        self, outcomes: list[RowOutcome], errors: list[RowError], unreadable: list[Problem]
    ) -> None:
        """Add a batch's outcome to the report, and report its problems in line order."""
        report = self.report
        problems = unreadable + [Problem(e.line, e.reason, skipped=True) for e in errors]
        for outcome in outcomes:
            if outcome.action == "created":
                report.created += 1
            elif outcome.action == "updated":
                report.updated += 1
            elif outcome.action == "already imported":
                report.already_imported += 1
            else:
                report.unchanged += 1
            if outcome.points > 0:
                report.points_added += outcome.points
            else:
                report.points_removed -= outcome.points
            report.tier_changes += outcome.tier_changed
            problems.extend(Problem(outcome.line, note, skipped=False) for note in outcome.notes)
        for problem in sorted(problems, key=lambda p: p.line):
            if problem.skipped:
                report.skipped += 1
            else:
                report.notes += 1
            self.on_problem(problem)
