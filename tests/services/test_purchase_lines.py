"""Purchase lines, earning rules and currencies: each line floored on its own, the rules as
the contract states them, and line refunds reversing exactly what the lines earned."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import EarningRuleKind, EntryKind, LedgerEntry, Purchase
from models.engine import session_factory
from services import currencies, earning_rules
from services.catalog import load_catalog
from services.clock import ManualClock
from services.direct.purchases import record_purchase as record_directly
from services.errors import IdempotencyConflict, Invalid, NotFound
from services.ledger.earning import LineRequest
from services.ledger.purchases import (
    LedgerResult,
    LineRefund,
    PurchaseInput,
    record_purchase,
    refund_purchase,
)
from services.segments import create_segment
from tests.services.helpers import (
    assert_balances_match_ledger,
    cached_balances,
    configure,
    fund,
    listened_writer,
    member_row,
    new_member,
)

Sessions = async_sessionmaker[AsyncSession]


async def rule(
    sessions: Sessions, clock: ManualClock, name: str, kind: EarningRuleKind, **values: Any
) -> int:
    segment_id = values.pop("segment_id", None)
    async with sessions.begin() as session:
        row = await earning_rules.create_rule(
            session,
            name=name,
            kind=kind,
            values=values,
            segment_id=segment_id,
            starts_at=None,
            ends_at=None,
            now=clock.now(),
        )
    return row.id


async def buy(
    sessions: Sessions,
    clock: ManualClock,
    member_id: int,
    order_id: str,
    amount: float,
    lines: list[LineRequest] | None = None,
    currency: str | None = None,
) -> LedgerResult:
    async with sessions.begin() as session:
        return await record_purchase(
            session,
            member_id=member_id,
            order_id=order_id,
            amount=amount,
            now=clock.now(),
            lines=lines,
            currency=currency,
        )


async def refund(
    sessions: Sessions, clock: ManualClock, order_id: str, refund_id: str, *lines: LineRefund
) -> LedgerResult:
    async with sessions.begin() as session:
        return await refund_purchase(
            session,
            order_id=order_id,
            refund_id=refund_id,
            amount=None,
            now=clock.now(),
            lines=list(lines),
        )


async def counts(sessions: Sessions) -> tuple[int, int]:
    async with sessions() as session:
        entries = await session.scalar(select(func.count()).select_from(LedgerEntry))
        purchases = await session.scalar(select(func.count()).select_from(Purchase))
    return int(entries or 0), int(purchases or 0)


async def every_kind(sessions: Sessions, clock: ManualClock) -> None:
    """One rule of each kind (two coffee multipliers: only the highest pays)."""
    coffee = {"category": "coffee"}
    await rule(
        sessions,
        clock,
        "Coffee triple",
        EarningRuleKind.CATEGORY_MULTIPLIER,
        match=coffee,
        multiplier=3,
    )
    await rule(
        sessions,
        clock,
        "Coffee double",
        EarningRuleKind.CATEGORY_MULTIPLIER,
        match=coffee,
        multiplier=2,
    )
    await rule(
        sessions,
        clock,
        "Mug bonus",
        EarningRuleKind.SKU_POINTS_PER_UNIT,
        match={"sku": "MUG-1"},
        points=5,
    )
    await rule(sessions, clock, "No gift cards", EarningRuleKind.EXCLUDE, match={"giftCard": True})
    await rule(sessions, clock, "No shipping", EarningRuleKind.EXCLUDE, match={"shipping": True})
    await rule(
        sessions, clock, "No discounted", EarningRuleKind.EXCLUDE, match={"discounted": True}
    )
    await rule(sessions, clock, "No tax", EarningRuleKind.EXCLUDE, match={"tax": True})
    await rule(sessions, clock, "Welcome", EarningRuleKind.FIRST_PURCHASE_BONUS, points=50)
    await rule(
        sessions,
        clock,
        "Big basket",
        EarningRuleKind.MINIMUM_ORDER_BONUS,
        points=10,
        minimumAmount=15,
    )


BASKET = [
    # 10.99 with 0.99 tax: earns on 10.00 x 2 = 20, x3 (not x2, not x6) = 60
    LineRequest(sku="BEANS", category="coffee", quantity=2, amount=10.99, tax=0.99),
    # 7.55 x 2 = 15.1 -> 15, plus 5 a unit x 2 = 10
    LineRequest(sku="MUG-1", category="kitchen", quantity=2, amount=7.55),
    LineRequest(sku="GIFT", amount=25, is_gift_card=True),
    LineRequest(sku="SHIP", amount=4.99, is_shipping=True),
    LineRequest(sku="SALE", amount=3, is_discounted=True),
    # 1.45 x 2 = 2.9 -> 2 (one floor for the order would give 15.1 + 2.9 = 18, one more)
    LineRequest(line_id="tea-1", sku="TEA", category="tea", amount=1.45),
]
BASKET_AMOUNT = 52.98  # the lines' sum
# Earning amount after exclusions 10.00 + 7.55 + 1.45 = 19.00 >= 15: the order bonus pays.
BASKET_POINTS = 60 + 15 + 10 + 2 + 50 + 10


async def test_each_rule_kind_pays_by_hand_computed_points_each_line_floored_on_its_own(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, points_per_currency_unit=2)
    await every_kind(sessions, clock)
    member = await new_member(sessions, clock)

    first = await buy(sessions, clock, member, "o-1", BASKET_AMOUNT, BASKET)

    assert first.entry.points == BASKET_POINTS
    assert first.entry.breakdown == [
        {"label": "2 points per 1.00 USD spent", "points": 20 + 15 + 2},
        {"label": "No tax: tax not earning", "points": 0},
        {"label": "Coffee triple x3", "points": 40},
        {"label": "Mug bonus: 5 per unit", "points": 10},
        {"label": "No gift cards: not earning", "points": 0},
        {"label": "No shipping: not earning", "points": 0},
        {"label": "No discounted: not earning", "points": 0},
        {"label": "Welcome", "points": 50},
        {"label": "Big basket", "points": 10},
    ]
    async with sessions() as session:
        row = await session.scalar(select(Purchase).where(Purchase.order_id == "o-1"))
    assert row is not None and row.lines is not None
    assert [(line["id"], line["quantity"], line["points"]) for line in row.lines["lines"]] == [
        ("BEANS", 2, 60),
        ("MUG-1", 2, 25),
        ("GIFT", 1, 0),
        ("SHIP", 1, 0),
        ("SALE", 1, 0),
        ("tea-1", 1, 2),
    ]
    assert row.lines["bonus"] == 60 and row.amount == Decimal("52.98")

    # Not the first purchase any more: no welcome bonus.
    second = await buy(sessions, clock, member, "o-2", BASKET_AMOUNT, BASKET)
    assert second.entry.points == BASKET_POINTS - 50
    await assert_balances_match_ledger(sessions, member)


async def test_without_lines_the_order_is_one_line_and_bonuses_still_pay(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await rule(sessions, clock, "Welcome", EarningRuleKind.FIRST_PURCHASE_BONUS, points=50)
    await rule(
        sessions,
        clock,
        "Coffee triple",
        EarningRuleKind.CATEGORY_MULTIPLIER,
        match={"category": "coffee"},
        multiplier=3,
    )
    await rule(
        sessions,
        clock,
        "Big basket",
        EarningRuleKind.MINIMUM_ORDER_BONUS,
        points=10,
        minimumAmount=100,
    )
    member = await new_member(sessions, clock)
    result = await buy(sessions, clock, member, "o-1", 33.33)
    assert result.entry.points == 33 + 50
    assert result.entry.breakdown == [
        {"label": "1 point per 1.00 USD spent", "points": 33},
        {"label": "Welcome", "points": 50},
    ]


async def test_two_first_rates_for_a_currency_at_once_both_succeed(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    first_in = asyncio.Event()

    async def set_rate(rate: float, hold: bool) -> Decimal | None:
        async with sessions.begin() as session:
            _, previous = await currencies.set_rate(
                session, currency="EUR", rate=rate, now=clock.now()
            )
            if hold:  # keep the transaction open while the other one starts
                first_in.set()
                await asyncio.sleep(0.3)
        return previous

    async def second() -> Decimal | None:
        await first_in.wait()
        return await set_rate(1.2, hold=False)

    previous = await asyncio.gather(set_rate(1.1, hold=True), second())

    assert list(previous) == [None, Decimal("1.1")]  # the second waited and saw the first's rate
    async with sessions() as session:
        assert [r.rate for r in await currencies.list_rates(session)] == [Decimal("1.2")]


async def test_a_purchase_in_another_currency_counts_at_its_rate(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    async with sessions.begin() as session:
        await currencies.set_rate(session, currency="EUR", rate=1.1, now=clock.now())
    member = await new_member(sessions, clock)

    result = await buy(sessions, clock, member, "o-1", 100, currency="EUR")
    assert result.entry.points == 110
    assert result.entry.breakdown == [
        {"label": "1 point per 1.00 USD spent (EUR at 1.1)", "points": 110}
    ]
    assert result.entry.description == "Purchase o-1: 100.00 EUR"
    async with sessions() as session:
        row = await session.scalar(select(Purchase).where(Purchase.order_id == "o-1"))
    assert row is not None
    assert (row.amount, row.currency, row.currency_rate) == (
        Decimal("110.00"),
        "EUR",
        Decimal("1.1"),
    )
    # The program's own currency is 1.
    same = await buy(sessions, clock, member, "o-2", 10, currency="USD")
    assert same.entry.points == 10


async def test_an_unknown_or_malformed_currency_is_invalid_and_nothing_written(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    member = await new_member(sessions, clock)
    before = await counts(sessions)
    for currency in ("GBP", "eur", "EURO"):
        with pytest.raises(Invalid) as refused:
            await buy(sessions, clock, member, "o-1", 10, currency=currency)
        assert refused.value.field == ["input", "currency"]
    assert await counts(sessions) == before
    async with sessions.begin() as session:
        with pytest.raises(Invalid) as own:
            await currencies.set_rate(session, currency="USD", rate=1.2, now=clock.now())
        assert own.value.field == ["input", "currency"]
        with pytest.raises(Invalid) as zero:
            await currencies.set_rate(session, currency="EUR", rate=0, now=clock.now())
        assert zero.value.field == ["input", "rate"]


async def test_an_amount_that_is_not_the_lines_sum_is_invalid(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    member = await new_member(sessions, clock)
    lines = [LineRequest(sku="A", amount=10), LineRequest(sku="B", amount=5.01)]
    with pytest.raises(Invalid) as refused:
        await buy(sessions, clock, member, "o-1", 15, lines)
    assert refused.value.field == ["input", "amount"]
    with pytest.raises(Invalid) as twice:
        await buy(sessions, clock, member, "o-1", 20, [LineRequest(sku="A", amount=10)] * 2)
    assert twice.value.field == ["input", "lines", "1", "lineId"]
    with pytest.raises(Invalid) as taxed:
        await buy(sessions, clock, member, "o-1", 1, [LineRequest(sku="A", amount=1, tax=2)])
    assert taxed.value.field == ["input", "lines", "0", "tax"]
    assert await counts(sessions) == (0, 0)


async def test_rules_are_checked_per_kind_with_field_paths(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    cases: list[tuple[EarningRuleKind, dict[str, Any], list[str]]] = [
        (
            EarningRuleKind.CATEGORY_MULTIPLIER,
            {"match": {"category": "x"}},
            ["input", "multiplier"],
        ),
        (EarningRuleKind.CATEGORY_MULTIPLIER, {"multiplier": 2}, ["input", "match"]),
        (EarningRuleKind.CATEGORY_MULTIPLIER, {"match": {}, "multiplier": 2}, ["input", "match"]),
        (
            EarningRuleKind.CATEGORY_MULTIPLIER,
            {"match": {"sku": "x"}, "multiplier": -1},
            ["input", "multiplier"],
        ),
        (
            EarningRuleKind.SKU_POINTS_PER_UNIT,
            {"match": {"sku": "x"}, "points": 0},
            ["input", "points"],
        ),
        (EarningRuleKind.EXCLUDE, {"match": {"sku": "x"}, "points": 5}, ["input", "points"]),
        (
            EarningRuleKind.FIRST_PURCHASE_BONUS,
            {"points": 5, "match": {"sku": "x"}},
            ["input", "match"],
        ),
        (EarningRuleKind.MINIMUM_ORDER_BONUS, {"points": 5}, ["input", "minimumAmount"]),
        (
            EarningRuleKind.SKU_POINTS_PER_UNIT,
            {"match": {"tax": True}, "points": 5},
            ["input", "match", "tax"],
        ),
    ]
    for kind, values, field in cases:
        async with sessions.begin() as session:
            with pytest.raises(Invalid) as refused:
                await earning_rules.create_rule(
                    session,
                    name="r",
                    kind=kind,
                    values=values,
                    segment_id=None,
                    starts_at=None,
                    ends_at=None,
                    now=clock.now(),
                )
        assert refused.value.field == field, (kind, values)
    async with sessions.begin() as session:
        with pytest.raises(NotFound) as missing:
            await earning_rules.create_rule(
                session,
                name="r",
                kind=EarningRuleKind.FIRST_PURCHASE_BONUS,
                values={"points": 5},
                segment_id=999,
                starts_at=None,
                ends_at=None,
                now=clock.now(),
            )
    assert missing.value.field == ["input", "segmentId"]


async def test_an_ended_rule_and_a_segment_rule_pay_only_where_they_apply(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    async with sessions.begin() as session:
        vip = await create_segment(
            session,
            name="VIP",
            rule={"all": [{"availablePoints": {"min": 100}}]},
            now=clock.now(),
        )
        segment_id = vip.id
    await rule(
        sessions,
        clock,
        "VIP bonus",
        EarningRuleKind.MINIMUM_ORDER_BONUS,
        points=7,
        minimumAmount=1,
        segment_id=segment_id,
    )
    ended = await rule(
        sessions, clock, "Old", EarningRuleKind.MINIMUM_ORDER_BONUS, points=3, minimumAmount=1
    )
    async with sessions.begin() as session:
        await earning_rules.end_rule(
            session, await earning_rules.locked_rule(session, ended), clock.now()
        )
    member = await new_member(sessions, clock)
    outside = await buy(sessions, clock, member, "o-1", 150)
    assert outside.entry.points == 150  # not in VIP when it bought, the old rule ended
    inside = await buy(sessions, clock, member, "o-2", 10)
    assert inside.entry.points == 10 + 7


async def line_order(sessions: Sessions, clock: ManualClock) -> int:
    """A member and order o-1: line A (3 units) earns 10, line B 5, the welcome bonus 7."""
    await rule(sessions, clock, "Welcome", EarningRuleKind.FIRST_PURCHASE_BONUS, points=7)
    member = await new_member(sessions, clock)
    lines = [LineRequest(sku="A", quantity=3, amount=10), LineRequest(sku="B", amount=5)]
    result = await buy(sessions, clock, member, "o-1", 15, lines)
    assert result.entry.points == 22
    return member


async def test_partial_line_refunds_reverse_exactly_what_the_lines_earned(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    member = await line_order(sessions, clock)

    one = await refund(sessions, clock, "o-1", "r-1", LineRefund("A", 1))
    assert one.entry.points == -3  # floor(10 x 1/3)
    two = await refund(sessions, clock, "o-1", "r-2", LineRefund("A", 1))
    assert two.entry.points == -3  # floor(10 x 2/3) - 3
    last = await refund(sessions, clock, "o-1", "r-3", LineRefund("A"))
    assert last.entry.points == -4  # the last unit takes the remainder
    # A retry of a refund returns it, reversing nothing more.
    again = await refund(sessions, clock, "o-1", "r-3", LineRefund("A"))
    assert again.entry.id == last.entry.id and again.replayed

    async with sessions() as session:
        row = await session.scalar(select(Purchase).where(Purchase.order_id == "o-1"))
    assert row is not None
    assert (row.refunded_amount, row.points_reversed) == (Decimal("10.00"), 10)
    # The bonus waits for the whole order.
    whole = await refund(sessions, clock, "o-1", "r-4", LineRefund("B"))
    assert whole.entry.points == -(5 + 7)
    async with sessions() as session:
        row = await session.scalar(select(Purchase).where(Purchase.order_id == "o-1"))
    assert row is not None
    assert (row.refunded_amount, row.points_reversed) == (Decimal("15.00"), 22)
    assert (await member_row(sessions, member)).available == 0
    await assert_balances_match_ledger(sessions, member)


async def test_one_refund_of_every_line_reverses_the_bonus_too(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await line_order(sessions, clock)
    whole = await refund(sessions, clock, "o-1", "r-1", LineRefund("A"), LineRefund("B"))
    assert whole.entry.points == -22


async def test_unknown_lines_and_over_refunds_are_refused_with_field_paths(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await line_order(sessions, clock)
    with pytest.raises(NotFound) as unknown:
        await refund(sessions, clock, "o-1", "r-1", LineRefund("A", 1), LineRefund("Z"))
    assert unknown.value.field == ["input", "lines", "1", "lineId"]
    with pytest.raises(Invalid) as over:
        await refund(sessions, clock, "o-1", "r-1", LineRefund("A", 4))
    assert over.value.field == ["input", "lines", "0", "quantity"]
    await refund(sessions, clock, "o-1", "r-1", LineRefund("B"))
    with pytest.raises(Invalid) as done:
        await refund(sessions, clock, "o-1", "r-2", LineRefund("B"))
    assert done.value.field == ["input", "lines", "0", "lineId"]
    async with sessions() as session:
        reversals = await session.scalar(
            select(func.count()).where(LedgerEntry.kind == EntryKind.REVERSAL)
        )
    assert reversals == 1


async def test_the_direct_path_earns_and_stores_what_the_general_path_does(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    await configure(sessions, points_per_currency_unit=2)
    await every_kind(sessions, clock)
    async with sessions.begin() as session:
        await currencies.set_rate(session, currency="EUR", rate=1.1, now=clock.now())
    ann, bob = await new_member(sessions, clock, "ann"), await new_member(sessions, clock, "bob")
    writer, _ = listened_writer(pg)
    for n, currency in enumerate((None, "EUR")):
        await buy(sessions, clock, ann, f"ann-{n}", BASKET_AMOUNT, BASKET, currency)
        async with sessions() as session:
            catalog = await load_catalog(session, clock.now())
        purchase = PurchaseInput.check(
            member_id=bob,
            order_id=f"bob-{n}",
            amount=BASKET_AMOUNT,
            occurred_at=None,
            now=clock.now(),
            lines=BASKET,
            currency=currency,
        )
        recorded = await record_directly(
            writer, purchase, now=clock.now(), actor="system", catalog=catalog
        )
        assert recorded is not None

    async def stored(member_id: int) -> list[Any]:
        async with sessions() as session:
            rows = await session.scalars(
                select(Purchase).where(Purchase.member_id == member_id).order_by(Purchase.id)
            )
            entries = await session.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.member_id == member_id)
                .order_by(LedgerEntry.id)
            )
            return [
                [(p.amount, p.currency, p.currency_rate, p.lines, p.points_earned) for p in rows],
                [(e.points, e.breakdown, e.description.split(":")[1]) for e in entries],
            ]

    ann_rows = await stored(ann)
    assert ann_rows == await stored(bob)
    assert [points for points, _, _ in ann_rows[1]] == [BASKET_POINTS, 66 + 16 + 10 + 3 + 10]
    assert cached_balances(await member_row(sessions, ann)) == cached_balances(
        await member_row(sessions, bob)
    )


async def test_the_direct_path_decides_a_segment_rule_in_its_one_read(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    async with sessions.begin() as session:
        segment = await create_segment(
            session, name="Rich", rule={"all": [{"availablePoints": {"min": 100}}]}, now=clock.now()
        )
        segment_id = segment.id
    await rule(
        sessions,
        clock,
        "Seg bonus",
        EarningRuleKind.FIRST_PURCHASE_BONUS,
        points=5,
        segment_id=segment_id,
    )
    inside = await new_member(sessions, clock, "ann")
    outside = await new_member(sessions, clock, "bob")
    await fund(sessions, clock, inside, 100)
    writer, _ = listened_writer(pg)
    async with sessions() as session:
        catalog = await load_catalog(session, clock.now())
    paid = {}
    for member, order in ((inside, "o-1"), (outside, "o-2")):
        purchase = PurchaseInput.check(
            member_id=member, order_id=order, amount=10, occurred_at=None, now=clock.now()
        )
        recorded = await record_directly(
            writer, purchase, now=clock.now(), actor="t", catalog=catalog
        )
        assert recorded is not None  # no decline: membership came with the read
        paid[member] = recorded.entry.points
    assert paid == {inside: 15, outside: 10}


async def test_a_retried_order_with_lines_replays_and_other_lines_conflict(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    member = await new_member(sessions, clock)
    lines = [LineRequest(sku="A", quantity=2, amount=10), LineRequest(sku="B", amount=5)]
    first = await buy(sessions, clock, member, "o-1", 15, lines)
    again = await buy(sessions, clock, member, "o-1", 15, lines)
    assert again.replayed and again.entry.id == first.entry.id
    other = [LineRequest(sku="A", quantity=1, amount=10), LineRequest(sku="B", amount=5)]
    with pytest.raises(IdempotencyConflict):
        await buy(sessions, clock, member, "o-1", 15, other)
    with pytest.raises(IdempotencyConflict):
        await buy(sessions, clock, member, "o-1", 15)  # the same amount without lines
    assert await counts(sessions) == (1, 1)


async def test_an_amount_refund_of_a_foreign_purchase_is_in_its_currency(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    async with sessions.begin() as session:
        await currencies.set_rate(session, currency="EUR", rate=1.1, now=clock.now())
    member = await new_member(sessions, clock)
    await buy(sessions, clock, member, "o-1", 100, currency="EUR")  # 110 points
    async with sessions.begin() as session:
        half = await refund_purchase(
            session, order_id="o-1", refund_id="r-1", amount=50, now=clock.now()
        )
    assert half.entry.points == -55  # 50 EUR are 55.00 USD of 110.00
    async with sessions() as session:
        row = await session.scalar(select(Purchase).where(Purchase.order_id == "o-1"))
    assert row is not None and row.refunded_amount == Decimal("55.00")
