"""Redeeming rewards for points, and a redemption's life: ISSUED -> USED, or -> CANCELLED.

A redemption locks the member (so balance, per-member limit and status checks cannot race),
takes a unit of stock with a guarded update (so stock never goes below zero, whichever members
race for it), spends the soonest-expiring points, and issues a voucher code. Cancelling gives
the points back as new entries, with the expiries they had, and the stock.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from models import (
    EntryKind,
    EntryStatus,
    EventKind,
    LedgerEntry,
    Member,
    MemberStatus,
    Partner,
    Redemption,
    RedemptionStatus,
    Reward,
    RewardKind,
    Tier,
)
from services.errors import (
    InsufficientPoints,
    Invalid,
    LimitReached,
    MemberSuspended,
    NotEligible,
    NotFound,
    OutOfStock,
)
from services.events import balances, record_event
from services.ledger.entries import Drawn, lock_member, post, settle, spend
from services.ledger.idempotency import claim, record_result
from services.ledger.purchases import reference_key
from services.segments import segments_containing
from services.targeting import early_access_for

# Unambiguous characters (no 0/O, 1/I/L): read aloud at a till, typed from a screen.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_GROUPS = 4  # 16 characters, about 79 bits: unguessable, and collisions never happen


@dataclass(slots=True)
class RedemptionResult:
    redemption: Redemption
    member: Member
    replayed: bool = False


def new_code(prefix: str = "", groups: int = CODE_GROUPS) -> str:
    # One draw from the OS's CSPRNG, uniform over every code, written in the alphabet's base
    # (a draw per character cost 16 urandom calls a code).
    number = secrets.randbelow(len(CODE_ALPHABET) ** (4 * groups))
    chars = []
    for _ in range(4 * groups):
        number, digit = divmod(number, len(CODE_ALPHABET))
        chars.append(CODE_ALPHABET[digit])
    return prefix + "-".join("".join(chars[i : i + 4]) for i in range(0, len(chars), 4))


async def partner_active(session: AsyncSession, partner_id: int | None) -> bool:
    """A deactivated partner's rewards are out of the catalog: they redeem as unknown."""
    if partner_id is None:
        return True
    partner = await session.get(Partner, partner_id)
    return partner is not None and partner.deactivated_at is None


def claim_scope(member_id: int) -> str:
    """A redemption's idempotency key is the member's own: scoped to it."""
    return f"redeem:member:{member_id}"


def spend_description(reward_name: str) -> str:
    return f"Redeemed: {reward_name}"


def reward_reference(reward_id: int) -> str:
    return f"reward:{reward_id}"


def drawn_json(drawn: list[Drawn]) -> list[list[object]]:
    """The `drawn` column: [[expires_at ISO or null, points], ...] in the order taken."""
    return [[at.isoformat() if at else None, points] for at, points in drawn]


async def redeem(
    session: AsyncSession,
    *,
    member_id: int,
    reward_id: int,
    idempotency_key: str,
    now: datetime,
    actor: str,
) -> RedemptionResult:
    key = reference_key(idempotency_key, ["input", "idempotencyKey"])
    claimed = await claim(
        session, scope=claim_scope(member_id), key=key, request={"reward": reward_id}, now=now
    )
    if claimed.first_use is not None:
        assert claimed.first_use.entry_id is not None
        return await _replay(session, claimed.first_use.entry_id)

    member = await lock_member(session, member_id)
    if member.status is MemberStatus.SUSPENDED:
        raise MemberSuspended(
            "this member is suspended and cannot redeem", field=["input", "rewardId"]
        )
    await settle(session, member, now)
    reward = await session.get(Reward, reward_id)
    if reward is None or not await partner_active(session, reward.partner_id):
        raise NotFound("no such reward", field=["input", "rewardId"])
    if reward.segment_id is not None and not await segments_containing(
        session, member.id, [reward.segment_id], now
    ):
        # A targeted reward does not exist for members outside its segment.
        raise NotFound("no such reward", field=["input", "rewardId"])
    await _check_eligible(session, member, reward, now)
    if member.available < reward.cost:
        raise InsufficientPoints(
            f"{reward.cost} points needed, {member.available} available",
            field=["input", "rewardId"],
        )
    took_stock = reward.stock is not None
    if took_stock and reward.stock == 0:
        raise OutOfStock("this reward is out of stock", field=["input", "rewardId"])

    entry, drawn = await spend(
        session,
        member,
        kind=EntryKind.REDEMPTION,
        points=reward.cost,
        now=now,
        description=spend_description(reward.name),
        reference=reward_reference(reward.id),
        actor=actor,
    )
    redemption = _issued(
        member, reward, entry, points=reward.cost, drawn=drawn, took_stock=took_stock, now=now
    )
    redemption.actor = actor
    session.add(redemption)
    await session.flush()
    await record_result(session, claimed, entry_id=entry.id)
    if took_stock:
        # Last, just before the commit: the reward's row is locked from here to the commit,
        # and every member redeeming it queues on that lock. The guard keeps stock >= 0
        # whatever the concurrency; when it refuses, everything above rolls back.
        left = await session.scalar(
            update(Reward)
            .where(Reward.id == reward.id, Reward.stock > 0)
            .values(stock=Reward.stock - 1)
            .returning(Reward.stock)
        )
        if left is None:
            raise OutOfStock("this reward is out of stock", field=["input", "rewardId"])
        set_committed_value(reward, "stock", left)
    return RedemptionResult(redemption=redemption, member=member)


