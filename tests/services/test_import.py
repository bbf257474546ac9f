"""`import members`: members, balances and tiers brought over from a CSV file, with the
ledger's rules, idempotent, row by row all or nothing."""

from __future__ import annotations

import io
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import (
    QUALIFYING_KINDS,
    AuditEntry,
    EntryKind,
    EntryStatus,
    EventKind,
    IdempotencyRecord,
    LedgerEntry,
    Member,
    MemberEvent,
    Tier,
)
from models.engine import session_factory
from schema.ids import encode_id
from services import members
from services.clock import ManualClock
from services.importing import members as importing
from services.importing.members import ImportReport, Problem, import_members
from services.importing.plan import DESCRIPTION, OPERATION, SCOPE
from services.importing.rows import Format, ImportFileError, Mode
from services.importing.writers import writer_for
from services.ledger.purchases import record_purchase
from services.program import create_tier
from tests.conftest import _empty
from tests.services.helpers import (
    assert_balances_match_ledger,
    configure,
    fund,
    member_row,
    new_member,
)

LAUREL = "email,name,externalId,birthday,joinedAt,points,lifetimePoints,tier"
TABLES = (Member, LedgerEntry, MemberEvent, AuditEntry, IdempotencyRecord)


class Imported:
    def __init__(self, report: ImportReport, problems: list[Problem]) -> None:
        self.report = report
        self.problems = problems

    @property
    def skipped(self) -> dict[int, str]:
        return {p.line: p.message for p in self.problems if p.skipped}

    @property
    def notes(self) -> dict[int, str]:
        return {p.line: p.message for p in self.problems if not p.skipped}


async def run_import(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    content: str,
    *,
    source: str = "members.csv",
    **options: Any,
) -> Imported:
    problems: list[Problem] = []
    report = await import_members(
        sessions,
        io.StringIO(content),
        source=source,
        clock=clock,
        on_problem=problems.append,
        **options,
    )
    return Imported(report, problems)


