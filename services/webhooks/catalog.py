"""The event catalog: which member event is which webhook event, for which audience, and the
body sent.

A body is `{"id", "type", "timestamp", "apiVersion", "data"}`: `id` the WebhookEvent's global
ID (also the `webhook-id` header), `type` the wire name (`points.earned`), `timestamp` when the
event happened, and `data` the objects as the GraphQL API shows them, under their SDL names.
What is stored is the body without its id (known only once the row is written); `body()` puts
it first. Two audiences: the program's endpoints get `data.member` ({id, externalId}, the whole
profile for member.*) and every object; a partner's endpoints get only redemptions of its own
brand's rewards, with the redemption (no voucher code) and the reward, and no member data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    EARNING_KINDS,
    ActivityType,
    Badge,
    Challenge,
    EntryKind,
    EventKind,
    LedgerEntry,
    Member,
    MemberEvent,
    Partner,
    Redemption,
    Reward,
    Tier,
    WebhookEvent,
    WebhookEventType,
)
from services.activity_types import BUILT_IN_KEY
from services.global_ids import encode_id

API_VERSION = "2026-12"
PROGRAM = "program"
PARTNER = "partner"

# Member events that are one webhook event each, whatever their data.
_SAME_NAME = {
    EventKind.TIER_CHANGED: WebhookEventType.TIER_CHANGED,
    EventKind.BADGE_AWARDED: WebhookEventType.BADGE_AWARDED,
    EventKind.CHALLENGE_COMPLETED: WebhookEventType.CHALLENGE_COMPLETED,
    EventKind.MEMBER_ENROLLED: WebhookEventType.MEMBER_ENROLLED,
    EventKind.MEMBER_UPDATED: WebhookEventType.MEMBER_UPDATED,
    EventKind.MEMBER_ERASED: WebhookEventType.MEMBER_ERASED,
    EventKind.POINTS_ACTIVATED: WebhookEventType.POINTS_ACTIVATED,
    EventKind.POINTS_EXPIRING: WebhookEventType.POINTS_EXPIRING,
    EventKind.REDEMPTION_USED: WebhookEventType.REDEMPTION_USED,
    EventKind.REDEMPTION_CANCELLED: WebhookEventType.REDEMPTION_CANCELLED,
    EventKind.REFERRAL_COMPLETED: WebhookEventType.REFERRAL_COMPLETED,
}
_REDEMPTION_TYPES = (
    WebhookEventType.REWARD_REDEEMED,
    WebhookEventType.REDEMPTION_USED,
    WebhookEventType.REDEMPTION_CANCELLED,
)


def event_id(pk: int) -> str:
    return encode_id("WebhookEvent", pk)


def full_payload(event: WebhookEvent) -> dict[str, Any]:
    """The body as an object: the stored payload with the event's id first."""
    return {"id": event_id(event.id), **event.payload}


def body(event: WebhookEvent) -> bytes:
    """The bytes sent (and signed): the same on every attempt and resend."""
    return orjson.dumps(full_payload(event))


def classify(event: MemberEvent, entry: LedgerEntry | None) -> WebhookEventType | None:
    """The webhook event a member event is, if any. A balance change is points.earned
    (earning, and positive adjustments), points.reversed (refunds, negative adjustments),
    points.expired or reward.redeemed by its entry's kind; points coming back from a
    cancelled redemption are part of redemption.cancelled. A redemption is reward.redeemed
    even at 0 points (a gift, such as the referral welcome's voucher): the merchant or the
    brand has something to hand over. Any other change of 0 points (withheld from a
    suspended member, nothing to recover) is none."""
    if event.kind is not EventKind.POINTS_UPDATED:
        return _SAME_NAME.get(event.kind)
    if entry is None:
        return None
    if entry.kind is EntryKind.REDEMPTION and entry.reverses_entry_id is None and entry.points <= 0:
        return WebhookEventType.REWARD_REDEEMED
    if entry.points == 0:
        return None
    if entry.kind in EARNING_KINDS or (entry.kind is EntryKind.ADJUSTMENT and entry.points > 0):
        return WebhookEventType.POINTS_EARNED
    if entry.kind in (EntryKind.REVERSAL, EntryKind.ADJUSTMENT):
        return WebhookEventType.POINTS_REVERSED
    if entry.kind is EntryKind.EXPIRATION:
        return WebhookEventType.POINTS_EXPIRED
    return None


