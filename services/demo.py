"""The demo program behind `laurel demo`: a coffee roaster's rewards program with tiers,
promotions, a rewards catalog (with a partner bakery and a charity) and about 25 members with
months of history.

Everything is written through the real services (enrolment, purchases, refunds, activities,
adjustments), replayed in time order on a movable clock, so the ledger is exactly what the API
would have produced. The same random seed gives the same program, relative to the start time.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import EarningRuleKind, EntryKind, LedgerEntry, Member, MemberStatus
from services import (
    activity_types,
    audit,
    demo_rewards,
    earning_rules,
    member_profile,
    members,
    segments,
)
from services.catalog import load_catalog
from services.clock import Clock, ManualClock
from services.demo_gamification import create_gamification
from services.ledger.activity import record_activity
from services.ledger.adjustments import adjust_points
from services.ledger.purchases import record_purchase, refund_purchase
from services.program import create_promotion, create_tier, list_tiers, update_program

PROGRAM_NAME = "Laurel Coffee Rewards"
PROGRAM_SETTINGS: dict[str, object] = {
    "name": PROGRAM_NAME,
    "currency": "USD",
    "points_per_currency_unit": 1,
    "point_value": 0.01,
    "pending_days": 0,  # balances show at once in the demo
    "expiry_days": 365,
    "signup_bonus": 100,
    "referral_bonus": 250,
    "review_points": 50,
    "social_share_points": 20,
    "birthday_points": 200,
    "anniversary_points": 150,
    "tier_window_days": 365,
}
TIERS: list[tuple[str, int, float, list[str]]] = [
    (
        "Silver",
        500,
        1.25,
        [
            "1.25x points on every purchase",
            "A free drink on your birthday",
            "Early access to seasonal blends",
        ],
    ),
    (
        "Gold",
        2000,
        1.5,
        [
            "1.5x points on every purchase",
            "Free shipping on bean orders",
            "A free drink on your birthday",
            "Members-only cupping evenings",
        ],
    ),
    (
        "Platinum",
        5000,
        2.0,
        [
            "2x points on every purchase",
            "Free shipping on everything",
            "A roaster's-choice bag every quarter",
            "Priority seats at barista classes",
        ],
    ),
]
PEOPLE = [
    ("Maya", "Okafor"),
    ("Liam", "Schneider"),
    ("Sofia", "Marquez"),
    ("Noah", "Bennett"),
    ("Aiko", "Tanaka"),
    ("Ethan", "Walsh"),
    ("Priya", "Raman"),
    ("Lucas", "Moreau"),
    ("Zara", "Haddad"),
    ("Oliver", "Nguyen"),
    ("Chloe", "Lindqvist"),
    ("Mateo", "Rossi"),
    ("Amara", "Mensah"),
    ("Jonah", "Fischer"),
    ("Elena", "Petrova"),
    ("Samuel", "Adeyemi"),
    ("Hannah", "Kowalski"),
    ("Diego", "Castillo"),
    ("Freya", "MacLeod"),
    ("Kenji", "Watanabe"),
    ("Leila", "Farahani"),
    ("Owen", "Gallagher"),
    ("Nadia", "Kaur"),
    ("Tomas", "Novak"),
    ("Grace", "Whitfield"),
]
DOMAINS = ["example.com", "example.org", "example.net"]
PRODUCTS = [
    "ethiopia-yirgacheffe",
    "colombia-huila",
    "house-espresso-blend",
    "decaf-swiss-water",
    "kenya-nyeri-aa",
    "guatemala-antigua",
    "cold-brew-concentrate",
    "pour-over-kettle",
    "burr-grinder",
    "oat-milk-latte",
]
SHARE_CHANNELS = ["instagram", "facebook", "x", "pinterest"]
# An admin-defined activity: a monthly customer survey (services.activity_types).
SURVEY_KEY = "survey_completed"
HISTORY_DAYS = 300
SEED = 42

# (profile, weight, purchase count range)
PROFILES: list[tuple[str, int, tuple[int, int]]] = [
    ("casual", 9, (2, 5)),
    ("regular", 9, (6, 11)),
    ("enthusiast", 5, (10, 15)),
    ("office", 2, (6, 9)),
]

Action = Callable[[AsyncSession, datetime], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DemoSummary:
    program_name: str
    members: int
    purchases: int
    refunds: int
    activities: int
    adjustments: int
    redemptions: int
    donations: int
    featured_member_id: int  # the member to print a token for: rich history, a middle tier
    featured_member_name: str
    featured_member_email: str
    featured_member_tier: str


@dataclass(slots=True)
class _Event:
    at: datetime
    seq: int
    action: Action


@dataclass(slots=True)
class _Person:
    index: int
    name: str
    email: str
    external_id: str
    birthday: date
    joined_at: datetime
    profile: str
    referrer: int | None = None


class _Timeline:
    """The demo's history as events, replayed in time order (ties in creation order)."""

    def __init__(self) -> None:
        self.events: list[_Event] = []

    def add(self, at: datetime, action: Action) -> None:
        self.events.append(_Event(at, len(self.events), action))

    def ordered(self) -> list[_Event]:
        return sorted(self.events, key=lambda e: (e.at, e.seq))


