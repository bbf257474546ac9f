"""Enrolment and member lookups."""

from __future__ import annotations

import re
import secrets
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models import EntryKind, EventKind, Member, Program
from services import redemptions
from services.errors import AlreadyExists, Invalid, NotFound
from services.events import record_event
from services.gamification import challenges
from services.gamification.challenges import gamified
from services.ledger.entries import credit
from services.program import clean_text, get_program, list_tiers
from services.tiers import refresh_tier

EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
# No 0/O, 1/I/L: codes are read aloud and typed from screenshots.
REFERRAL_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
REFERRAL_CODE_LENGTH = 8


def normalise_email(email: str) -> str:
    normalised = email.strip().lower()
    if len(normalised) > 254 or not EMAIL_PATTERN.match(normalised):
        raise Invalid("not a valid email address", field=["input", "email"])
    return normalised


def check_birthday(birthday: date, now: datetime) -> date:
    if not date(1900, 1, 1) <= birthday <= now.date():
        raise Invalid("birthday must be a past date", field=["input", "birthday"])
    return birthday


# Random bytes below the largest multiple of the alphabet's size map onto it uniformly (b % 31);
# the others are dropped.
_USABLE = 256 - 256 % len(REFERRAL_ALPHABET)
_TO_CODE = bytes(
    ord(REFERRAL_ALPHABET[b % len(REFERRAL_ALPHABET)]) if b < _USABLE else 0 for b in range(256)
)
_UNUSABLE = bytes(range(_USABLE, 256))


def referral_codes(count: int) -> list[str]:
    """`count` new referral codes, uniformly random over the alphabet, from one draw of random
    bytes (an import of 200,000 members spends seconds less than a draw a character)."""
    wanted = count * REFERRAL_CODE_LENGTH
    characters = b""
    while len(characters) < wanted:
        characters += secrets.token_bytes(wanted + wanted // 8 + 16).translate(_TO_CODE, _UNUSABLE)
    text = characters.decode()
    return [text[i : i + REFERRAL_CODE_LENGTH] for i in range(0, wanted, REFERRAL_CODE_LENGTH)]


def new_referral_code() -> str:
    return referral_codes(1)[0]


async def enroll(
    session: AsyncSession,
    *,
    email: str,
    display_name: str,
    now: datetime,
    external_id: str | None = None,
    birthday: date | None = None,
    referral_code: str | None = None,
) -> Member:
    email = normalise_email(email)
    display_name = clean_text(display_name, ["input", "displayName"], max_length=100)
    if external_id is not None:
        external_id = clean_text(external_id, ["input", "externalId"], max_length=200)
    if birthday is not None:
        check_birthday(birthday, now)

    if await session.scalar(select(Member.id).where(Member.email == email)) is not None:
        raise AlreadyExists("a member with this email already exists", field=["input", "email"])
    if (
        external_id is not None
        and (await session.scalar(select(Member.id).where(Member.external_id == external_id)))
        is not None
    ):
        raise AlreadyExists(
            "a member with this externalId already exists", field=["input", "externalId"]
        )
    referrer_id: int | None = None
    if referral_code is not None and referral_code.strip():
        code = referral_code.strip().upper()
        found = (
            await session.execute(
                select(Member.id, Member.email).where(Member.referral_code == code)
            )
        ).first()
        if found is None:
            raise Invalid("unknown referral code", field=["input", "referralCode"])
        if mailbox(found.email) == mailbox(email):
            # The same person under a +tag: a referral pays both sides, so it must be another's.
            raise Invalid(
                "a member cannot use its own referral code", field=["input", "referralCode"]
            )
        referrer_id = found.id

    program = await get_program(session)
    tiers = await list_tiers(session)
    member = Member(
        email=email,
        display_name=display_name,
        external_id=external_id,
        birthday=birthday,
        joined_at=now,
        referral_code=new_referral_code(),
        referred_by_id=referrer_id,
        referral_rewarded=False,
        tier_id=tiers[0].id,
        available=0,
        pending=0,
        lifetime_earned=0,
        redeemed=0,
        expired=0,
        qualifying_points=0,
        earned_points=0,
    )
    session.add(member)
    try:
        # A concurrent enrolment of the same email or externalId loses here, cleanly.
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(
            "a member with this email or externalId already exists", field=["input", "email"]
        ) from exc
    record_event(session, member.id, EventKind.MEMBER_ENROLLED, now)
    if program.signup_bonus > 0:
        credit(
            session,
            member,
            program,
            kind=EntryKind.SIGNUP,
            points=program.signup_bonus,
            now=now,
            description="Welcome bonus",
        )
    # Written with the member, in its transaction: once per member, whatever the retries.
    welcomed = referrer_id is not None and await _welcome_referred(session, member, program, now)
    if program.signup_bonus > 0 or welcomed:
        if await gamified(session, now):  # the bonus counts for POINTS_EARNED goals, badges
            await session.flush()
            await challenges.after_change(session, member, program, now)
        await refresh_tier(session, member, program, tiers, now)
    await session.flush()
    return member


def mailbox(email: str) -> str:
    """The mailbox an address delivers to, for telling a person from another: case-folded,
    without a +tag (ann+2@example.com is ann@example.com)."""
    local, _, domain = email.strip().lower().partition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


async def _welcome_referred(
    session: AsyncSession, member: Member, program: Program, now: datetime
) -> bool:
    """The referral welcome: referralWelcomePoints as a REFERRAL entry and a voucher of
    referralWelcomeRewardId at 0 points (skipped when the reward cannot be had now, e.g. out
    of stock: the enrolment never fails for it). Whether points were earned."""
    if program.referral_welcome_reward_id is not None:
        await redemptions.give(
            session,
            member,
            reward_id=program.referral_welcome_reward_id,
            description="Referral welcome gift",
            now=now,
        )
    if program.referral_welcome_points <= 0:
        return False
    credit(
        session,
        member,
        program,
        kind=EntryKind.REFERRAL,
        points=program.referral_welcome_points,
        now=now,
        description="Referral welcome",
    )
    return True


async def find_member(
    session: AsyncSession, *, member_id: int | None = None, external_id: str | None = None
) -> Member:
    """The member by id or by the merchant's externalId (exactly one of them)."""
    if (member_id is None) == (external_id is None):
        raise Invalid("give exactly one of memberId and externalId", field=["input", "memberId"])
    if member_id is not None:
        member = await session.get(Member, member_id)
        field = ["input", "memberId"]
    else:
        member = await session.scalar(select(Member).where(Member.external_id == external_id))
        field = ["input", "externalId"]
    if member is None:
        raise NotFound("no such member", field=field)
    return member
