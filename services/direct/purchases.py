"""recordPurchase's common case on PostgreSQL: one read, then one write, no transaction.

When nothing is due for the member (no pending points to activate, no lots to expire, no
referral to pay), there are no goals to count for (no challenge running, no badge awarded at
a threshold), the program has no rolling tier window, and the cached catalog is the
database's, a purchase is:

1. read the member (and the catalog's version), unlocked; while a segment-targeted promotion
   or earning rule is active, the same read decides the member's membership of those
   segments (services.targeting);
2. work out the entry, the balances, the tier and the events with the general path's own
   functions, from what was read;
3. write it all in one statement (autocommit, so one round trip and no BEGIN/COMMIT):
   claim the order id, lock the member *if its row is still the version read* (and the
   catalog still the one cached), then the entry, the purchase, the POINTS_UPDATED (and
   TIER_CHANGED) events and the balances, as data-modifying CTEs.

The claim comes first, as in the general path: a concurrent first use of the order id is
waited for on its unique index, and the locks are taken in the general path's order. If the
member changed between the read and the write, the statement declines itself
(`laurel_decline`, migration 0010: the error rolls back the claim with everything else) and
the purchase is read and worked out again, a few times at most: a member that busy is left to
the general path, which queues on its lock. A retry of a recorded order, and every case
above, is left to the general path too (`record_purchase` returns None, having written
nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from models import EarningRule, EntryKind, EventKind
from services.catalog import Catalog
from services.direct.writer import MEMBER_COLUMNS, DirectWriter, LockedMember, WrittenEntry
from services.events import balances
from services.ledger.entries import apply_posting, check_posting, credit_terms, opens_lot
from services.ledger.idempotency import fingerprint
from services.ledger.purchases import PurchaseInput, program_amount, recorded_lines
from services.program import tier_for
from services.targeting import admitted, applicable_promotions, segment_ids


@dataclass(frozen=True, slots=True)
class RecordedPurchase:
    entry: WrittenEntry
    member: LockedMember


# The member as the purchase is worked out from, and the version of its row (`xmin` changes
# with every update of the row, and only then).
_READ = f"""
SELECT {MEMBER_COLUMNS},
       m.xmin AS version,
       (SELECT catalog_version FROM program) AS catalog_version
FROM members AS m
WHERE m.id = $1
"""  # noqa: S608  (the only text formatted in is LockedMember's field names)

# Sub-statements of one statement run in no set order but their data's: the member is locked
# only once the order id is claimed, everything else only once the member is locked. A retry
# (claimed already) writes nothing and locks nothing; a member changed since it was read
# writes nothing and the final SELECT declines, rolling back the claim. The events' ids
# follow their ORDER BY.
_WRITE = """
WITH claim AS (
    INSERT INTO idempotency_records (scope, key, fingerprint, created_at)
    VALUES ('purchase', $6, $23, $7)
    ON CONFLICT (scope, key) DO NOTHING
    RETURNING id
), locked AS (
    SELECT m.id
    FROM claim, members AS m
    WHERE m.id = $1 AND m.xmin = $24 AND (SELECT catalog_version FROM program) = $25
    FOR UPDATE OF m
), entry AS (
    INSERT INTO ledger_entries (member_id, kind, status, points, remaining, description,
                                reference, created_at, available_at, expires_at, breakdown, actor)
    SELECT $1, 'PURCHASE', $2, $3, $4, $5, $6, $7, $8, $9, $10::json, $11 FROM locked
    RETURNING id
), purchase AS (
    INSERT INTO purchases (order_id, member_id, amount, occurred_at, entry_id, points_earned,
                           refunded_amount, points_reversed, currency, currency_rate, lines)
    SELECT $6, $1, $12, $13, entry.id, $3, 0, 0, $26, $27, $28::json FROM entry
), events AS (
    INSERT INTO member_events (member_id, kind, entry_id, data, created_at)
    SELECT $1, event.kind, CASE WHEN event.kind = 'POINTS_UPDATED' THEN entry.id END,
           event.data::json, $7
    FROM entry, unnest($14::text[], $15::text[]) WITH ORDINALITY AS event(kind, data, position)
    ORDER BY event.position
), cached AS (
    UPDATE members
    SET available = $16, pending = $17, lifetime_earned = $18, qualifying_points = $19,
        earned_points = $20, month_key = $29, month_points = $30, week_key = $31,
        week_points = $32, tier_id = $21, next_settlement_at = $22,
        last_purchase_at = GREATEST(members.last_purchase_at, $13)
    FROM locked
    WHERE members.id = locked.id
)
SELECT (SELECT id FROM entry) AS entry_id,
       CASE WHEN EXISTS (SELECT FROM claim) AND NOT EXISTS (SELECT FROM locked)
            THEN laurel_decline('the member changed since it was read')
       END AS declined
