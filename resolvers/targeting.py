"""Targeting in the API: the IDs targeting inputs name, and what a caller may see of targeted
promotions, rewards and challenges (admins everything; members what is for them; others
nothing targeted)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

import models
from schema.context import Info, Role
from schema.ids import encode_id, expect_id
from services import experiments, segments, targeting


def optional_pk(value: strawberry.ID | None, type_name: str, field: list[str]) -> int | None:
    """The primary key an optional ID input names (NOT_FOUND naming `field` if it is not an
    ID of `type_name`)."""
    return expect_id(value, type_name, field) if value is not None else None


def global_id(type_name: str, pk: int | None) -> str | None:
    return encode_id(type_name, pk) if pk is not None else None


async def retarget_from(
    session: AsyncSession,
    row: models.Promotion | models.Reward | models.Challenge,
    changes: dict[str, Any],
    before: dict[str, Any],
    after: dict[str, Any],
) -> None:
    """Apply an update input's `segmentId` (taken out of `changes`; explicit null: everyone),
    recording it for the audit trail in `before` and `after`."""
    if "segment_id" not in changes:
        return
    pk = optional_pk(changes.pop("segment_id"), "Segment", ["input", "segmentId"])
    before["segment"] = global_id("Segment", row.segment_id)
    await targeting.retarget(session, row, pk)
    after["segment"] = global_id("Segment", row.segment_id)


async def viewer_segments(info: Info, ids: Collection[int]) -> Collection[int] | None:
    """The segments among `ids` the caller may see what targets: None for an admin (every
    one), the member's own segments among them for a member, none for anyone else."""
    viewer = info.context.viewer
    if viewer.role is Role.ADMIN:
        return None
    if viewer.role is not Role.MEMBER or viewer.member_id is None or not ids:
        return frozenset()
    runtime = info.context.runtime
    async with runtime.read_sessions() as session:
        return await segments.segments_containing(
            session, viewer.member_id, ids, runtime.clock.now()
        )


T = TypeVar("T", bound=targeting.Targeted)


async def visible(info: Info, items: list[T]) -> list[T]:
    """The items the caller may see (admins: all)."""
    segments = await viewer_segments(info, targeting.segment_ids(items))
    return items if segments is None else targeting.admitted(items, segments)


async def visible_promotions(
    info: Info, promotions: list[models.Promotion]
) -> list[models.Promotion]:
    """The promotions the caller may see: targeting as `visible`, and a member an experiment
    holds out (CONTROL) does not see the promotion at all (it never learns its group)."""
    shown = await visible(info, promotions)
    member_id = info.context.viewer.member_id
    if member_id is None or info.context.viewer.role is not Role.MEMBER:
        return shown
    return [p for p in shown if experiments.treated(p, member_id)]