async def counts(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions() as session:
        return {
            model.__tablename__: int(
                await session.scalar(select(func.count()).select_from(model)) or 0
            )
            for model in TABLES
        }


async def by_email(sessions: async_sessionmaker[AsyncSession]) -> dict[str, tuple[int, str]]:
    """Every member's (available points, tier name), by email."""
    async with sessions() as session:
        rows = await session.execute(
            select(Member.email, Member.available, Tier.name).join(Tier, Tier.id == Member.tier_id)
        )
        return {email: (available, tier) for email, available, tier in rows}


async def assert_every_balance_matches_the_ledger(
    sessions: async_sessionmaker[AsyncSession],
) -> int:
    """For every member at once: cached balances equal the sums of its entries and lots, and
    its last POINTS_UPDATED event shows its balance. Returns how many members were checked."""
    qualifying_kinds = ", ".join(f"'{kind.value}'" for kind in QUALIFYING_KINDS)
    sums = text(
        f"""
        SELECT m.id, m.available, m.pending, m.lifetime_earned, m.earned_points,
               coalesce(s.posted, 0), coalesce(s.posted_left, 0), coalesce(s.pending, 0),
               coalesce(s.qualifying, 0)
        FROM members AS m
        LEFT JOIN (
            SELECT member_id,
                   sum(CASE WHEN status = 'POSTED' THEN points ELSE 0 END) AS posted,
                   sum(CASE WHEN status = 'POSTED' THEN remaining ELSE 0 END) AS posted_left,
                   sum(CASE WHEN status = 'PENDING' THEN points ELSE 0 END) AS pending,
                   sum(CASE WHEN kind IN ({qualifying_kinds}) AND status = 'POSTED'
                       THEN points ELSE 0 END) AS qualifying
            FROM ledger_entries GROUP BY member_id
        ) AS s ON s.member_id = m.id
        """
    )
    async with sessions() as session:
        rows = (await session.execute(sums)).all()
        last_events: dict[int, dict[str, Any]] = {
            member_id: data
            for member_id, data in await session.execute(
                select(MemberEvent.member_id, MemberEvent.data)
                .where(MemberEvent.kind == EventKind.POINTS_UPDATED)
                .order_by(MemberEvent.id)
            )
        }
    for pk, available, pending, lifetime, earned, posted, left, pending_sum, qualifying in rows:
        assert available == posted == left, pk
        assert pending == pending_sum, pk
        assert lifetime == earned == qualifying, pk
        if pk in last_events:
            assert last_events[pk]["available"] == available, pk
    return len(rows)


async def add_tiers(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions.begin() as session:
        silver = await create_tier(
            session, name="Silver", threshold=1000, multiplier=1.25, benefits=[]
        )
        gold = await create_tier(session, name="Gold", threshold=5000, multiplier=1.5, benefits=[])
        entry = await session.scalar(select(Tier).where(Tier.threshold == 0))
        assert entry is not None
        return {"Member": entry.id, "Silver": silver.id, "Gold": gold.id}


# ---------------------------------------------------------------- formats


async def test_smile_file_creates_members_with_their_points_as_one_adjustment_each(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given Smile.io's points file (header in their capitals) and a program whose points expire
    sessions = session_factory(engine)
    await configure(sessions, expiry_days=365)
    content = "Email,Points\nAnn@Example.com,500\nbob@example.com,0\n"

    # when it is imported
    imported = await run_import(sessions, clock, content, source="exports/smile.csv")

    # then each member exists with its points, as one ADJUSTMENT lot like adjust_points writes
    assert imported.problems == []
    report = imported.report
    assert (report.format, report.created, report.points_added) == (Format.SMILE, 2, 500)
    assert await by_email(sessions) == {
        "ann@example.com": (500, "Member"),
        "bob@example.com": (0, "Member"),
    }
    async with sessions() as session:
        ann = await session.scalar(select(Member).where(Member.email == "ann@example.com"))
        assert ann is not None
        assert ann.display_name == "ann" and ann.joined_at == clock.now()
        assert len(ann.referral_code) == 8 and ann.tier_floor_id is None
        [entry] = await session.scalars(select(LedgerEntry))
        assert (entry.member_id, entry.kind, entry.status) == (
            ann.id,
            EntryKind.ADJUSTMENT,
            EntryStatus.POSTED,
        )
        assert (entry.points, entry.remaining, entry.actor) == (500, 500, "import")
        assert entry.description == DESCRIPTION == "Adjustment: imported balance"
        assert entry.breakdown == [{"label": "Imported balance: smile.csv, line 2", "points": 500}]
        assert entry.available_at == clock.now()
        assert entry.expires_at == clock.now() + timedelta(days=365)
        [event] = await session.scalars(select(MemberEvent))
        assert (event.kind, event.entry_id, event.data["available"]) == (
            EventKind.POINTS_UPDATED,
            entry.id,
            500,
        )
        trail = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    assert [(e.operation, e.actor_key_id, e.target_id) for e in trail] == [
        (OPERATION, None, encode_id("Member", ann.id)),
        (OPERATION, None, trail[1].target_id),
    ]
    assert trail[0].before is None
    assert trail[0].after is not None
    assert trail[0].after["email"] == "a***@example.com"  # personal data masked
    assert trail[0].after["available"] == 500 and trail[0].after["tier"] == "Member"
    await assert_balances_match_ledger(sessions, ann.id)


async def test_loyaltylion_file_matches_by_customer_id_and_keeps_the_enrolled_date(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given a member known by the merchant's customer id, and LoyaltyLion's bulk file
    sessions = session_factory(engine)
    async with sessions.begin() as session:
        known = await members.enroll(
            session,
            email="old@example.com",
            display_name="Old",
            external_id="4711",
            now=clock.now(),
        )
    content = (
        "Customer ID,Email Address,Points Approved,Enrolled At,First Name,Last Name\n"
        "4711,changed@example.com,250,2023-03-04T05:06:07Z,Old,Customer\n"
        '4712,new@example.com,"1200",2022-01-01,Nina,New\n'
    )

    # when it is imported (detected from the header), adding to balances
    imported = await run_import(sessions, clock, content)

    # then the known member gets the points, keeps its email (a note says so), and the new
    # member is created with its name and LoyaltyLion's enrolled date
    assert imported.report.format is Format.LOYALTYLION
    assert imported.skipped == {}
    assert imported.notes == {2: "email kept: the member (found by its externalId) has another"}
    assert (imported.report.created, imported.report.updated) == (1, 1)
    async with sessions() as session:
        old = await session.get(Member, known.id)
        new = await session.scalar(select(Member).where(Member.external_id == "4712"))
    assert old is not None and new is not None
    assert (old.email, old.available) == ("old@example.com", 250)
    assert (new.email, new.display_name, new.available) == ("new@example.com", "Nina New", 1200)
    assert new.joined_at.isoformat() == "2022-01-01T00:00:00+00:00"


async def test_laurel_file_sets_profile_balance_and_tier(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given tiers, and Laurel's own header with every field
    sessions = session_factory(engine)
    tiers = await add_tiers(sessions)
    content = (
        f"{LAUREL}\n"
        "zoe@example.com,Zoe Z,z-1,1991-02-03,2020-05-06T07:08:09+02:00,300,,Gold\n"
        "yan@example.com,,y-1,,,,,\n"
    )

    # when it is imported
    imported = await run_import(sessions, clock, content)

    # then Zoe is in Gold with Gold as her floor, and Yan, with no points, has no entry
    assert imported.problems == [] and imported.report.created == 2
    async with sessions() as session:
        zoe = await session.scalar(select(Member).where(Member.external_id == "z-1"))
        yan = await session.scalar(select(Member).where(Member.external_id == "y-1"))
        entries = await session.scalar(select(func.count()).select_from(LedgerEntry))
        events = list(await session.scalars(select(MemberEvent)))
    assert zoe is not None and yan is not None
    assert (zoe.display_name, zoe.birthday, zoe.available) == ("Zoe Z", date(1991, 2, 3), 300)
    assert zoe.joined_at.isoformat() == "2020-05-06T05:08:09+00:00"
    assert (zoe.tier_id, zoe.tier_floor_id) == (tiers["Gold"], tiers["Gold"])
    assert (yan.available, yan.tier_id, yan.display_name) == (0, tiers["Member"], "yan")
    assert entries == 1
    # enrolled straight into Gold: no TierChanged for a member that did not exist
    assert [e.kind for e in events] == [EventKind.POINTS_UPDATED]


async def test_a_header_that_names_no_format_is_refused_before_anything_is_written(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    with pytest.raises(ImportFileError, match="cannot tell the format"):
        await run_import(sessions, clock, "mail,balance\na@example.com,5\n")
    with pytest.raises(ImportFileError, match="unknown column 'lifetime'"):
        await run_import(
            sessions, clock, "email,lifetime\na@example.com,5\n", file_format=Format.LAUREL
        )
    with pytest.raises(ImportFileError, match="--mode does not apply"):
        await run_import(sessions, clock, f"{LAUREL}\n", mode=Mode.ADD)
    with pytest.raises(ImportFileError, match="empty"):
        await run_import(sessions, clock, "\n\n")
    assert (await counts(sessions))["members"] == 0


# ---------------------------------------------------------------- 10,000 rows


def ten_thousand_rows(
    conflicts: list[tuple[str, str]],
) -> tuple[str, dict[str, tuple[int, str]], dict[int, str]]:
    """A laurel file of 10,000 rows, 60 of them bad; (content, expected (balance, tier) by
    email for the good rows, the bad lines with a word of their reason)."""
    lines = [LAUREL]
    expected: dict[str, tuple[int, str]] = {}
    bad: dict[int, str] = {}
    tier_names = ["", "", "Silver", "Gold"]
    for i in range(10_000):
        line = i + 2
        email, external_id, points, tier = (
            f"m{i}@example.com",
            f"c-{i}",
            str(i * 37 % 5000),
            tier_names[i % 4],
        )
        kind = i % 1000
        if kind == 17:
            email, bad[line] = f"m{i}-at-example.com", "email"
        elif kind == 101:
            points, bad[line] = "-5", "negative"
        elif kind == 202:
            points, bad[line] = "12x", "whole number"
        elif kind == 303:
            tier, bad[line] = "Platinum", "no tier is named"
        elif kind == 404:
            email, external_id, bad[line] = f"m{i - 1}@example.com", f"dup-{i}", "duplicate"
        elif kind == 505:
            email, external_id = conflicts[i // 1000]
            bad[line] = "two different members"
        lines.append(f"{email},Member {i},{external_id},,2024-01-01,{points},,{tier}")
        if line not in bad:
            expected[email] = (int(points), tier or "Member")
    return "\n".join(lines) + "\n", expected, bad


async def test_ten_thousand_rows_with_bad_lines_import_the_good_ones_once(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given tiers, 20 members whose emails and externalIds the file crosses, and the file
    sessions = session_factory(engine)
    await add_tiers(sessions)
    conflicts = []
    async with sessions.begin() as session:
        for k in range(10):
            a = await members.enroll(
                session,
                email=f"a{k}@example.com",
                display_name="A",
                external_id=f"xa{k}",
                now=clock.now(),
            )
            b = await members.enroll(
                session,
                email=f"b{k}@example.com",
                display_name="B",
                external_id=f"xb{k}",
                now=clock.now(),
            )
            conflicts.append((a.email, b.external_id or ""))
    content, expected, bad = ten_thousand_rows(conflicts)
    before = await counts(sessions)

    # when it is imported in batches of 1,000
    first = await run_import(sessions, clock, content, batch_size=1000)

    # then the bad lines are reported by number and skipped, and the good ones are in
    assert sorted(first.skipped) == sorted(bad)
    for line, reason in bad.items():
        assert reason in first.skipped[line], (line, first.skipped[line])
    assert first.report.skipped == 60 and not first.report.complete
    assert first.report.created == len(expected) == 9940
    balances = await by_email(sessions)
    assert {email: balances[email] for email in expected} == expected
    assert await assert_every_balance_matches_the_ledger(sessions) == 9940 + 20
    after = await counts(sessions)
    imported_entries = sum(1 for points, _ in expected.values() if points)
    assert after["ledger_entries"] - before["ledger_entries"] == imported_entries
    assert after["audit_entries"] - before["audit_entries"] == 9940  # one per member changed
    assert after["idempotency_records"] - before["idempotency_records"] == 9940
    async with sessions() as session:
        crossed = await session.execute(
            select(Member.email, Member.available).where(Member.email.like("a%@example.com"))
        )
        assert {available for _, available in crossed} == {0}  # conflicting rows wrote nothing

    # when the same file is run again
    clock.advance(timedelta(hours=1))
    again = await run_import(sessions, clock, content, batch_size=1000)

    # then nothing changes: same rows in every table, the same lines reported
    assert await counts(sessions) == after
    assert await by_email(sessions) == balances
    assert again.report.already_imported == 9940
    assert (again.report.created, again.report.updated, again.report.points_added) == (0, 0, 0)
    assert sorted(again.skipped) == sorted(bad)


# ---------------------------------------------------------------- idempotency, dry run


async def test_a_corrected_file_imports_only_the_fixed_lines(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given a smile file with two bad lines, imported once
    sessions = session_factory(engine)
    content = "email,points\na@example.com,10\nb@example.com,x\nc@example.com,30\nd@,40\n"
    first = await run_import(sessions, clock, content)
    assert sorted(first.skipped) == [3, 5]

    # when the bad lines are fixed in place and the file is run again
    fixed = content.replace("b@example.com,x", "b@example.com,20").replace(
        "d@,40", "d@example.com,40"
    )
    second = await run_import(sessions, clock, fixed)

    # then only they go in: the others are not added twice
    assert second.problems == [] and second.report.complete
    assert (second.report.created, second.report.already_imported) == (2, 2)
    assert {e: b for e, (b, _) in (await by_email(sessions)).items()} == {
        "a@example.com": 10,
        "b@example.com": 20,
        "c@example.com": 30,
        "d@example.com": 40,
    }


async def test_deleting_a_bad_line_does_not_add_the_lines_below_again(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given a smile file (add mode) with a bad line above good ones, imported once
    sessions = session_factory(engine)
    content = "email,points\na@example.com,10\nb@,x\nc@example.com,30\nd@example.com,40\n"
    first = await run_import(sessions, clock, content)
    assert list(first.skipped) == [3]

    # when the bad line is deleted (every line below moves up) and the file is run again
    second = await run_import(sessions, clock, content.replace("b@,x\n", ""))

    # then nothing is added twice
    assert second.problems == [] and second.report.already_imported == 3
    assert {e: b for e, (b, _) in (await by_email(sessions)).items()} == {
        "a@example.com": 10,
        "c@example.com": 30,
        "d@example.com": 40,
    }


async def test_the_same_rows_in_another_file_are_a_new_import(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    content = "email,points\na@example.com,10\n"
    await run_import(sessions, clock, content, source="june.csv")
    await run_import(sessions, clock, content, source="june.csv")
    assert (await by_email(sessions))["a@example.com"] == (10, "Member")

    await run_import(sessions, clock, content, source="july.csv")

    assert (await by_email(sessions))["a@example.com"] == (20, "Member")


async def test_a_dry_run_reports_the_changes_and_writes_nothing(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given an existing member with 100 points, and a laurel file
    sessions = session_factory(engine)
    await add_tiers(sessions)
    existing = await new_member(sessions, clock, "ann")
    await fund(sessions, clock, existing, 100)
    before = await counts(sessions)
    content = f"{LAUREL}\nann@example.com,,,,,40,,Silver\nbob@example.com,,,,,70,,\nx,,,,,1,,\n"

    # when it is dry run
    dry = await run_import(sessions, clock, content, dry_run=True)

    # then it says what would change, and nothing did
    report = dry.report
    assert report.dry_run
    assert (report.created, report.updated, report.skipped) == (1, 1, 1)
    assert (report.points_added, report.points_removed, report.tier_changes) == (70, 60, 1)
    assert await counts(sessions) == before
    assert (await member_row(sessions, existing)).available == 100

    # and the real run does what the dry run said
    real = await run_import(sessions, clock, content)
    assert (real.report.created, real.report.updated, real.report.points_removed) == (1, 1, 60)


async def test_a_balance_equal_to_the_file_writes_no_entry(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    member_id = await new_member(sessions, clock, "ann")
    await fund(sessions, clock, member_id, 500)
    entries = (await counts(sessions))["ledger_entries"]

    result = await run_import(
        sessions, clock, "email,points\nann@example.com,500\n", mode=Mode.RESET
    )

    assert result.report.unchanged == 1
    assert (await counts(sessions))["ledger_entries"] == entries
    async with sessions() as session:
        trail = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.operation == OPERATION)
        )
        claims = await session.scalar(
            select(func.count())
            .select_from(IdempotencyRecord)
            .where(IdempotencyRecord.scope == SCOPE)
        )
    assert (trail, claims) == (0, 1)  # nothing changed; the row is done


# ---------------------------------------------------------------- the ledger's rules


async def test_reset_below_the_balance_draws_the_soonest_expiring_lots_first(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given 3 lots of 100 expiring a day apart, oldest first
    sessions = session_factory(engine)
    await configure(sessions, expiry_days=30)
    member_id = await new_member(sessions, clock, "ann")
    for _ in range(3):
        await fund(sessions, clock, member_id, 100)
        clock.advance(timedelta(days=1))

    # when a smile file resets the balance to 120
    result = await run_import(
        sessions, clock, "email,points\nann@example.com,120\n", mode=Mode.RESET
    )

    # then one -180 entry took the first lot whole and 80 of the second
    assert (result.report.updated, result.report.points_removed) == (1, 180)
    async with sessions() as session:
        entries = list(await session.scalars(select(LedgerEntry).order_by(LedgerEntry.id)))
    assert [(e.points, e.remaining) for e in entries] == [
        (100, 0),
        (100, 20),
        (100, 100),
        (-180, 0),
    ]
    assert entries[-1].kind is EntryKind.ADJUSTMENT and entries[-1].description == DESCRIPTION
    member = await assert_balances_match_ledger(sessions, member_id)
    assert member.available == 120


async def test_due_expiries_are_settled_before_a_balance_is_set(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given 100 points that expired yesterday (not swept yet) and 50 fresh ones
    sessions = session_factory(engine)
    await configure(sessions, expiry_days=10)
    member_id = await new_member(sessions, clock, "ann")
    await fund(sessions, clock, member_id, 100)
    clock.advance(timedelta(days=8))
    await fund(sessions, clock, member_id, 50)
    clock.advance(timedelta(days=3))

    # when a file sets the balance to 30
    await run_import(sessions, clock, "email,points\nann@example.com,30\n", mode=Mode.RESET)

    # then the expired lot expired first, and the import took 20 from the fresh one
    async with sessions() as session:
        kinds = [
            (e.kind, e.points)
            for e in await session.scalars(select(LedgerEntry).order_by(LedgerEntry.id))
        ]
    assert kinds[-2:] == [(EntryKind.EXPIRATION, -100), (EntryKind.ADJUSTMENT, -20)]
    member = await assert_balances_match_ledger(sessions, member_id)
    assert (member.available, member.expired) == (30, 100)


async def test_an_import_writes_what_an_admin_adjustment_writes(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given two members and points that expire
    sessions = session_factory(engine)
    await configure(sessions, expiry_days=90)
    adjusted = await new_member(sessions, clock, "ann")
    imported = await new_member(sessions, clock, "bob")

    # when one gets 250 points by adjustPoints and the other by an import
    await fund(sessions, clock, adjusted, 250)
    await run_import(sessions, clock, "email,points\nbob@example.com,250\n")

    # then the entries, cached balances and events are alike but for who and why
    async with sessions() as session:
        a, b = [
            (await session.scalars(select(LedgerEntry).where(LedgerEntry.member_id == pk))).one()
            for pk in (adjusted, imported)
        ]
        ea, eb = [
            (
                await session.scalars(
                    select(MemberEvent).where(
                        MemberEvent.member_id == pk,
                        MemberEvent.kind == EventKind.POINTS_UPDATED,  # not member.enrolled
                    )
                )
            ).one()
            for pk in (adjusted, imported)
        ]

    def entry(e: LedgerEntry) -> tuple[Any, ...]:
        return (e.kind, e.status, e.points, e.remaining, e.created_at, e.available_at, e.expires_at)

    assert entry(a) == entry(b)
    assert (ea.kind, ea.data) == (eb.kind, eb.data)
    ma, mb = await member_row(sessions, adjusted), await member_row(sessions, imported)
    figures = ("available", "pending", "lifetime_earned", "earned_points", "next_settlement_at")
    assert [getattr(ma, f) for f in figures] == [getattr(mb, f) for f in figures]


async def test_an_import_never_moves_a_member_down_a_tier(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given Gold earned by purchases, and a member in the entry tier
    sessions = session_factory(engine)
    tiers = await add_tiers(sessions)
    gold_by_points = await new_member(sessions, clock, "ann")
    async with sessions.begin() as session:
        await record_purchase(
            session, member_id=gold_by_points, order_id="o-1", amount=6000, now=clock.now()
        )
    plain = await new_member(sessions, clock, "bob")

    # when a file names Silver for the first, Gold for the second
    result = await run_import(
        sessions, clock, f"{LAUREL}\nann@example.com,,,,,,,Silver\nbob@example.com,,,,,,,Gold\n"
    )

    # then the first stays in Gold (Silver becomes its floor), the second moves up to Gold
    assert result.report.tier_changes == 1
    ann, bob = await member_row(sessions, gold_by_points), await member_row(sessions, plain)
    assert (ann.tier_id, ann.tier_floor_id) == (tiers["Gold"], tiers["Silver"])
    assert (bob.tier_id, bob.tier_floor_id) == (tiers["Gold"], tiers["Gold"])
    async with sessions() as session:
        changes = list(
            await session.scalars(
                select(MemberEvent).where(MemberEvent.kind == EventKind.TIER_CHANGED)
            )
        )
        trail = await session.scalar(
            select(AuditEntry).where(AuditEntry.target_id == encode_id("Member", plain))
        )
    assert [(c.member_id, c.data) for c in changes] == [
        (gold_by_points, {"from": tiers["Member"], "to": tiers["Gold"]}),  # its purchase
        (plain, {"from": tiers["Member"], "to": tiers["Gold"]}),  # the import
    ]
    assert trail is not None
    assert trail.before == {"tier": "Member", "tierFloor": None}
    assert trail.after == {"tier": "Gold", "tierFloor": "Gold"}

    # and a later file naming a lower tier, or lifetime points below Gold, changes nothing
    later = await run_import(
        sessions,
        clock,
        f"{LAUREL}\nbob@example.com,,,,,,,Silver\nann@example.com,,,,,,1500,\n",
        source="later.csv",
    )
    assert later.report.tier_changes == 0 and later.report.unchanged == 2
    bob = await member_row(sessions, plain)
    assert (bob.tier_id, bob.tier_floor_id) == (tiers["Gold"], tiers["Gold"])


async def test_lifetime_points_set_the_floor_and_are_not_earned(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given tiers
    sessions = session_factory(engine)
    tiers = await add_tiers(sessions)

    # when a member comes with 6,000 lifetime points and 40 to spend
    await run_import(sessions, clock, f"{LAUREL}\nann@example.com,,,,,40,6000,\n")

    # then it is in Gold (its floor) with nothing earned here, and its entry says why
    async with sessions() as session:
        ann = await session.scalar(select(Member).where(Member.email == "ann@example.com"))
        assert ann is not None
        entry = (await session.scalars(select(LedgerEntry))).one()
    assert (ann.tier_id, ann.tier_floor_id) == (tiers["Gold"], tiers["Gold"])
    assert (ann.lifetime_earned, ann.earned_points, ann.qualifying_points) == (0, 0, 0)
    assert entry.breakdown[1]["points"] == 0
    assert (
        "6,000" in entry.breakdown[1]["label"]
        and "not points earned" in entry.breakdown[1]["label"]
    )

    # and a later purchase does not drop it below its floor
    async with sessions.begin() as session:
        await record_purchase(session, member_id=ann.id, order_id="o-1", amount=10, now=clock.now())
    assert (await member_row(sessions, ann.id)).tier_id == tiers["Gold"]


async def test_a_birthday_is_filled_in_but_never_overwritten(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given one member without a birthday, one with
    sessions = session_factory(engine)
    async with sessions.begin() as session:
        none = await members.enroll(
            session, email="a@example.com", display_name="A", now=clock.now()
        )
        some = await members.enroll(
            session,
            email="b@example.com",
            display_name="B",
            birthday=date(1980, 1, 1),
            now=clock.now(),
        )

    # when a file gives both a birthday
    result = await run_import(
        sessions,
        clock,
        f"{LAUREL}\na@example.com,,,1990-06-07,,,,\nb@example.com,,,1990-06-07,,,,\n",
    )

    # then the first gets it; the second keeps its own and the row says so
    assert result.notes == {3: "birthday kept: the member's differs from the file's"}
    assert (await member_row(sessions, none.id)).birthday == date(1990, 6, 7)
    assert (await member_row(sessions, some.id)).birthday == date(1980, 1, 1)
    assert (result.report.updated, result.report.unchanged) == (1, 1)


async def test_bad_values_are_reported_with_their_column(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    content = (
        f"{LAUREL}\n"
        "a@example.com,,,2999-01-01,,,,\n"
        "b@example.com,,,,next week,,,\n"
        ",,,,,5,,\n"
        ",,nobody,,,5,,\n"
        "c@example.com,,,,,100000001,,\n"
        "d@example.com,,,,,5,,,,extra\n"
        f'"{"x" * 200_000}",,,,,1,,\n'
    )
    result = await run_import(sessions, clock, content)
    assert result.skipped == {
        2: "birthday must be a past date",
        3: "joinedAt: must be an ISO date or datetime",
        4: "email: an email or an externalId is needed",
        5: "no member has this externalId, and without an email none is created",
        6: "points: must be at most 100,000,000",
        7: "10 values for 8 columns",
        8: "not a CSV line (field larger than field limit (131072))",
    }
    assert (await counts(sessions))["members"] == 0


# ---------------------------------------------------------------- the two writers


async def snapshot(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row an import writes, as the models read them (JSON parsed: the two writers
    space it differently), referral codes (random) left out."""
    found = {}
    async with engine.connect() as connection:
        for model in TABLES:
            table = model.__table__
            rows = await connection.execute(select(table).order_by(table.c.id))
            found[model.__tablename__] = [
                tuple(v for k, v in row._mapping.items() if k != "referral_code") for row in rows
            ]
        search = await connection.execute(
            text("SELECT member_id, text FROM member_search ORDER BY 1")
        )
        found["member_search"] = [(pk, value.rsplit("\x1f", 1)[0]) for pk, value in search]
    return found


async def test_the_bulk_writer_writes_exactly_what_the_portable_one_writes(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    # given the same program, members and file, imported once with each writer
    content = (
        f"{LAUREL}\n"
        "ann@example.com,,ann-1,1970-01-02,,50,,Silver\n"  # existing: debit, tier up, fills
        "bob@example.com,,,,,900,,\n"  # existing: credit
        "cat@example.com,Cat,cat-1,1999-09-09,2021-01-01,1200,7000,\n"  # new, Gold by lifetime
        "dan@example.com,,,,,,,\n"  # new, no balance
        "bad@,,,,,1,,\n"
    )
    snapshots = []
    for bulk in (True, False):
        await _empty(pg)
        sessions = session_factory(pg)
        await configure(sessions, expiry_days=100)
        await add_tiers(sessions)
        ann = await new_member(sessions, clock, "ann")
        await new_member(sessions, clock, "bob")
        await fund(sessions, clock, ann, 80)
        await fund(sessions, clock, ann, 40)
        result = await run_import(sessions, clock, content, bulk=bulk)
        assert (result.report.created, result.report.updated, result.report.skipped) == (2, 2, 1)
        snapshots.append(await snapshot(pg))

    # then every row is the same
    bulk_rows, portable_rows = snapshots
    assert bulk_rows["ledger_entries"] and bulk_rows["audit_entries"]
    for table in bulk_rows:
        assert bulk_rows[table] == portable_rows[table], table


async def test_a_member_enrolled_while_a_batch_is_planned_is_matched_when_it_is_planned_again(
    pg: AsyncEngine, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a file naming ann, and an enrolment of ann that commits after the batch was
    # planned (ann did not exist then) and before it is written
    sessions = session_factory(pg)
    calls = []

    def racing_writer(session: AsyncSession, *, bulk: bool = True) -> Any:
        writer = writer_for(session, bulk=bulk)
        calls.append(writer)
        if len(calls) > 1:
            return writer

        class Racing:
            async def write(self, session: AsyncSession, rows: Any) -> None:
                async with sessions.begin() as other:
                    await members.enroll(
                        other, email="ann@example.com", display_name="Ann", now=clock.now()
                    )
                await writer.write(session, rows)

        return Racing()

    monkeypatch.setattr(importing, "writer_for", racing_writer)

    # when it is imported
    result = await run_import(sessions, clock, "email,points\nann@example.com,70\n")

    # then the first write conflicts on the email, and the batch planned again adds the
    # points to the member now there: one ann, with them
    assert len(calls) == 2
    assert (result.report.created, result.report.updated, result.problems) == (0, 1, [])
    assert await by_email(sessions) == {"ann@example.com": (70, "Member")}


async def test_a_member_named_by_email_and_again_by_externalid_gets_both_rows_in_order(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given a member with 100 points in a lot expiring soon, known by email and externalId
    sessions = session_factory(engine)
    await configure(sessions, expiry_days=30)
    async with sessions.begin() as session:
        ann = await members.enroll(
            session, email="ann@example.com", display_name="Ann", external_id="a-1", now=clock.now()
        )
    await fund(sessions, clock, ann.id, 100)
    clock.advance(timedelta(days=1))

    # when one batch sets her balance to 500 (by email), then to 450 (by externalId)
    result = await run_import(
        sessions, clock, f"{LAUREL}\nann@example.com,,,,,500,,\n,,a-1,,,450,,\n"
    )

    # then both rows apply in turn: +400, then -50 from the lot expiring first (the old one)
    assert (result.report.points_added, result.report.points_removed) == (400, 50)
    async with sessions() as session:
        lots = [
            (e.points, e.remaining)
            for e in await session.scalars(select(LedgerEntry).order_by(LedgerEntry.id))
        ]
    assert lots == [(100, 50), (400, 400), (-50, 0)]
    member = await assert_balances_match_ledger(sessions, ann.id)
    assert member.available == 450