def _amount(rng: random.Random, profile: str) -> float:
    roll = rng.random()
    if profile == "office":
        return round(rng.uniform(180, 520), 2)  # office catering and team subscriptions
    if profile == "enthusiast" and roll < 0.15:
        return round(rng.uniform(140, 690), 2)  # grinders, kettles, espresso machines
    if profile in ("regular", "enthusiast") and roll < 0.45:
        return round(rng.uniform(16, 62), 2)  # bags of beans, subscriptions
    return round(rng.uniform(3.5, 19), 2)  # a drink and a pastry


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A moment in [start, end), at whole seconds (`end` when the range is empty)."""
    if start >= end:
        return end
    return start + timedelta(seconds=int(rng.uniform(0, (end - start).total_seconds())))


def _people(rng: random.Random, now: datetime) -> list[_Person]:
    weights = [w for _, w, _ in PROFILES]
    names = [p for p, _, _ in PROFILES]
    joins = sorted(
        (now - timedelta(days=rng.uniform(20, HISTORY_DAYS))).replace(microsecond=0) for _ in PEOPLE
    )
    people: list[_Person] = []
    for index, ((first, last), joined_at) in enumerate(zip(PEOPLE, joins, strict=True)):
        # The earliest members are the keenest: they have had the most time to earn.
        profile = "enthusiast" if index in (0, 2) else rng.choices(names, weights)[0]
        referrer = rng.randrange(0, index) if index >= 3 and rng.random() < 0.3 else None
        people.append(
            _Person(
                index=index,
                name=f"{first} {last}",
                email=f"{first}.{last}@{DOMAINS[index % len(DOMAINS)]}".lower(),
                external_id=f"cust_{10400 + index * 37}",
                birthday=date(rng.randint(1962, 2004), rng.randint(1, 12), rng.randint(1, 28)),
                joined_at=joined_at,
                profile=profile,
                referrer=referrer,
            )
        )
    return people


async def load_demo(sessions: async_sessionmaker[AsyncSession], clock: Clock) -> DemoSummary:
    """Build the demo program on a migrated database with no members yet."""
    rng = random.Random(SEED)
    now = clock.now().astimezone(UTC).replace(microsecond=0)
    history = ManualClock(now)

    async with sessions.begin() as session:
        await update_program(session, PROGRAM_SETTINGS)
        existing = {t.name for t in await list_tiers(session)}
        for name, threshold, multiplier, benefits in TIERS:
            if name not in existing:
                await create_tier(
                    session,
                    name=name,
                    threshold=threshold,
                    multiplier=multiplier,
                    benefits=benefits,
                )
        weekend = (now - timedelta(days=1)).replace(hour=0, minute=0, second=0)
        await create_promotion(
            session,
            name="Double points weekend",
            multiplier=2.0,
            starts_at=weekend,
            ends_at=weekend + timedelta(days=3),
        )
        holiday = weekend + timedelta(days=14)
        await create_promotion(
            session,
            name="Holiday gift week: 1.5x points",
            multiplier=1.5,
            starts_at=holiday,
            ends_at=holiday + timedelta(days=7),
        )
        tier_ids = {t.name: t.id for t in await list_tiers(session)}
        catalog = await demo_rewards.create_catalog(
            session, tiers=tier_ids, now=now - timedelta(days=HISTORY_DAYS + 1)
        )
        await create_gamification(session, now=now, since=now - timedelta(days=HISTORY_DAYS + 1))
        await activity_types.create_activity_type(
            session,
            key=SURVEY_KEY,
            name="Customer survey",
            points=50,
            caps={"per_month": 1},
            segment_id=None,
            tier_multiplier_applies=False,
            now=now - timedelta(days=HISTORY_DAYS + 1),
        )

    # One catalog snapshot for the whole replay (every write still checks its version, and
    # reloads if something changed it): loading it per write was a third of the demo's time.
    async with sessions() as session:
        snapshot = await load_catalog(session, now - timedelta(days=HISTORY_DAYS + 1))

    people = _people(rng, now)
    ids: dict[int, int] = {}
    codes: dict[int, str] = {}
    timeline = _Timeline()
    purchases: list[tuple[int, str, float, datetime]] = []  # person, order id, amount, when
    counts = {"purchases": 0, "refunds": 0, "activities": 0, "adjustments": 0}
    last_moment = now - timedelta(minutes=5)

    def enrol(person: _Person) -> Action:
        async def run(session: AsyncSession, at: datetime) -> None:
            member = await members.enroll(
                session,
                email=person.email,
                display_name=person.name,
                external_id=person.external_id,
                birthday=person.birthday,
                referral_code=codes[person.referrer] if person.referrer is not None else None,
                now=at,
            )
            ids[person.index] = member.id
            codes[person.index] = member.referral_code

        return run

    def purchase(person: _Person, order_id: str, amount: float) -> Action:
        async def run(session: AsyncSession, at: datetime) -> None:
            await record_purchase(
                session,
                member_id=ids[person.index],
                order_id=order_id,
                amount=amount,
                now=at,
                catalog=snapshot,
            )
            counts["purchases"] += 1

        return run

    def refund(order_id: str, refund_id: str, amount: float | None) -> Action:
        async def run(session: AsyncSession, at: datetime) -> None:
            await refund_purchase(
                session,
                order_id=order_id,
                refund_id=refund_id,
                amount=amount,
                now=at,
                catalog=snapshot,
            )
            counts["refunds"] += 1

        return run

    def activity(
        person: _Person, reference: str, kind: EntryKind | None = None, key: str | None = None
    ) -> Action:
        async def run(session: AsyncSession, at: datetime) -> None:
            await record_activity(
                session,
                member_id=ids[person.index],
                kind=kind,
                activity_type=key,
                reference=reference,
                now=at,
                catalog=snapshot,
            )
            counts["activities"] += 1

        return run

    def adjustment(person: _Person, points: int, reason: str, key: str) -> Action:
        async def run(session: AsyncSession, at: datetime) -> None:
            await adjust_points(
                session,
                member_id=ids[person.index],
                points=points,
                reason=reason,
                idempotency_key=key,
                actor="admin:demo",
                now=at,
            )
            counts["adjustments"] += 1

        return run

    order_number = 20_000
    for person in people:
        timeline.add(person.joined_at, enrol(person))
        low, high = next(r for p, _, r in PROFILES if p == person.profile)
        moments = sorted(
            _between(rng, person.joined_at + timedelta(hours=2), last_moment)
            for _ in range(rng.randint(low, high))
        )
        # Some members shop during the current double-points weekend.
        if person.index % 4 == 0:
            moments.append(_between(rng, max(weekend, person.joined_at), last_moment))
        for at in moments:
            order_number += rng.randint(3, 40)
            order_id = f"ORD-{order_number}"
            amount = _amount(rng, person.profile)
            timeline.add(at, purchase(person, order_id, amount))
            purchases.append((person.index, order_id, amount, at))
        if rng.random() < 0.45 and moments:
            for product in rng.sample(PRODUCTS, rng.randint(1, 3)):
                at = _between(rng, moments[0] + timedelta(hours=1), last_moment)
                timeline.add(at, activity(person, product, kind=EntryKind.REVIEW))
        if rng.random() < 0.3:
            for n in range(rng.randint(1, 2)):
                channel = rng.choice(SHARE_CHANNELS)
                at = _between(rng, person.joined_at + timedelta(hours=1), last_moment)
                timeline.add(
                    at, activity(person, f"{channel}-post-{n + 1}", kind=EntryKind.SOCIAL_SHARE)
                )
        # Every third member answers the survey a week after joining (no draw from `rng`:
        # the rest of the demo stays as it was).
        answered = person.joined_at + timedelta(days=7)
        if person.index % 3 == 0 and answered < last_moment:
            timeline.add(answered, activity(person, f"survey-{answered:%Y-%m}", key=SURVEY_KEY))

    # Members spend their points: the best reward they can afford, a voucher used at checkout
    # a few days later (now and then cancelled instead), and donations to the charity.
    def redeem(person: _Person, key: str) -> Action:
        async def run(session: AsyncSession, at: datetime) -> None:
            await demo_rewards.redeem_best(
                session, catalog, member_id=ids[person.index], key=key, at=at, rng=rng
            )

        return run

    def follow_up(key: str, cancel: bool) -> Action:
        async def run(session: AsyncSession, at: datetime) -> None:
            await demo_rewards.follow_up(session, catalog, key=key, cancel=cancel, at=at)

        return run

    def donate(person: _Person, key: str) -> Action:
        async def run(session: AsyncSession, at: datetime) -> None:
            await demo_rewards.donate(session, catalog, member_id=ids[person.index], key=key, at=at)

        return run

    for person in people:
        spend_from = person.joined_at + timedelta(days=14)
        for n in range(rng.randint(0, 3) if rng.random() < 0.7 else 0):
            key = f"demo-redeem-{person.index}-{n}"
            at = _between(rng, spend_from, last_moment - timedelta(days=6))
            timeline.add(at, redeem(person, key))
            delay = demo_rewards.follow_up_delay(rng)
            timeline.add(at + delay, follow_up(key, cancel=rng.random() < 0.08))
        if rng.random() < 0.3:
            timeline.add(
                _between(rng, spend_from, last_moment),
                donate(person, f"demo-donate-{person.index}"),
            )

    # A few returns: two full, two partial, within a week of the order.
    refundable = [p for p in purchases if p[2] >= 15 and p[3] < weekend - timedelta(days=8)]
    for n, (_, order_id, amount, at) in enumerate(rng.sample(refundable, 4)):
        partial = round(amount * 0.4, 2) if n % 2 else None
        when = at + timedelta(hours=rng.uniform(2, 24 * 7))
        timeline.add(when, refund(order_id, f"RF-{order_id[4:]}-{n + 1}", partial))

    # Customer service made good on a late subscription box.
    regular = next((p for p in people if p.profile == "regular"), people[1])
    timeline.add(
        regular.joined_at + timedelta(days=9),
        adjustment(regular, 150, "Goodwill: subscription box arrived late", "demo-goodwill-1"),
    )

    for event in timeline.ordered():
        history.set(event.at)
        async with sessions.begin() as session:
            await event.action(session, history.now())

    await _run_the_program(sessions, people, ids, history.now())

    async with sessions() as session:
        featured = await showcase_member(session)
        assert featured is not None, "the demo enrols members"
        tiers = {t.id: t.name for t in await list_tiers(session)}
    return DemoSummary(
        program_name=PROGRAM_NAME,
        members=len(ids),
        purchases=counts["purchases"],
        refunds=counts["refunds"],
        activities=counts["activities"],
        adjustments=counts["adjustments"],
        redemptions=catalog.counts["redemptions"],
        donations=catalog.counts["donations"],
        featured_member_id=featured.id,
        featured_member_name=featured.display_name,
        featured_member_email=featured.email,
        featured_member_tier=tiers[featured.tier_id],
    )


# What support staff did lately: the merchant's own data on some members, a suspension under
# review, a member who keeps off the leaderboards (each admin edit lands in the audit trail).
FAVOURITES = ["Ethiopia Yirgacheffe", "House espresso", "Colombia decaf", "Guatemala Huehue"]


async def _run_the_program(
    sessions: async_sessionmaker[AsyncSession],
    people: list[_Person],
    ids: dict[int, int],
    now: datetime,
) -> None:
    async with sessions.begin() as session:
        for person in people[: len(FAVOURITES)]:
            await member_profile.update_member(
                session,
                member_id=ids[person.index],
                changes={
                    "attributes": {
                        "favouriteRoast": FAVOURITES[person.index],
                        "store": "Leeds" if person.index % 2 else "York",
                        "newsletter": person.index % 3 != 0,
                    }
                },
                actor=audit.COMMAND_LINE,
                now=now,
            )
        lapsed = next((p for p in reversed(people) if p.profile == "casual"), people[-1])
        await member_profile.set_status(
            session,
            member_id=ids[lapsed.index],
            status=MemberStatus.SUSPENDED,
            reason="Chargebacks under review (demo)",
            actor=audit.COMMAND_LINE,
            now=now,
        )
        private = people[-2] if people[-2] is not lapsed else people[-3]
        await member_profile.update_me(
            session,
            member_id=ids[private.index],
            changes={"leaderboard_opt_out": True},
            now=now,
        )
        await _target(session, now)


# Targeting (README "Targeting members"): who the coffee lovers are, what they get, and an
# experiment that will tell whether it paid for itself. Added once the history is written, so
# the replayed ledger is the same as without it.
COFFEE_LOVERS = "Coffee lovers"
COFFEE_LOVERS_RULE = {
    "any": [
        {"purchaseCount": {"lastDays": 30, "min": 3}},
        {"attribute": {"key": "favouriteRoast", "equals": "House espresso"}},
    ]
}
COFFEE_PROMOTION = "Coffee lovers week: 1.5x points"


async def _target(session: AsyncSession, now: datetime) -> None:
    segment = await segments.create_segment(
        session, name=COFFEE_LOVERS, rule=COFFEE_LOVERS_RULE, now=now
    )
    await create_promotion(
        session,
        name=COFFEE_PROMOTION,
        multiplier=1.5,
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=7),
        segment_id=segment.id,
        control_share=0.2,  # a fifth of the coffee lovers are held out: promotionResults
    )
    await earning_rules.create_rule(
        session,
        name="Beans earn double",
        kind=EarningRuleKind.CATEGORY_MULTIPLIER,
        values={"match": {"category": "beans"}, "multiplier": 2},
        segment_id=None,
        starts_at=None,
        ends_at=None,
        now=now,
    )
    await earning_rules.create_rule(
        session,
        name="No points on gift cards",
        kind=EarningRuleKind.EXCLUDE,
        values={"match": {"giftCard": True}},
        segment_id=None,
        starts_at=None,
        ends_at=None,
        now=now,
    )


async def showcase_member(session: AsyncSession) -> Member | None:
    """The member worth showing off: the richest history among members of a middle tier
    (neither the entry tier nor the top one), else the richest history of all."""
    tiers = await list_tiers(session)
    middle = {t.id for t in tiers[1:-1]} if len(tiers) > 2 else {t.id for t in tiers[1:]}
    entries = (
        select(LedgerEntry.member_id, func.count().label("entries"))
        .group_by(LedgerEntry.member_id)
        .subquery()
    )
    rows = (
        await session.execute(
            select(Member, func.coalesce(entries.c.entries, 0))
            .outerjoin(entries, entries.c.member_id == Member.id)
            .where(Member.status == MemberStatus.ACTIVE, Member.erased_at.is_(None))
            .order_by(Member.id)
        )
    ).all()
    if not rows:
        return None
    best: Member = max(rows, key=lambda row: (row[0].tier_id in middle, row[1], -row[0].id))[0]
    return best