"""

# SQLSTATE of `laurel_decline` (migration 0010).
DECLINED = "LD001"
# Reads and writes of one purchase before leaving a busy member to the general path.
ATTEMPTS = 3


async def _read(
    driver: Any, catalog: Catalog, member_id: int, ids: frozenset[int], now: datetime
) -> tuple[Any, frozenset[int]]:
    """The member row and, when segment-targeted promotions run (`ids`), the member's segments
    among them, in one statement (one snapshot): exact as of the write, and before this
    purchase, since the write goes ahead only if that row (which the member's purchases,
    balance, tier and attribute changes update) and the catalog (whose version every rule
    change bumps) are still the versions read."""
    membership, order = catalog.membership.statement(ids)
    if membership is None:
        return await driver.fetchrow(_READ, member_id), frozenset()
    # The membership statement's $1 is the member's id too (MembershipQuery sees to it).
    row = await driver.fetchrow(
        f"SELECT r.*, s.* FROM ({_READ}) AS r, ({membership.sql}) AS s",  # noqa: S608
        *membership.arguments({"member_id": member_id, "now": now}),
    )
    if row is None:
        return None, frozenset()
    return row, frozenset(i for i in order if row[f"s{i}"])


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
    catalog.rate_of(purchase.terms.currency)  # an unknown currency: INVALID, nothing read
    rules = catalog.active_earning_rules(occurred)

    async def work(driver: Any) -> RecordedPurchase | None:
        digest = fingerprint(purchase.fingerprinted())
        for _ in range(ATTEMPTS):
            try:
                return await _attempt(
                    driver, purchase, digest, occurred, now, actor, catalog, rules
                )
            except asyncpg.PostgresError as error:
                if getattr(error, "sqlstate", None) != DECLINED:
                    raise
        return None

    return await writer.autocommit(work)


async def _attempt(
    driver: Any,
    purchase: PurchaseInput,
    digest: str,
    occurred: datetime,
    now: datetime,
    actor: str,
    catalog: Catalog,
    rules: Sequence[EarningRule],
) -> RecordedPurchase | None:
    active = catalog.active_promotions(occurred)
    targeted = segment_ids([*active, *rules])
    row, segments = await _read(driver, catalog, purchase.member_id, targeted, now)
    if row is None or row["catalog_version"] != catalog.version:
        return None  # no such member, or a catalog changed since it was cached
    member = LockedMember.from_record(row)
    unpaid_referral = member.referred_by_id is not None and not member.referral_rewarded
    if (
        member.settlement_due(now)
        or unpaid_referral
        or not member.earns_normally
        or not catalog.has_tier(member.tier_id)
        or catalog.is_retired(member.tier_id)
    ):
        return None

    program = catalog.program
    tier = catalog.tier(member.tier_id)
    terms = purchase.terms
    quote = terms.quote(
        catalog,
        tier=tier,
        promotions=applicable_promotions(active, member_id=member.id, segments=segments),
        rules=admitted(rules, segments),
        first_purchase=member.last_purchase_at is None,
    )
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
        now=now,
        available_at=available_at,
        expires_at=expires_at if is_lot else None,
    )
    events = [(EventKind.POINTS_UPDATED.value, orjson.dumps(balances(member)).decode())]
    new_tier = tier_for(
        member.qualifying_points, catalog.tiers, catalog.floor_of(member.tier_floor_id)
    )
    if new_tier.id != member.tier_id:
        change = {"from": member.tier_id, "to": new_tier.id}
        events.append((EventKind.TIER_CHANGED.value, orjson.dumps(change).decode()))
        member.tier_id = new_tier.id

    order_id = purchase.order_id
    description = purchase.description(program)[:500]
    breakdown = quote.breakdown()
    written = await driver.fetchrow(
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
        program_amount(terms, catalog),
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
        digest,
        row["version"],
        catalog.version,
        terms.currency,
        catalog.rate_of(terms.currency) if terms.currency else None,
        orjson.dumps(lines).decode() if (lines := recorded_lines(quote, points)) else None,
        member.month_key,
        member.month_points,
        member.week_key,
        member.week_points,
    )
    if written["entry_id"] is None:
        return None  # the order id is claimed already: a retry, or a conflict
    entry = WrittenEntry(
        id=written["entry_id"],
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