@dataclass(frozen=True, slots=True)
class Planned:
    """A webhook event to write: one member event, for one audience."""

    member_event: MemberEvent
    type: WebhookEventType
    audience: str  # PROGRAM or PARTNER
    partner_id: int | None  # the reward's brand, for redemption events
    payload: dict[str, Any]


class Loaded:
    """What a batch of member events names, each kind of row read once (no N+1)."""

    def __init__(self) -> None:
        self.entries: dict[int, LedgerEntry] = {}
        self.members: dict[int, Member] = {}
        self.redemptions: dict[int, Redemption] = {}
        self.redemption_by_entry: dict[int, Redemption] = {}
        self.rewards: dict[int, Reward] = {}
        self.partners: dict[int, Partner] = {}
        self.tiers: dict[int, Tier] = {}
        self.live_thresholds: list[int] = []
        self.challenges: dict[int, Challenge] = {}
        self.badges: dict[int, Badge] = {}
        self.activity_types: dict[int | str, ActivityType] = {}  # by id, built-ins by key too

    @classmethod
    async def entries_of(
        cls, session: AsyncSession, events: Sequence[MemberEvent]
    ) -> dict[int, LedgerEntry]:
        ids = {e.entry_id for e in events if e.entry_id is not None}
        ids |= {e.data["entry"] for e in events if e.kind is EventKind.POINTS_ACTIVATED}
        return await _by_id(session, LedgerEntry, ids)

    async def load(
        self,
        session: AsyncSession,
        events: Sequence[MemberEvent],
        entries: dict[int, LedgerEntry],
    ) -> None:
        self.entries = entries
        self.members = await _by_id(session, Member, {e.member_id for e in events})
        redemption_ids = {
            e.data["redemption"]
            for e in events
            if e.kind in (EventKind.REDEMPTION_USED, EventKind.REDEMPTION_CANCELLED)
        }
        spent = [
            e.entry_id
            for e in events
            if e.entry_id is not None and entries[e.entry_id].kind is EntryKind.REDEMPTION
        ]
        if spent:
            for redemption in await session.scalars(
                select(Redemption).where(Redemption.entry_id.in_(spent))
            ):
                self.redemption_by_entry[redemption.entry_id] = redemption
        self.redemptions = await _by_id(session, Redemption, redemption_ids)
        self.redemptions.update({r.id: r for r in self.redemption_by_entry.values()})
        self.rewards = await _by_id(
            session, Reward, {r.reward_id for r in self.redemptions.values()}
        )
        self.partners = await _by_id(
            session, Partner, {r.partner_id for r in self.rewards.values() if r.partner_id}
        )
        if any(e.kind is EventKind.TIER_CHANGED for e in events):
            tiers = list(await session.scalars(select(Tier)))
            self.tiers = {t.id: t for t in tiers}
            self.live_thresholds = sorted(t.threshold for t in tiers if t.deleted_at is None)
        self.challenges = await _by_id(
            session,
            Challenge,
            {e.data["challenge"] for e in events if e.kind is EventKind.CHALLENGE_COMPLETED},
        )
        self.badges = await _by_id(
            session, Badge, {e.data["badge"] for e in events if e.kind is EventKind.BADGE_AWARDED}
        )
        paid = {e.activity_type_id for e in entries.values() if e.activity_type_id is not None}
        built_in = {BUILT_IN_KEY[e.kind] for e in entries.values() if e.kind in BUILT_IN_KEY}
        if paid or built_in:
            for row in await session.scalars(
                select(ActivityType).where(
                    or_(ActivityType.id.in_(paid), ActivityType.key.in_(built_in))
                )
            ):
                self.activity_types[row.id] = self.activity_types[row.key] = row

    def transaction(self, entry: LedgerEntry) -> dict[str, Any]:
        """The entry as the API shows it, with the activity type it paid (if any)."""
        named_by: int | str | None = entry.activity_type_id or BUILT_IN_KEY.get(entry.kind)
        found = self.activity_types.get(named_by) if named_by is not None else None
        return _transaction(entry, found)

    def redemption_of(self, event: MemberEvent) -> Redemption:
        if event.entry_id is not None:
            return self.redemption_by_entry[event.entry_id]
        return self.redemptions[event.data["redemption"]]

    def partner_of(self, event: MemberEvent, type_: WebhookEventType) -> int | None:
        """The brand whose endpoints hear of this event too (its own rewards' redemptions)."""
        if type_ not in _REDEMPTION_TYPES:
            return None
        return self.rewards[self.redemption_of(event).reward_id].partner_id


async def _by_id(session: AsyncSession, model: Any, ids: Iterable[int]) -> dict[int, Any]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {row.id: row for row in await session.scalars(select(model).where(model.id.in_(wanted)))}


