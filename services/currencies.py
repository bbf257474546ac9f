"""Currency rates (admin): program-currency units per unit of another ISO 4217 currency.

Purchases in a currency with a rate count as amount x rate; the program's own currency is
always 1. Rates live in the catalog snapshot (services.catalog), so setting one bumps it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import CurrencyRate
from services.errors import Invalid
from services.program import bump_catalog_version, get_program, positive_decimal

ISO_4217 = re.compile(r"[A-Z]{3}")
MAX_RATE = Decimal(1_000_000)


def currency_code(value: str, field: list[str]) -> str:
    """An ISO 4217 code: three capital letters."""
    if not ISO_4217.fullmatch(value):
        raise Invalid("currency must be an ISO 4217 code (three capital letters)", field=field)
    return value


async def set_rate(
    session: AsyncSession, *, currency: str, rate: float, now: datetime
) -> tuple[CurrencyRate, Decimal | None]:
    """The currency's rate set (added or changed), and the rate it replaced (None if new)."""
    code = currency_code(currency, ["input", "currency"])
    if code == (await get_program(session)).currency:
        raise Invalid("the program's own currency is always 1", field=["input", "currency"])
    exact = positive_decimal(rate, ["input", "rate"], maximum=MAX_RATE)
    if exact != exact.quantize(Decimal("1e-8")):
        raise Invalid("rate has at most 8 decimal places", field=["input", "rate"])
    # First: the program row's lock makes rate edits take turns, so two first rates for one
    # currency never both insert it (the second then finds the first's row).
    await bump_catalog_version(session)
    row = await session.get(CurrencyRate, code, with_for_update=True)
    previous = None if row is None else row.rate
    if row is None:
        row = CurrencyRate(currency=code, rate=exact, updated_at=now)
        session.add(row)
    else:
        row.rate, row.updated_at = exact, now
    await session.flush()
    return row, previous


async def list_rates(session: AsyncSession) -> Sequence[CurrencyRate]:
    return list(await session.scalars(select(CurrencyRate).order_by(CurrencyRate.currency)))
