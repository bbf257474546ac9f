"""Editing members: an admin's corrections, a member's own profile, and status (suspension).

Each edit changes only the fields it is given, on the member's locked row, so two admins
editing different fields at once both win. Every change is announced after commit
(`touched`): dashboards cached for the member are dropped and leaderboards re-read its
opt-out. Admin edits are audited in the same transaction, personal data masked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models import EventKind, Member, MemberStatus
from services import audit
from services.errors import AlreadyExists, Invalid, NotEligible
from services.events import record_event, touched
from services.global_ids import encode_id
from services.ledger.entries import lock_member
from services.members import check_birthday, normalise_email
from services.program import clean_text

# Limits of `attributes` (the contract asks for at least 50 keys of 64 characters and strings
# of 1,000): one level of strings, numbers and booleans.
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_STRING = 1_000
MAX_ATTRIBUTES_BYTES = 32 * 1024
MAX_STATUS_REASON = 500

# What an admin may edit and how the audit trail names it (GraphQL name -> attribute).
EDITABLE = {
    "email": "email",
    "displayName": "display_name",
    "birthday": "birthday",
    "externalId": "external_id",
    "attributes": "attributes",
    "leaderboardOptOut": "leaderboard_opt_out",
}
STATUS_FIELDS = {"status": "status", "statusReason": "status_reason"}
_GRAPHQL_NAMES = {attribute: name for name, attribute in EDITABLE.items()}


def member_gid(member_id: int) -> str:
    return encode_id("Member", member_id)


def check_attributes(value: Any) -> dict[str, Any]:
    """A JSON object of strings, numbers and booleans, within the limits above."""
    field = ["input", "attributes"]
    if not isinstance(value, dict):
        raise Invalid("attributes must be a JSON object", field=field)
    if len(value) > MAX_ATTRIBUTES:
        raise Invalid(f"at most {MAX_ATTRIBUTES} attributes", field=field)
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_ATTRIBUTE_KEY:
            raise Invalid(f"attribute names are 1 to {MAX_ATTRIBUTE_KEY} characters", field=field)
        if isinstance(item, str):
            if len(item) > MAX_ATTRIBUTE_STRING:
                raise Invalid(
                    f"attribute {key!r}: strings are at most {MAX_ATTRIBUTE_STRING} characters",
                    field=field,
                )
        elif isinstance(item, float) and not math.isfinite(item):
            raise Invalid(f"attribute {key!r}: numbers must be finite", field=field)
        elif not isinstance(item, bool | int | float):
            raise Invalid(
                f"attribute {key!r}: values are strings, numbers or booleans (nothing nested)",
                field=field,
            )
    if len(orjson.dumps(value)) > MAX_ATTRIBUTES_BYTES:
        raise Invalid(f"attributes take at most {MAX_ATTRIBUTES_BYTES} bytes", field=field)
    return dict(value)


async def update_member(
    session: AsyncSession,
    *,
    member_id: int,
    changes: Mapping[str, Any],
    actor: audit.Actor,
    now: datetime,
) -> Member:
    """An admin's edit: only the fields in `changes` (by attribute name, as `EDITABLE` names
    them); None clears birthday and externalId, and empties attributes."""
    member = await lock_member(session, member_id, field=["input", "id"])
    before = audit.fields(member, EDITABLE)
    for name, value in changes.items():
        await _apply(session, member, name, value, now)
    await _flush_unique(session)
    _announce_update(session, member, before, audit.fields(member, EDITABLE), now)
    audit.record_change(
        session,
        actor=actor,
        operation="updateMember",
        target_id=member_gid(member.id),
        before=before,
        after=audit.fields(member, EDITABLE),
        now=now,
    )
    return member


async def update_me(
    session: AsyncSession, *, member_id: int, changes: Mapping[str, Any], now: datetime
) -> Member:
    """A member's own edit: display name, birthday (set once: it pays birthday points, so a
    member cannot move it), leaderboard opt-out."""
    member = await lock_member(session, member_id)
    before = audit.fields(member, EDITABLE)
    for name, value in changes.items():
        if name == "birthday":
            if value == member.birthday:
                continue
            if member.birthday is not None:
                raise NotEligible(
                    "a birthday can be set once; ask the program to correct it",
                    field=["input", "birthday"],
                )
        await _apply(session, member, name, value, now)
    await session.flush()
    _announce_update(session, member, before, audit.fields(member, EDITABLE), now)
    return member


async def set_status(
    session: AsyncSession,
    *,
    member_id: int,
    status: MemberStatus,
    reason: str,
    actor: audit.Actor,
    now: datetime,
) -> Member:
    """Suspend (earns nothing, cannot redeem) or reactivate. Reactivating pays nothing back
    of what was withheld: an admin may adjust points for that."""
    reason = clean_text(reason, ["input", "reason"], max_length=MAX_STATUS_REASON)
    member = await lock_member(session, member_id)
    before = audit.fields(member, STATUS_FIELDS)
    if member.status is not status:
        member.status_changed_at = now
    member.status = status
    member.status_reason = reason
    await session.flush()
    _announce_update(session, member, before, audit.fields(member, STATUS_FIELDS), now)
    audit.record_change(
        session,
        actor=actor,
        operation="setMemberStatus",
        target_id=member_gid(member.id),
        before=before,
        after=audit.fields(member, STATUS_FIELDS),
        now=now,
    )
    return member


def _announce_update(
    session: AsyncSession,
    member: Member,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    now: datetime,
) -> None:
    """Tell caches, leaderboards and subscribers after commit, and webhooks which fields
    changed (member.updated, only when something did)."""
    changed = [name for name, value in after.items() if before.get(name) != value]
    if changed:
        record_event(session, member.id, EventKind.MEMBER_UPDATED, now, {"fields": changed})
    else:
        touched(session, [member.id])


async def _apply(
    session: AsyncSession, member: Member, name: str, value: Any, now: datetime
) -> None:
    field = ["input", _GRAPHQL_NAMES.get(name, name)]
    if name == "email":
        if value is None:
            raise Invalid("email cannot be null", field=field)
        email = normalise_email(value)
        if email != member.email:
            await _unique(session, Member.email == email, member.id, "email", field)
        member.email = email
    elif name == "display_name":
        if value is None:
            raise Invalid("displayName cannot be null", field=field)
        member.display_name = clean_text(value, field, max_length=100)
    elif name == "birthday":
        member.birthday = None if value is None else check_birthday(_date(value), now)
    elif name == "external_id":
        external_id = None if value is None else clean_text(value, field, max_length=200)
        if external_id is not None and external_id != member.external_id:
            await _unique(
                session, Member.external_id == external_id, member.id, "externalId", field
            )
        member.external_id = external_id
    elif name == "attributes":
        member.attributes = {} if value is None else check_attributes(value)
    elif name == "leaderboard_opt_out":
        if not isinstance(value, bool):
            raise Invalid("leaderboardOptOut is true or false", field=field)
        member.leaderboard_opt_out = value
    else:
        raise Invalid(f"{field[-1]} cannot be edited", field=field)


def _date(value: Any) -> date:
    if not isinstance(value, date):
        raise Invalid("not a date", field=["input", "birthday"])
    return value


async def _unique(
    session: AsyncSession, condition: Any, member_id: int, what: str, field: list[str]
) -> None:
    taken = await session.scalar(select(Member.id).where(condition, Member.id != member_id))
    if taken is not None:
        raise AlreadyExists(f"another member has this {what}", field=field)


async def _flush_unique(session: AsyncSession) -> None:
    """Flush; a concurrent edit or enrolment that took the same email or externalId first
    loses here, cleanly."""
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(
            "another member has this email or externalId", field=["input", "email"]
        ) from exc