def envelope(event: MemberEvent, type_: WebhookEventType, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": type_.wire_name,
        "timestamp": event.created_at.isoformat(),
        "apiVersion": API_VERSION,
        "data": data,
    }


def program_payload(event: MemberEvent, type_: WebhookEventType, loaded: Loaded) -> dict[str, Any]:
    member = loaded.members[event.member_id]
    data: dict[str, Any] = {"member": _member(member, full=type_.name.startswith("MEMBER_"))}
    if type_ is WebhookEventType.MEMBER_UPDATED:
        data["changed"] = list(event.data.get("fields", []))
    elif type_ in (
        WebhookEventType.POINTS_EARNED,
        WebhookEventType.POINTS_REVERSED,
        WebhookEventType.POINTS_EXPIRED,
    ):
        assert event.entry_id is not None
        data["transaction"] = loaded.transaction(loaded.entries[event.entry_id])
        data["balance"] = _balance(event.data)
    elif type_ is WebhookEventType.POINTS_ACTIVATED:
        data["transaction"] = loaded.transaction(loaded.entries[event.data["entry"]])
        data["balance"] = _balance(event.data["balance"])
    elif type_ is WebhookEventType.POINTS_EXPIRING:
        data["points"] = event.data["points"]
        data["expiresAt"] = event.data["expiresAt"]
    elif type_ is WebhookEventType.TIER_CHANGED:
        data["from"] = _tier(loaded.tiers[event.data["from"]], loaded.live_thresholds)
        data["to"] = _tier(loaded.tiers[event.data["to"]], loaded.live_thresholds)
    elif type_ in _REDEMPTION_TYPES:
        data.update(_redemption_objects(event, loaded, code=True))
        if type_ is WebhookEventType.REWARD_REDEEMED:
            assert event.entry_id is not None
            data["transaction"] = loaded.transaction(loaded.entries[event.entry_id])
            data["balance"] = _balance(event.data)
        elif type_ is WebhookEventType.REDEMPTION_CANCELLED:
            data["balance"] = _balance(event.data["balance"])
    elif type_ is WebhookEventType.CHALLENGE_COMPLETED:
        data["challenge"] = _challenge(loaded.challenges[event.data["challenge"]])
    elif type_ is WebhookEventType.BADGE_AWARDED:
        data["badge"] = _badge(loaded.badges[event.data["badge"]])
    elif type_ is WebhookEventType.REFERRAL_COMPLETED:
        data["referred"] = {"id": encode_id("Member", event.data["referred"])}
    return envelope(event, type_, data)


def partner_payload(event: MemberEvent, type_: WebhookEventType, loaded: Loaded) -> dict[str, Any]:
    """A brand's view: its reward and the redemption, nothing about the member."""
    return envelope(event, type_, _redemption_objects(event, loaded, code=False))


def plan(
    events: Sequence[MemberEvent],
    loaded: Loaded,
    wanted: set[WebhookEventType],
    partners_wanting: set[tuple[int, WebhookEventType]],
) -> list[Planned]:
    """The webhook events to write for `events`: for the program's audience when some program
    endpoint wants the type, for a brand's when one of its endpoints wants it."""
    planned: list[Planned] = []
    for event in events:
        entry = loaded.entries.get(event.entry_id) if event.entry_id is not None else None
        type_ = classify(event, entry)
        if type_ is None:
            continue
        if type_ in wanted:
            planned.append(
                Planned(event, type_, PROGRAM, None, program_payload(event, type_, loaded))
            )
        partner_id = loaded.partner_of(event, type_)
        if partner_id is not None and (partner_id, type_) in partners_wanting:
            planned.append(
                Planned(event, type_, PARTNER, partner_id, partner_payload(event, type_, loaded))
            )
    return planned


# ---------------------------------------------------------------- objects, as GraphQL shows them


