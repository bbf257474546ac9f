"""What each import row changes, worked out with the ledger's own rules on plain records.

A batch of rows is planned in one transaction: its members are read (and locked) once, then
each row is decided in turn on in-memory `MemberState`s with the functions every write uses
(`check_posting`, `credit_terms`, `opens_lot`, `apply_posting`, `take_from`, `balances`,
`tier_for`), and the result is a `BatchRows`: the rows to insert or update, table by table,
which a writer (`services.importing.writers`) persists with a few set-based statements. A row
that breaks a rule raises `RowError` before it changes anything, so it is skipped whole.

The rules of a row:

* Its member is the one with its email (emails compare case-insensitively), else the one with
  its externalId; an email and an externalId of two different members is an error. Without a
  match, a member is created (it needs an email): display name from the file or the email's
  local part, joined date from the file or now, a new referral code, no signup bonus.
* A matched member's missing birthday and externalId are filled in; one that differs from the
  file is kept, and the row says so (a note). Names, emails and joined dates are never changed.
* The balance change (the file's points, or the file's balance less the member's available
  points when the row sets it) is one ADJUSTMENT entry, as `adjust_points` writes it: a credit
  opens a lot expiring per the program's `expiryDays`; a debit draws the soonest-expiring lots.
  Each entry has its POINTS_UPDATED member event, with the balances right after it.
* A tier name (exact, a live tier), or else lifetime points (the tier they reach), raises the
  member's tier floor (`tier_floor_id`) when it is above the current one; the member is then
  placed with `tier_for` (its qualifying points, never below its floor), never lower than it
  is: an import never moves a member down. A change of tier is a TIER_CHANGED event. Lifetime
  points are not earned here: they count for no leaderboard, challenge or qualifying points.
* Each changed member gets one audit entry (the command line, "import members", its global
  ID, the changed fields before and after); each row done, changed or not, its idempotency
  claim, so the same file run again changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from operator import attrgetter
from typing import Any, Protocol, cast

from sqlalchemy import ARRAY, ColumnElement, any_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    EntryKind,
    EntryStatus,
    EventKind,
    IdempotencyRecord,
    LedgerEntry,
    Member,
    MemberStatus,
    Program,
    Tier,
)
from services import audit
from services.errors import DomainError
from services.events import balances
from services.global_ids import encode_id
from services.importing.rows import ImportRow, RowError
from services.ledger.entries import (
    apply_posting,
    check_posting,
    credit_terms,
    lock_member,
    opens_lot,
    settle,
    take_from,
)
from services.members import referral_codes
from services.program import tier_for

SCOPE = "import:members"  # of the rows' idempotency claims
OPERATION = "import members"  # of their audit entries
ACTOR = "import"  # of their ledger entries
DESCRIPTION = "Adjustment: imported balance"
LIFETIME_NOTE = (
    "Lifetime points on the previous platform: {points:,} (they set the tier floor; "
    "they are not points earned in this program)"
)

# The member columns an import reads, and those it may change on an existing member.
STATE_COLUMNS = (
    "id",
    "email",
    "external_id",
    "display_name",
    "birthday",
    "joined_at",
    "tier_id",
    "tier_floor_id",
    "available",
    "pending",
    "lifetime_earned",
    "redeemed",
    "expired",
    "qualifying_points",
    "earned_points",
    "month_key",
    "month_points",
    "week_key",
    "week_points",
    "next_settlement_at",
)
UPDATED_COLUMNS = (
    "external_id",
    "birthday",
    "tier_id",
    "tier_floor_id",
    "available",
    "pending",
    "lifetime_earned",
    "redeemed",
    "expired",
    "qualifying_points",
    "earned_points",
    "month_key",
    "month_points",
    "week_key",
    "week_points",
    "next_settlement_at",
)


class Ids(Protocol):
    """New primary keys, handed out before the rows are written (so entries, events and
    claims can name them in the same set-based statements)."""

    async def next(self, table: str, wanted: int) -> int:
        """The next id of `table`; `wanted` is how many more the caller may ask for."""
        ...


@dataclass(slots=True)
class Lot:
    """An open POSTED lot of a member (an `OpenLot` for `take_from`). `entry` is the row of a
    lot opened in this batch (its `remaining` is written with it)."""

    id: int
    expires_at: datetime | None
    remaining: int
    entry: dict[str, Any] | None = None


@dataclass(slots=True)
class MemberState:
    """A member as the batch reads and changes it (the ledger's `Balances`)."""

    id: int
    email: str
    external_id: str | None
    display_name: str
    birthday: date | None
    joined_at: datetime
    tier_id: int
    tier_floor_id: int | None
    available: int
    pending: int
    lifetime_earned: int
    redeemed: int
    expired: int
    qualifying_points: int
    earned_points: int
    month_key: int
    month_points: int
    week_key: int
    week_points: int
    next_settlement_at: datetime | None
    created: bool = False
    lots: list[Lot] | None = None  # its lots in the database, read when a debit needs them
    opened: list[Lot] = field(default_factory=list)  # lots opened in this batch


@dataclass(frozen=True, slots=True)
class RowOutcome:
    line: int
    action: str  # "created", "updated", "unchanged", "already imported"
    points: int  # the balance change
    tier_changed: bool = False
    notes: tuple[str, ...] = ()


@dataclass(slots=True)
class BatchRows:
    """Everything a batch writes, table by table, as column values."""

    new_members: list[dict[str, Any]] = field(default_factory=list)
    member_updates: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    lot_updates: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def touched(self) -> set[int]:
        """Members with new events, to announce after commit."""
        return {event["member_id"] for event in self.events}


@dataclass(slots=True)
class Planner:
    """Plans one batch's rows, in one transaction, on the members it read and locked."""

    session: AsyncSession
    program: Program
    tiers: list[Tier]  # the live ones, by threshold
    tiers_by_id: dict[int, Tier]  # retired ones too
    now: datetime
    source: str
    ids: Ids
    done_keys: set[str]
    by_email: dict[str, MemberState]
    by_external_id: dict[str, MemberState]
    rows: BatchRows = field(default_factory=BatchRows)
    _before: dict[int, dict[str, Any] | None] = field(default_factory=dict)
    _states: dict[int, MemberState] = field(default_factory=dict)
    _lot_updates: dict[int, int] = field(default_factory=dict)
    _left: int = 0
    _credit_terms: tuple[EntryStatus, datetime, datetime | None] | None = None
    _named: dict[str, Tier] = field(default_factory=dict)

    @classmethod
    async def start(
        cls,
        session: AsyncSession,
        batch: Sequence[ImportRow],
        *,
        program: Program,
        now: datetime,
        source: str,
        ids: Ids,
        lock: bool = True,
    ) -> Planner:
        """Read what the batch's rows depend on: tiers, the claims of rows already imported,
        and their members, locked unless told (a dry run writes nothing), settled first when
        pending points or expiries are due."""
        all_tiers = list(await session.scalars(select(Tier).order_by(Tier.threshold, Tier.id)))
        done = await _claimed(session, [row.key for row in batch])
        todo = [row for row in batch if row.key not in done]
        found = await _members(session, todo, lock=lock)
        due = [m.id for m in found if m.next_settlement_at and m.next_settlement_at <= now]
        if due:
            for member_id in due:
                await settle(session, await lock_member(session, member_id), now)
            await session.flush()
            settled = {m.id: m for m in await _members_by_id(session, due)}
            found = [settled.get(m.id, m) for m in found]
        planner = cls(
            session=session,
            program=program,
            tiers=[t for t in all_tiers if t.deleted_at is None],
            tiers_by_id={t.id: t for t in all_tiers},
            now=now,
            source=source,
            ids=ids,
            done_keys=done,
            by_email={m.email: m for m in found},
            by_external_id={m.external_id: m for m in found if m.external_id is not None},
            _left=len(todo),
        )
        return planner

    async def plan(self, row: ImportRow) -> RowOutcome:
        """Decide `row` and add what it writes to `rows`; RowError (nothing added) if it
        breaks a rule."""
        if row.key in self.done_keys:
            return RowOutcome(row.line, "already imported", 0)
        self._left -= 1
        member = self._match(row)
        floor = self._floor(row)
        if member is None and row.email is None:
            raise RowError(
                row.line, "no member has this externalId, and without an email none is created"
            )
        change = _change(row, member.available if member is not None else 0)
        if member is not None and change > 0:
            try:
                check_posting(member, change)  # a new member's balance holds any one row
            except DomainError as exc:
                raise RowError(row.line, exc.message) from None
        lots = await self._lots(member) if member is not None and change < 0 else None

        # From here on the row is in: change the state.
        notes: list[str] = []
        if member is None:
            member = await self._create(row)
        else:
            self._remember(member)
            notes = self._fill(member, row)
        if change > 0:
            await self._credit(member, row, change)
        elif change < 0:
            assert lots is not None
            await self._debit(member, row, -change, lots)
        tier_changed = self._place(member, floor)
        entry_id = self.rows.entries[-1]["id"] if change else None
        self.rows.claims.append(
            {
                "scope": SCOPE,
                "key": row.key,
                "fingerprint": row.fingerprint,
                "entry_id": entry_id,
                "created_at": self.now,
            }
        )
        if member.created:
            action = "created"
        elif change or tier_changed or self._changed(member):
            action = "updated"
        else:
            action = "unchanged"
        return RowOutcome(row.line, action, change, tier_changed, tuple(notes))

    def finish(self) -> BatchRows:
        """The batch's rows, with the members' rows and their audit entries."""
        codes = iter(referral_codes(sum(m.created for m in self._states.values())))
        for member in self._states.values():
            if member.created:
                self.rows.new_members.append(self._new_member_row(member, next(codes)))
                before: dict[str, Any] | None = None
                after = {k: v for k, v in self._audited(member).items() if v is not None}
                after = {"email": member.email, "displayName": member.display_name, **after}
            else:
                old = self._before[member.id]
                assert old is not None
                new = self._audited(member)
                if new == old:
                    continue
                self.rows.member_updates.append(
                    {name: getattr(member, name) for name in ("id", *UPDATED_COLUMNS)}
                )
                changed = [name for name in new if old.get(name) != new[name]]
                before = {name: old.get(name) for name in changed}
                after = {name: new[name] for name in changed}
            self.rows.audits.append(
                {
                    "at": self.now,
                    "actor_key_id": audit.COMMAND_LINE.key_id,
                    "actor_name": audit.COMMAND_LINE.name,
                    "actor_role": audit.COMMAND_LINE.role,
                    "operation": OPERATION,
                    "target_id": encode_id("Member", member.id),
                    "before": _masked(before),
                    "after": _masked(after),
                }
            )
        self.rows.lot_updates = [
            {"id": lot_id, "remaining": remaining}
            for lot_id, remaining in sorted(self._lot_updates.items())
        ]
        return self.rows

    # ------------------------------------------------------------ matching and fields

    def _match(self, row: ImportRow) -> MemberState | None:
        by_email = self.by_email.get(row.email) if row.email is not None else None
        by_external_id = (
            self.by_external_id.get(row.external_id) if row.external_id is not None else None
        )
        if by_email is not None and by_external_id is not None and by_email is not by_external_id:
            raise RowError(row.line, "the email and the externalId belong to two different members")
        return by_email or by_external_id

    def _floor(self, row: ImportRow) -> Tier | None:
        """The tier the row brings over: its tier by name, else the one its lifetime points
        reach (None: neither given)."""
        if row.tier is not None:
            if not self._named:
                self._named = {t.name: t for t in self.tiers}
            named = self._named.get(row.tier)
            if named is None:
                raise RowError(row.line, f"tier: no tier is named {row.tier!r}")
            return named
        if row.lifetime_points is not None:
            return tier_for(row.lifetime_points, self.tiers)
        return None

    def _fill(self, member: MemberState, row: ImportRow) -> list[str]:
        """Fill the member's missing fields from the row; say which ones differ and are kept."""
        notes = []
        if row.birthday is not None:
            if member.birthday is None:
                member.birthday = row.birthday
            elif member.birthday != row.birthday:
                notes.append("birthday kept: the member's differs from the file's")
        if row.external_id is not None:
            if member.external_id is None:
                member.external_id = row.external_id
                self.by_external_id[row.external_id] = member
            elif member.external_id != row.external_id:
                notes.append("externalId kept: the member's differs from the file's")
        if row.email is not None and member.email != row.email:
            notes.append("email kept: the member (found by its externalId) has another")
        return notes

    async def _create(self, row: ImportRow) -> MemberState:
        assert row.email is not None
        member = MemberState(
            id=await self.ids.next("members", self._left + 1),
            email=row.email,
            external_id=row.external_id,
            display_name=row.name or row.email.split("@", 1)[0][:100],
            birthday=row.birthday,
            joined_at=row.joined_at or self.now,
            tier_id=self.tiers[0].id,
            tier_floor_id=None,
            available=0,
            pending=0,
            lifetime_earned=0,
            redeemed=0,
            expired=0,
            qualifying_points=0,
            earned_points=0,
            month_key=0,
            month_points=0,
            week_key=0,
            week_points=0,
            next_settlement_at=None,
            created=True,
            lots=[],  # nothing in the database yet
        )
        self._states[member.id] = member
        self._before[member.id] = None
        self.by_email[member.email] = member
        if member.external_id is not None:
            self.by_external_id[member.external_id] = member
        return member

    def _remember(self, member: MemberState) -> None:
        if member.id not in self._states:
            self._states[member.id] = member
            self._before[member.id] = self._audited(member)

    def _changed(self, member: MemberState) -> bool:
        return self._before.get(member.id) != self._audited(member)

    def _audited(self, member: MemberState) -> dict[str, Any]:
        """The fields an import may change, under their GraphQL names, as JSON values."""
        floor = self.tiers_by_id.get(member.tier_floor_id) if member.tier_floor_id else None
        return {
            "externalId": member.external_id,
            "birthday": member.birthday.isoformat() if member.birthday else None,
            "joinedAt": member.joined_at.isoformat() if member.created else None,
            "available": member.available,
            "tier": self.tiers_by_id[member.tier_id].name,
            "tierFloor": floor.name if floor is not None else None,
        }

    def _new_member_row(self, member: MemberState, referral_code: str) -> dict[str, Any]:
        """Every column of a new member, as enrolment writes them (no referrer, no signup
        bonus), with its balances after the import."""
        return {
            **dict(zip(STATE_COLUMNS, _state_of(member), strict=True)),
            "referral_code": referral_code,
            "referred_by_id": None,
            "referral_rewarded": False,
            "referral_rewarded_at": None,
            "status": MemberStatus.ACTIVE,
            "status_reason": None,
            "status_changed_at": None,
            "attributes": {},
            "leaderboard_opt_out": False,
            "erased_at": None,
        }

    # ------------------------------------------------------------ points and tiers

    async def _credit(self, member: MemberState, row: ImportRow, points: int) -> None:
        """`credit`'s entry for an adjustment: posted now, a lot expiring per the program."""
        if self._credit_terms is None:  # the same for every credit of the batch
            self._credit_terms = credit_terms(self.program, None, self.now)
        status, available_at, expires_at = self._credit_terms
        is_lot = opens_lot(EntryKind.ADJUSTMENT, status, points)
        entry = await self._entry(
            member,
            row,
            points,
            status=status,
            remaining=points if is_lot else 0,
            available_at=available_at,
            expires_at=expires_at,
        )
        apply_posting(
            member,
            kind=EntryKind.ADJUSTMENT,
            status=status,
            points=points,
            now=self.now,
            available_at=available_at,
            expires_at=expires_at if is_lot else None,
        )
        if is_lot:
            member.opened.append(Lot(entry["id"], expires_at, points, entry))
        self._event(member, entry["id"])

    async def _debit(
        self, member: MemberState, row: ImportRow, points: int, lots: list[Lot]
    ) -> None:
        """`debit`'s entry: `points` taken from the soonest-expiring lots first."""
        assert member.available >= points, "a balance set by a file is never negative"
        before = {id(lot): lot.remaining for lot in lots}
        left = take_from(lots, points, [])
        assert left == 0, f"member {member.id}: its lots hold less than its balance"
        for lot in lots:
            if lot.remaining != before[id(lot)]:
                if lot.entry is not None:
                    lot.entry["remaining"] = lot.remaining
                else:
                    self._lot_updates[lot.id] = lot.remaining
        entry = await self._entry(
            member,
            row,
            -points,
            status=EntryStatus.POSTED,
            remaining=0,
            available_at=None,
            expires_at=None,
        )
        apply_posting(
            member,
            kind=EntryKind.ADJUSTMENT,
            status=EntryStatus.POSTED,
            points=-points,
            now=self.now,
            available_at=None,
            expires_at=None,
        )
        self._event(member, entry["id"])

    async def _lots(self, member: MemberState) -> list[Lot]:
        """The member's open POSTED lots (in the database and opened in this batch), in the
        order a debit draws them."""
        if member.lots is None:
            found = await self.session.execute(
                select(LedgerEntry.id, LedgerEntry.expires_at, LedgerEntry.remaining)
                .where(
                    LedgerEntry.member_id == member.id,
                    LedgerEntry.status == EntryStatus.POSTED,
                    LedgerEntry.remaining > 0,
                )
                .order_by(LedgerEntry.id)
            )
            member.lots = [Lot(lot_id, expires, left) for lot_id, expires, left in found]
        return sorted(
            (lot for lot in [*member.lots, *member.opened] if lot.remaining > 0),
            key=lambda lot: (lot.expires_at is None, lot.expires_at or self.now, lot.id),
        )

    async def _entry(
        self,
        member: MemberState,
        row: ImportRow,
        points: int,
        *,
        status: EntryStatus,
        remaining: int,
        available_at: datetime | None,
        expires_at: datetime | None,
    ) -> dict[str, Any]:
        breakdown = [
            {"label": f"Imported balance: {self.source}, line {row.line}", "points": points}
        ]
        if row.lifetime_points is not None:
            breakdown.append(
                {"label": LIFETIME_NOTE.format(points=row.lifetime_points), "points": 0}
            )
        entry = {
            "id": await self.ids.next("ledger_entries", self._left + 1),
            "member_id": member.id,
            "kind": EntryKind.ADJUSTMENT,
            "status": status,
            "points": points,
            "remaining": remaining,
            "description": DESCRIPTION,
            "reference": f"import:{self.source}:{row.line}"[-200:],
            "created_at": self.now,
            "available_at": available_at,
            "expires_at": expires_at,
            "reverses_entry_id": None,
            "breakdown": breakdown,
            "actor": ACTOR,
        }
        self.rows.entries.append(entry)
        return entry

    def _event(self, member: MemberState, entry_id: int) -> None:
        self.rows.events.append(
            {
                "member_id": member.id,
                "kind": EventKind.POINTS_UPDATED,
                "entry_id": entry_id,
                "data": balances(member),
                "created_at": self.now,
            }
        )

    def _place(self, member: MemberState, floor: Tier | None) -> bool:
        """Raise the floor to `floor` when it is above the current one, and place the member
        by it (never lower than it is). Returns whether an existing member changed tier."""
        current_floor = self.tiers_by_id.get(member.tier_floor_id) if member.tier_floor_id else None
        if floor is None or floor.threshold <= (current_floor.threshold if current_floor else 0):
            return False
        member.tier_floor_id = floor.id
        placed = tier_for(member.qualifying_points, self.tiers, floor)
        current = self.tiers_by_id[member.tier_id]
        if current.deleted_at is None and placed.threshold <= current.threshold:
            return False
        if member.created:
            member.tier_id = placed.id  # enrolled in it: no change to announce
            return False
        self.rows.events.append(
            {
                "member_id": member.id,
                "kind": EventKind.TIER_CHANGED,
                "entry_id": None,
                "data": {"from": member.tier_id, "to": placed.id},
                "created_at": self.now,
            }
        )
        member.tier_id = placed.id
        return True


def _change(row: ImportRow, available: int) -> int:
    """The balance change a row asks for: its points, or its balance less the current one."""
    if row.points is None:
        return 0
    return row.points - available if row.absolute else row.points


def _masked(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {name: audit.mask(name, value) for name, value in values.items()}


def _one_of(session: AsyncSession, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN values`: on PostgreSQL `= ANY(array)`, one parameter (a statement prepared
    once, whatever the batch), elsewhere the usual list of parameters."""
    if session.bind.dialect.name == "postgresql":
        return cast(
            ColumnElement[bool], column == any_(bindparam(None, list(values), ARRAY(column.type)))
        )
    return cast(ColumnElement[bool], column.in_(values))


async def _claimed(session: AsyncSession, keys: Sequence[str]) -> set[str]:
    if not keys:
        return set()
    found = await session.scalars(
        select(IdempotencyRecord.key).where(
            IdempotencyRecord.scope == SCOPE, _one_of(session, IdempotencyRecord.key, keys)
        )
    )
    return set(found)


_STATE = [getattr(Member, name) for name in STATE_COLUMNS]
_state_of = attrgetter(*STATE_COLUMNS)


async def _members(
    session: AsyncSession, rows: Iterable[ImportRow], *, lock: bool
) -> list[MemberState]:
    """The members the rows name (by email or externalId), in id order (and locked, in
    that order: two batches never wait on each other in a cycle)."""
    emails = sorted({row.email for row in rows if row.email is not None})
    external_ids = sorted({row.external_id for row in rows if row.external_id is not None})
    if not emails and not external_ids:
        return []
    named = []
    if emails:
        named.append(_one_of(session, Member.email, emails))
    if external_ids:
        named.append(_one_of(session, Member.external_id, external_ids))
    stmt = select(*_STATE).where(or_(*named), Member.erased_at.is_(None)).order_by(Member.id)
    found = await session.execute(stmt.with_for_update() if lock else stmt)
    return [MemberState(*row) for row in found]


async def _members_by_id(session: AsyncSession, member_ids: Sequence[int]) -> list[MemberState]:
    found = await session.execute(select(*_STATE).where(_one_of(session, Member.id, member_ids)))
    return [MemberState(*row) for row in found]
