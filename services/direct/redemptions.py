"""redeemReward's common case on PostgreSQL, in three statements.

1. claim the member's idempotency key, then lock and read the member;
2. read the reward, the member's redemptions of it (when it has a per-member limit) and its
   first open lots, soonest-expiring first (a statement of its own: its snapshot is taken after
   the lock, so it sees every redemption that committed while this one waited);
3. take a unit of stock (guarded: never below zero), draw the lots, and write the REDEMPTION
   entry, the redemption, its POINTS_UPDATED event, the balances and the claim's result, as
   data-modifying CTEs of one statement.

A redemption that is not plainly allowed (a retry, points to settle, a reward missing, targeted
at a segment, outside its dates (early access included), above the member's tier, at its
limit, too dear, out of stock, or a spend needing more lots than the first few) is left to the
general path (`services.redemptions.redeem`), which refuses it with the right error or, if the
world changed meanwhile, grants it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from models import EntryKind, EntryStatus, RedemptionStatus, RewardKind
from services.direct.writer import MEMBER_COLUMNS, DirectWriter, LockedMember, WrittenEntry
from services.events import balances
from services.ledger.entries import DRAW_BATCH, Drawn, apply_posting, check_posting, take_from
from services.ledger.idempotency import fingerprint
from services.redemptions import (
    claim_scope,
    drawn_json,
    new_code,
    reward_reference,
    spend_description,
)


@dataclass(frozen=True, slots=True)
class IssuedRedemption:
    """The redemption as written (a `RedemptionRecord`)."""

    id: int
    member_id: int
    reward_id: int
    points: int
    value: Decimal | None
    status: RedemptionStatus
    code: str | None
    receipt_number: str
    created_at: datetime
    used_at: datetime | None = None
    cancelled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RedeemedReward:
    redemption: IssuedRedemption
    entry: WrittenEntry
    member: LockedMember


@dataclass(slots=True)
class _Lot:
    id: int
    remaining: int
    expires_at: datetime | None


# (The only text formatted in is LockedMember's field names.)
_CLAIM_AND_LOCK = f"""
WITH claim AS (
    INSERT INTO idempotency_records (scope, key, fingerprint, created_at)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (scope, key) DO NOTHING
    RETURNING id
)
SELECT {MEMBER_COLUMNS}, (SELECT id FROM claim) AS claim_id
FROM members AS m
WHERE m.id = $5
FOR UPDATE OF m
"""  # noqa: S608

# Lots in the general path's order: soonest-expiring first, never-expiring last, oldest first.
_REWARD_AND_LOTS = """
SELECT r.name, r.kind, r.cost, r.value, r.partner_id, r.minimum_tier_id, r.stock, r.starts_at,
       r.ends_at, r.per_member_limit, r.settlement_amount, r.segment_id,
       (SELECT count(*) FROM redemptions
        WHERE r.per_member_limit IS NOT NULL AND member_id = $1 AND reward_id = r.id
          AND status <> 'CANCELLED') AS taken,
       lots.ids, lots.remaining, lots.expiries
FROM rewards AS r,
LATERAL (
    SELECT array_agg(open.id ORDER BY open.expires_at, open.id) AS ids,
           array_agg(open.remaining ORDER BY open.expires_at, open.id) AS remaining,
           array_agg(open.expires_at ORDER BY open.expires_at, open.id) AS expiries
    FROM (
        SELECT id, remaining, expires_at FROM ledger_entries
        WHERE member_id = $1 AND status = 'POSTED' AND remaining > 0
        ORDER BY expires_at, id
        LIMIT $3
    ) AS open
) AS lots
WHERE r.id = $2
  AND (r.partner_id IS NULL
       OR EXISTS (SELECT FROM partners AS p WHERE p.id = r.partner_id AND p.deactivated_at IS NULL))
"""

_WRITE = """
WITH stock AS (
    UPDATE rewards SET stock = stock - 1
    WHERE id = $1 AND $2 AND stock > 0
    RETURNING stock
), lots AS (
    UPDATE ledger_entries AS lot SET remaining = drawn.remaining
    FROM unnest($3::bigint[], $4::int[]) AS drawn(id, remaining)
    WHERE lot.id = drawn.id
), entry AS (
    INSERT INTO ledger_entries (member_id, kind, status, points, remaining, description,
                                reference, created_at, breakdown, actor)
    VALUES ($5, 'REDEMPTION', 'POSTED', $6, 0, $7, $8, $9, $10::json, $11)
    RETURNING id
), redemption AS (
    INSERT INTO redemptions (member_id, reward_id, partner_id, entry_id, points, value,
                             settlement_amount, status, code, receipt_number, took_stock, drawn,
                             created_at, actor)
    SELECT $5, $1, $12, entry.id, $13, $14, $15, 'ISSUED', $16, $17, $2, $18::json, $9, $11
    FROM entry
    RETURNING id
), event AS (
    INSERT INTO member_events (member_id, kind, entry_id, data, created_at)
    SELECT $5, 'POINTS_UPDATED', entry.id, $19::json, $9 FROM entry
), claim AS (
    UPDATE idempotency_records SET entry_id = entry.id
    FROM entry
    WHERE idempotency_records.id = $20
), cached AS (
    UPDATE members SET available = $21, redeemed = $22 WHERE id = $5
)
SELECT entry.id AS entry_id, redemption.id AS redemption_id,
       EXISTS (SELECT FROM stock) AS took_a_unit
