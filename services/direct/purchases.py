"""recordPurchase's common case on PostgreSQL, in two statements.

When nothing is due for the member (no pending points to activate, no lots to expire, no
referral to pay), there are no goals to count for (no challenge running, no badge awarded at
a threshold), the program has no rolling tier window, and the cached catalog is the
database's, a purchase is:

1. claim the order id, then lock and read the member and the catalog's version;
2. write the entry, the purchase, the POINTS_UPDATED (and TIER_CHANGED) events and the
   balances, as data-modifying CTEs of one statement.

The points, breakdown, balances and tier come from the general path's functions. A retry of a
recorded order, and every case above, is left to the general path (`record_purchase` returns
None, having written nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from models import EntryKind, EventKind
from services.catalog import Catalog
from services.direct.writer import MEMBER_COLUMNS, DirectWriter, LockedMember, WrittenEntry
from services.events import balances
from services.ledger.earning import quote_purchase
from services.ledger.entries import apply_posting, check_posting, credit_terms, opens_lot
from services.ledger.idempotency import fingerprint
from services.ledger.purchases import PurchaseInput
from services.program import tier_for


@dataclass(frozen=True, slots=True)
class RecordedPurchase:
    entry: WrittenEntry
    member: LockedMember


# The claim is inserted first (a concurrent first use of the order id is waited for on its
# unique index, as in the general path), then the member row is locked: the same lock order.
# The member's columns are its latest version (a locking read); the catalog's version is read
# as of the statement's start, which may be just before a concurrent catalog change: the
# purchase then earns at the rates it started under.
# (The only text formatted in is LockedMember's field names.)
_CLAIM_AND_LOCK = f"""
WITH claim AS (
    INSERT INTO idempotency_records (scope, key, fingerprint, created_at)
    VALUES ('purchase', $1, $2, $3)
    ON CONFLICT (scope, key) DO NOTHING
    RETURNING id
)
SELECT (SELECT id FROM claim) AS claim_id,
       (SELECT catalog_version FROM program) AS catalog_version,
       {MEMBER_COLUMNS}
FROM members AS m
WHERE m.id = $4
FOR UPDATE OF m
"""  # noqa: S608

# Sub-statements of one statement run in no set order; the events' ids follow their ORDER BY.
_WRITE = """
WITH entry AS (
    INSERT INTO ledger_entries (member_id, kind, status, points, remaining, description,
                                reference, created_at, available_at, expires_at, breakdown, actor)
    VALUES ($1, 'PURCHASE', $2, $3, $4, $5, $6, $7, $8, $9, $10::json, $11)
    RETURNING id
), purchase AS (
    INSERT INTO purchases (order_id, member_id, amount, occurred_at, entry_id, points_earned,
                           refunded_amount, points_reversed)
    SELECT $6, $1, $12, $13, entry.id, $3, 0, 0 FROM entry
), events AS (
    INSERT INTO member_events (member_id, kind, entry_id, data, created_at)
    SELECT $1, event.kind, CASE WHEN event.kind = 'POINTS_UPDATED' THEN entry.id END,
           event.data::json, $7
    FROM entry, unnest($14::text[], $15::text[]) WITH ORDINALITY AS event(kind, data, position)
    ORDER BY event.position
), cached AS (
    UPDATE members
    SET available = $16, pending = $17, lifetime_earned = $18, qualifying_points = $19,
        earned_points = $20, tier_id = $21, next_settlement_at = $22
    WHERE id = $1
)
SELECT id FROM entry
"""


async def member_with_external_id(writer: DirectWriter, external_id: str) -> int | None:
    """The id of the member the merchant knows by `external_id` (its claim's fingerprint names
    the member by id), or None."""
    found: int | None = await writer.read_value(
        "SELECT id FROM members WHERE external_id = $1", external_id
    )
    return found


async def record_purchase(
    writer: DirectWriter, purchase: PurchaseInput, *, now: datetime, actor: str, catalog: Catalog
) -> RecordedPurchase | None:
    """Record `purchase`, or return None having written nothing: use the general path.
    Raises DomainError (nothing written) where the general path would refuse the same."""
    occurred = purchase.occurred(now)
    if not catalog.covers(occurred) or catalog.gamified_at(now):
        return None
    if catalog.program.tier_window_days is not None:
        return None

    async def work(driver: Any) -> RecordedPurchase | None:
        return await _write(driver, purchase, occurred, now, actor, catalog)

    return await writer.transaction(work)


async def _write(
    driver: Any,
    purchase: PurchaseInput,
    occurred: datetime,
    now: datetime,
    actor: str,
    catalog: Catalog,
) -> RecordedPurchase | None:
    order_id = purchase.order_id
    digest = fingerprint(purchase.fingerprinted())
    row = await driver.fetchrow(_CLAIM_AND_LOCK, order_id, digest, now, purchase.member_id)
    if row is None or row["claim_id"] is None or row["catalog_version"] != catalog.version:
        return None  # no such member, a retry, or a catalog changed since it was cached
    member = LockedMember.from_record(row)
    unpaid_referral = member.referred_by_id is not None and not member.referral_rewarded
    if member.settlement_due(now) or unpaid_referral or not catalog.has_tier(member.tier_id):
        return None

    program = catalog.program
    tier = catalog.tier(member.tier_id)
    quote = quote_purchase(purchase.amount, program, tier, catalog.active_promotions(occurred))
    points = quote.points
    status, available_at, expires_at = credit_terms(
        program, occurred + timedelta(days=program.pending_days), now
    )
    check_posting(member, points)
    is_lot = opens_lot(EntryKind.PURCHASE, status, points)
    apply_posting(
        member,
        kind=EntryKind.PURCHASE,
        status=status,
        points=points,
        available_at=available_at,
        expires_at=expires_at if is_lot else None,
    )
    events = [(EventKind.POINTS_UPDATED.value, orjson.dumps(balances(member)).decode())]
    new_tier = tier_for(member.qualifying_points, catalog.tiers)
    if new_tier.id != member.tier_id:
        change = {"from": member.tier_id, "to": new_tier.id}
        events.append((EventKind.TIER_CHANGED.value, orjson.dumps(change).decode()))
        member.tier_id = new_tier.id

    description = purchase.description(program)[:500]
    breakdown = quote.breakdown()
    entry_id = await driver.fetchval(
        _WRITE,
        member.id,
        status.value,
        points,
        points if is_lot else 0,
        description,
        order_id,
        now,
        available_at,
        expires_at,
        orjson.dumps(breakdown).decode(),
        actor,
        purchase.amount,
        occurred,
        [kind for kind, _ in events],
        [data for _, data in events],
        member.available,
        member.pending,
        member.lifetime_earned,
        member.qualifying_points,
        member.earned_points,
        member.tier_id,
        member.next_settlement_at,
    )
    entry = WrittenEntry(
        id=entry_id,
        member_id=member.id,
        kind=EntryKind.PURCHASE,
        status=status,
        points=points,
        description=description,
        reference=order_id,
        created_at=now,
        available_at=available_at,
        expires_at=expires_at,
        breakdown=breakdown,
    )
    return RecordedPurchase(entry=entry, member=member)