def _issued(
    member: Member,
    reward: Reward,
    entry: LedgerEntry,
    *,
    points: int,
    drawn: list[Drawn],
    took_stock: bool,
    now: datetime,
) -> Redemption:
    """An ISSUED redemption of the reward, with the reward's terms copied onto it."""
    is_donation = reward.kind is RewardKind.DONATION
    return Redemption(
        member_id=member.id,
        reward_id=reward.id,
        partner_id=reward.partner_id,
        entry=entry,
        points=points,
        value=reward.value,
        settlement_amount=reward.settlement_amount,
        status=RedemptionStatus.ISSUED,
        code=None if is_donation else new_code(),
        receipt_number=new_code("R-", groups=3),
        took_stock=took_stock,
        drawn=drawn_json(drawn),
        created_at=now,
    )


async def give(
    session: AsyncSession,
    member: Member,
    *,
    reward_id: int,
    description: str,
    now: datetime,
    actor: str = "system",
) -> Redemption | None:
    """Issue the reward to the member at 0 points (a gift, e.g. the referral welcome), or None
    when it cannot be had now: no such reward or partner, outside its dates, or out of stock.
    A gift never refuses what it comes with (an enrolment); its minimum tier and per-member
    limit do not apply (the admin chose to give it). Stock is taken with the same guarded
    update as a redemption, first, so an empty stock gives nothing and writes nothing."""
    reward = await session.get(Reward, reward_id)
    if reward is None or not await partner_active(session, reward.partner_id):
        return None
    if (reward.starts_at is not None and now < reward.starts_at) or (
        reward.ends_at is not None and now >= reward.ends_at
    ):
        return None
    took_stock = reward.stock is not None
    if took_stock:
        left = await session.scalar(
            update(Reward)
            .where(Reward.id == reward.id, Reward.stock > 0)
            .values(stock=Reward.stock - 1)
            .returning(Reward.stock)
        )
        if left is None:
            return None
        set_committed_value(reward, "stock", left)
    entry = post(
        session,
        member,
        kind=EntryKind.REDEMPTION,
        points=0,
        now=now,
        description=description,
        reference=reward_reference(reward.id),
        actor=actor,
    )
    redemption = _issued(member, reward, entry, points=0, drawn=[], took_stock=took_stock, now=now)
    redemption.actor = actor
    session.add(redemption)
    await session.flush()
    return redemption


async def _early(session: AsyncSession, member: Member, reward: Reward, now: datetime) -> bool:
    """Whether the member may redeem the reward before its public start: its early access has
    opened and the member is in its audience (decided now, under the member's lock)."""
    opens = reward.early_access_starts_at
    return (
        opens is not None
        and opens <= now
        and await early_access_for(
            session,
            tier_id=member.tier_id,
            member_id=member.id,
            early_tier_id=reward.early_access_tier_id,
            early_segment_id=reward.early_access_segment_id,
            now=now,
        )
    )


async def _check_eligible(
    session: AsyncSession, member: Member, reward: Reward, now: datetime
) -> None:
    if (
        reward.starts_at is not None
        and now < reward.starts_at
        and not await _early(session, member, reward, now)
    ):
        raise NotEligible("this reward is not available yet", field=["input", "rewardId"])
    if reward.ends_at is not None and now >= reward.ends_at:
        raise NotEligible("this reward is no longer available", field=["input", "rewardId"])
    if reward.minimum_tier_id is not None and reward.minimum_tier_id != member.tier_id:
        minimum = await session.get(Tier, reward.minimum_tier_id)
        current = await session.get(Tier, member.tier_id)
        assert minimum is not None and current is not None
        if current.threshold < minimum.threshold:
            raise NotEligible(
                f"this reward needs the {minimum.name} tier or above", field=["input", "rewardId"]
            )
    if reward.per_member_limit is not None:
        taken = await count_redeemed(session, member_id=member.id, reward_id=reward.id)
        if taken >= reward.per_member_limit:
            raise LimitReached(
                f"this reward can be redeemed {reward.per_member_limit} time(s) per member",
                field=["input", "rewardId"],
            )