FROM entry, redemption
"""


async def redeem(
    writer: DirectWriter,
    *,
    member_id: int,
    reward_id: int,
    key: str,
    now: datetime,
    actor: str,
) -> RedeemedReward | None:
    """Redeem the reward for the member, or return None having written nothing: use the
    general path. `key` is the checked idempotency key."""

    async def work(driver: Any) -> RedeemedReward | None:
        return await _redeem(driver, member_id, reward_id, key, now, actor)

    return await writer.transaction(work)


async def _redeem(
    driver: Any, member_id: int, reward_id: int, key: str, now: datetime, actor: str
) -> RedeemedReward | None:
    digest = fingerprint({"reward": reward_id})
    row = await driver.fetchrow(
        _CLAIM_AND_LOCK, claim_scope(member_id), key, digest, now, member_id
    )
    if row is None or row["claim_id"] is None:
        return None  # no such member, or a retry
    member = LockedMember.from_record(row)
    if member.settlement_due(now) or not member.earns_normally:
        return None
    reward = await driver.fetchrow(_REWARD_AND_LOTS, member_id, reward_id, DRAW_BATCH)
    if reward is None or not _plainly_allowed(reward, member, now):
        return None
    cost: int = reward["cost"]
    columns = (reward["ids"] or (), reward["remaining"] or (), reward["expiries"] or ())
    lots = [_Lot(*lot) for lot in zip(*columns, strict=True)]
    drawn: list[Drawn] = []
    if take_from(lots, cost, drawn) > 0:
        return None  # the first few lots do not cover it: the general path reads on

    check_posting(member, -cost)
    apply_posting(
        member,
        kind=EntryKind.REDEMPTION,
        status=EntryStatus.POSTED,
        points=-cost,
        now=now,
        available_at=None,
        expires_at=None,
    )
    description = spend_description(reward["name"])
    breakdown = [{"label": description, "points": -cost}]
    took_stock = reward["stock"] is not None
    code = None if reward["kind"] == RewardKind.DONATION.value else new_code()
    receipt_number = new_code("R-", groups=3)
    written = await driver.fetchrow(
        _WRITE,
        reward_id,
        took_stock,
        [lot.id for lot in lots],
        [lot.remaining for lot in lots],
        member_id,
        -cost,
        description[:500],
        reward_reference(reward_id),
        now,
        orjson.dumps(breakdown).decode(),
        actor,
        reward["partner_id"],
        cost,
        reward["value"],
        reward["settlement_amount"],
        code,
        receipt_number,
        orjson.dumps(drawn_json(drawn)).decode(),
        orjson.dumps(balances(member)).decode(),
        row["claim_id"],
        member.available,
        member.redeemed,
    )
    if took_stock and not written["took_a_unit"]:
        return None  # the last unit went to a concurrent redemption: rolled back
    entry = WrittenEntry(
        id=written["entry_id"],
        member_id=member_id,
        kind=EntryKind.REDEMPTION,
        status=EntryStatus.POSTED,
        points=-cost,
        description=description[:500],
        reference=reward_reference(reward_id),
        created_at=now,
        available_at=None,
        expires_at=None,
        breakdown=breakdown,
    )
    redemption = IssuedRedemption(
        id=written["redemption_id"],
        member_id=member_id,
        reward_id=reward_id,
        points=cost,
        value=reward["value"],
        status=RedemptionStatus.ISSUED,
        code=code,
        receipt_number=receipt_number,
        created_at=now,
    )
    return RedeemedReward(redemption=redemption, entry=entry, member=member)


def _plainly_allowed(reward: Any, member: LockedMember, now: datetime) -> bool:
    """Every condition under which the general path grants the redemption, checked on what
    the statements read under the member's lock (the stock is guarded again when taken)."""
    starts_at, ends_at = reward["starts_at"], reward["ends_at"]
    limit, minimum_tier = reward["per_member_limit"], reward["minimum_tier_id"]
    return (
        reward["segment_id"] is None  # the general path decides who a targeted reward is for
        and (starts_at is None or now >= starts_at)
        and (ends_at is None or now < ends_at)
        and (minimum_tier is None or minimum_tier == member.tier_id)
        and (limit is None or reward["taken"] < limit)
        and 0 < reward["cost"] <= member.available
        and (reward["stock"] is None or reward["stock"] > 0)
    )