def _at(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _money(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def _member(member: Member, *, full: bool) -> dict[str, Any]:
    found: dict[str, Any] = {
        "id": encode_id("Member", member.id),
        "externalId": member.external_id,
    }
    if full and member.erased_at is None:
        found |= {
            "email": member.email,
            "displayName": member.display_name,
            "birthday": _at(member.birthday),
            "joinedAt": _at(member.joined_at),
            "status": member.status.value,
            "attributes": dict(member.attributes or {}),
            "leaderboardOptOut": member.leaderboard_opt_out,
        }
    return found


def _transaction(entry: LedgerEntry, activity_type: ActivityType | None = None) -> dict[str, Any]:
    """`activityType` only on entries that paid one (ACTIVITY, REVIEW, SOCIAL_SHARE): other
    events' bodies stay as they were."""
    shown: dict[str, Any] = {
        "id": encode_id("PointsTransaction", entry.id),
        "kind": entry.kind.value,
        "status": entry.status.value,
        "points": entry.points,
        "description": entry.description,
        "reference": entry.reference,
        "createdAt": _at(entry.created_at),
        "availableAt": _at(entry.available_at),
        "expiresAt": _at(entry.expires_at),
        "breakdown": [{"label": c["label"], "points": c["points"]} for c in entry.breakdown],
    }
    if activity_type is not None:
        shown["activityType"] = {
            "id": encode_id("ActivityType", activity_type.id),
            "key": activity_type.key,
            "name": activity_type.name,
        }
    return shown


def _balance(data: dict[str, Any]) -> dict[str, int]:
    names = ("available", "pending", "lifetimeEarned", "redeemed", "expired")
    return {name: int(data[name]) for name in names}


def _tier(tier: Tier, live_thresholds: list[int]) -> dict[str, Any]:
    return {
        "id": encode_id("Tier", tier.id),
        "name": tier.name,
        "rank": sum(1 for threshold in live_thresholds if threshold < tier.threshold),
        "threshold": tier.threshold,
        "multiplier": float(tier.multiplier),
        "benefits": list(tier.benefits),
    }


def _redemption_objects(event: MemberEvent, loaded: Loaded, *, code: bool) -> dict[str, Any]:
    redemption = loaded.redemption_of(event)
    reward = loaded.rewards[redemption.reward_id]
    partner = loaded.partners.get(reward.partner_id) if reward.partner_id else None
    shown: dict[str, Any] = {
        "id": encode_id("Redemption", redemption.id),
        "status": redemption.status.value,
        "points": redemption.points,
        "value": _money(redemption.value),
        "receiptNumber": redemption.receipt_number,
        "createdAt": _at(redemption.created_at),
        "usedAt": _at(redemption.used_at),
        "cancelledAt": _at(redemption.cancelled_at),
    }
    if code:
        shown["code"] = redemption.code
    return {
        "redemption": shown,
        "reward": {
            "id": encode_id("Reward", reward.id),
            "name": reward.name,
            "kind": reward.kind.value,
            "cost": reward.cost,
            "value": _money(reward.value),
            "partner": (
                {"id": encode_id("Partner", partner.id), "name": partner.name, "slug": partner.slug}
                if partner is not None
                else None
            ),
        },
    }


def _challenge(challenge: Challenge) -> dict[str, Any]:
    return {
        "id": encode_id("Challenge", challenge.id),
        "name": challenge.name,
        "description": challenge.description,
        "metric": challenge.metric.value,
        "goal": challenge.goal,
        "rewardPoints": challenge.reward_points,
        "startsAt": _at(challenge.starts_at),
        "endsAt": _at(challenge.ends_at),
    }


def _badge(badge: Badge) -> dict[str, Any]:
    return {
        "id": encode_id("Badge", badge.id),
        "name": badge.name,
        "description": badge.description,
        "imageUrl": badge.image_url,
    }


# ---------------------------------------------------------------- erasure


async def erase_from_webhooks(
    session: AsyncSession, member_id: int, renamed: dict[int, LedgerEntry]
) -> None:
    """What stored webhook events hold of an erased member: its profile in its own events,
    and its name in other members' referral transactions (`renamed`: the entries whose
    description privacy.py just replaced)."""
    for event in await session.scalars(
        select(WebhookEvent).where(WebhookEvent.member_id == member_id)
    ):
        data = dict(event.payload["data"])
        if "member" in data:
            data["member"] = {"id": encode_id("Member", member_id), "externalId": None}
            event.payload = {**event.payload, "data": data}
    if not renamed:
        return
    ids = {encode_id("PointsTransaction", pk): entry for pk, entry in renamed.items()}
    owners = {entry.member_id for entry in renamed.values()}
    for event in await session.scalars(
        select(WebhookEvent).where(
            WebhookEvent.member_id.in_(owners),
            WebhookEvent.type == WebhookEventType.POINTS_EARNED,
        )
    ):
        transaction = event.payload["data"].get("transaction", {})
        entry = ids.get(transaction.get("id"))
        if entry is not None:
            data = dict(event.payload["data"])
            data["transaction"] = _transaction(entry)
            event.payload = {**event.payload, "data": data}
