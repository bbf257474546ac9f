"""Earning rules and currency rates (admin; rates also read by services)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import strawberry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import models
from resolvers.common import audit_trail, given, unit_of_work
from resolvers.segments import plain
from schema.context import Info
from schema.errors import UserError
from schema.ids import encode_id, expect_id
from schema.inputs import (
    CreateEarningRuleInput,
    EndEarningRuleInput,
    SetCurrencyRateInput,
    UpdateEarningRuleInput,
)
from schema.payloads import (
    CreateEarningRulePayload,
    EndEarningRulePayload,
    SetCurrencyRatePayload,
    UpdateEarningRulePayload,
)
from schema.types.earning import CurrencyRate, EarningRule
from services import currencies
from services import earning_rules as service
from services.errors import DomainError


def _audited(row: models.EarningRule) -> dict[str, Any]:
    def text(value: object) -> str | None:
        return None if value is None else str(value)

    return {
        "name": row.name,
        "kind": row.kind.value,
        "match": row.match,
        "multiplier": text(row.multiplier),
        "points": row.points,
        "minimumAmount": text(row.minimum_amount),
        "segmentId": encode_id("Segment", row.segment_id) if row.segment_id else None,
        "startsAt": text(row.starts_at and row.starts_at.isoformat()),
        "endsAt": text(row.ends_at and row.ends_at.isoformat()),
    }


async def _shown(
    session: AsyncSession, rows: Sequence[models.EarningRule], now: datetime
) -> list[EarningRule]:
    """The rules with their segments (read in one statement)."""
    wanted = {r.segment_id for r in rows if r.segment_id is not None}
    found = (
        {
            s.id: s
            for s in await session.scalars(
                select(models.Segment).where(models.Segment.id.in_(wanted))
            )
        }
        if wanted
        else {}
    )
    return [
        EarningRule.from_row(r, found.get(r.segment_id) if r.segment_id else None, now)
        for r in rows
    ]


def _segment_pk(value: strawberry.ID | None) -> int | None:
    return expect_id(value, "Segment", ["input", "segmentId"]) if value is not None else None


async def earning_rules(info: Info, active_only: bool | None = False) -> list[EarningRule]:
    now = info.context.runtime.clock.now()
    async with info.context.runtime.read_sessions() as session:
        rows = await service.list_rules(session, active_only=bool(active_only), now=now)
        return await _shown(session, rows, now)


async def currency_rates(info: Info) -> list[CurrencyRate]:
    async with info.context.runtime.read_sessions() as session:
        return [CurrencyRate.from_row(r) for r in await currencies.list_rates(session)]


async def create_earning_rule(
    info: Info, input: CreateEarningRuleInput
) -> CreateEarningRulePayload:
    now = info.context.runtime.clock.now()

    async def work(session: AsyncSession) -> EarningRule:
        row = await service.create_rule(
            session,
            name=input.name,
            kind=models.EarningRuleKind(input.kind),
            values={
                "match": plain(input.match) if input.match is not None else None,
                "multiplier": input.multiplier,
                "points": input.points,
                "minimumAmount": input.minimum_amount,
            },
            segment_id=_segment_pk(input.segment_id),
            starts_at=input.starts_at,
            ends_at=input.ends_at,
            now=now,
        )
        audit_trail(info, session, encode_id("EarningRule", row.id), None, _audited(row))
        return (await _shown(session, [row], now))[0]

    result = await unit_of_work(info.context, work)
    if isinstance(result, UserError):
        return CreateEarningRulePayload(user_errors=[result])
    info.context.runtime.catalog.invalidate()
    return CreateEarningRulePayload(earning_rule=result)


async def update_earning_rule(
    info: Info, input: UpdateEarningRuleInput
) -> UpdateEarningRulePayload:
    now = info.context.runtime.clock.now()

    async def work(session: AsyncSession) -> EarningRule:
        rule_id = expect_id(input.id, "EarningRule", ["input", "id"])
        row = await service.locked_rule(session, rule_id)
        before = _audited(row)
        changes = {_camel(name): value for name, value in given(input).items()}
        if changes.get("match") is not None:
            changes["match"] = plain(changes["match"])
        if "segmentId" in changes:
            changes["segmentId"] = _segment_pk(changes["segmentId"])
        await service.update_rule(session, row, changes, now)
        audit_trail(info, session, input.id, before, _audited(row))
        return (await _shown(session, [row], now))[0]

    result = await unit_of_work(info.context, work)
    if isinstance(result, UserError):
        return UpdateEarningRulePayload(user_errors=[result])
    info.context.runtime.catalog.invalidate()
    return UpdateEarningRulePayload(earning_rule=result)


async def end_earning_rule(info: Info, input: EndEarningRuleInput) -> EndEarningRulePayload:
    now = info.context.runtime.clock.now()

    async def work(session: AsyncSession) -> EarningRule:
        rule_id = expect_id(input.id, "EarningRule", ["input", "id"])
        row = await service.locked_rule(session, rule_id)
        before = _audited(row)
        await service.end_rule(session, row, now)
        audit_trail(info, session, input.id, before, _audited(row))
        return (await _shown(session, [row], now))[0]

    result = await unit_of_work(info.context, work)
    if isinstance(result, UserError):
        return EndEarningRulePayload(user_errors=[result])
    info.context.runtime.catalog.invalidate()
    return EndEarningRulePayload(earning_rule=result)


async def set_currency_rate(info: Info, input: SetCurrencyRateInput) -> SetCurrencyRatePayload:
    now = info.context.runtime.clock.now()
    try:
        async with info.context.runtime.sessions.begin() as session:
            row, previous = await currencies.set_rate(
                session, currency=input.currency, rate=input.rate, now=now
            )
            before = {"rate": str(previous)} if previous is not None else None
            audit_trail(
                info, session, f"CurrencyRate:{row.currency}", before, {"rate": str(row.rate)}
            )
            shown = CurrencyRate.from_row(row)
    except DomainError as error:
        return SetCurrencyRatePayload(user_errors=[UserError.from_domain(error)])
    info.context.runtime.catalog.invalidate()
    return SetCurrencyRatePayload(currency_rate=shown)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