async def count_redeemed(session: AsyncSession, *, member_id: int, reward_id: int) -> int:
    """Redemptions of the reward by the member that count against its limit (not cancelled)."""
    total = await session.scalar(
        select(func.count(Redemption.id)).where(
            Redemption.member_id == member_id,
            Redemption.reward_id == reward_id,
            Redemption.status != RedemptionStatus.CANCELLED,
        )
    )
    return int(total or 0)


async def _replay(session: AsyncSession, entry_id: int) -> RedemptionResult:
    redemption = await session.scalar(select(Redemption).where(Redemption.entry_id == entry_id))
    assert redemption is not None, "a committed claim always records its redemption's entry"
    member = await session.get(Member, redemption.member_id)
    assert member is not None
    return RedemptionResult(redemption=redemption, member=member, replayed=True)


async def _locked(session: AsyncSession, redemption_id: int) -> tuple[Redemption, Member]:
    """The redemption and its member, the member locked: every status change holds that lock."""
    found = await session.get(Redemption, redemption_id)
    if found is None:
        raise NotFound("no such redemption", field=["input", "id"])
    member = await lock_member(session, found.member_id, erased_ok=True)
    redemption = await session.scalar(
        select(Redemption)
        .where(Redemption.id == redemption_id)
        .execution_options(populate_existing=True)
    )
    assert redemption is not None
    return redemption, member


async def find_by_code(session: AsyncSession, code: str) -> int:
    clean = code.strip().upper()
    if not clean or len(clean) > 32:
        raise Invalid("not a voucher code", field=["input", "code"])
    found = await session.scalar(select(Redemption.id).where(Redemption.code == clean))
    if found is None:
        raise NotFound("no redemption has this code", field=["input", "code"])
    return found


async def use(session: AsyncSession, *, redemption_id: int, now: datetime) -> RedemptionResult:
    """Mark an issued voucher as used at checkout: a code is good for one order only."""
    redemption, member = await _locked(session, redemption_id)
    if redemption.status is RedemptionStatus.USED:
        raise NotEligible("this voucher was already used", field=["input", "code"])
    if redemption.status is RedemptionStatus.CANCELLED:
        raise NotEligible("this redemption was cancelled", field=["input", "code"])
    redemption.status = RedemptionStatus.USED
    redemption.used_at = now
    await session.flush()
    record_event(session, member.id, EventKind.REDEMPTION_USED, now, {"redemption": redemption.id})
    return RedemptionResult(redemption=redemption, member=member)


async def cancel(
    session: AsyncSession, *, redemption_id: int, now: datetime, actor: str
) -> RedemptionResult:
    """Cancel an issued redemption: points back (new entries) and stock back, exactly once.

    Cancelling one already cancelled returns it unchanged; a used one cannot be cancelled.
    """
    redemption, member = await _locked(session, redemption_id)
    if redemption.status is RedemptionStatus.CANCELLED:
        return RedemptionResult(redemption=redemption, member=member, replayed=True)
    if redemption.status is RedemptionStatus.USED:
        raise NotEligible("a used voucher cannot be cancelled", field=["input", "id"])
    await settle(session, member, now)
    reward = await session.get(Reward, redemption.reward_id)
    assert reward is not None
    by_expiry: dict[str | None, int] = defaultdict(int)
    for expires_at, points in redemption.drawn:
        by_expiry[expires_at] += points
    for expires_at, points in by_expiry.items():
        post(
            session,
            member,
            kind=EntryKind.REDEMPTION,
            points=points,
            now=now,
            description=f"Returned: {reward.name} (redemption cancelled)",
            status=EntryStatus.POSTED,
            reference=reward_reference(reward.id),
            available_at=now,
            expires_at=datetime.fromisoformat(expires_at) if expires_at else None,
            actor=actor,
            reverses_entry_id=redemption.entry_id,
        )
    if redemption.took_stock:
        await session.execute(
            update(Reward)
            .where(Reward.id == reward.id, Reward.stock.is_not(None))
            .values(stock=Reward.stock + 1)
        )
    redemption.status = RedemptionStatus.CANCELLED
    redemption.cancelled_at = now
    await session.flush()
    record_event(
        session,
        member.id,
        EventKind.REDEMPTION_CANCELLED,
        now,
        {"redemption": redemption.id, "balance": balances(member)},
    )
    # Points whose lots expired meanwhile are returned and expire again at once, as they would
    # have: cancelling never extends an expiry.
    await settle(session, member, now)
    return RedemptionResult(redemption=redemption, member=member)
