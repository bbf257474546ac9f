"""`node(id)`: any object by its global ID, if the caller may see it (null otherwise)."""

from __future__ import annotations

import strawberry

import models
from resolvers.common import fresh_member
from resolvers.targeting import visible, visible_promotions
from schema.context import Context, Info, Role
from schema.ids import decode_id
from schema.types.access import ApiKey
from schema.types.activity import ActivityType
from schema.types.audit import AuditEntry
from schema.types.earning import EarningRule
from schema.types.gamification import Badge, Challenge
from schema.types.ledger import PointsTransaction
from schema.types.member import Member
from schema.types.node import Node
from schema.types.program import Promotion, Tier
from schema.types.redemption import Redemption
from schema.types.reward import Partner, visible_reward
from schema.types.webhooks import WebhookEndpoint, WebhookEvent


async def node(info: Info, id: strawberry.ID) -> Node | None:
    decoded = decode_id(id)
    if decoded is None:
        return None
    type_name, pk = decoded
    ctx = info.context
    viewer = ctx.viewer
    if type_name == "Member":
        if not viewer.can_see_member(pk):
            return None
        row = await fresh_member(ctx, pk)
        return Member.from_row(row) if row else None
    if type_name == "PointsTransaction":
        async with ctx.runtime.read_sessions() as session:
            entry = await session.get(models.LedgerEntry, pk)
        if entry is None or not viewer.can_see_member(entry.member_id):
            return None
        return PointsTransaction.from_row(entry)
    if type_name == "Tier":
        return next((t for t in Tier.ranked_in(await ctx.loaders.catalog()) if t.id == id), None)
    if type_name == "Promotion":
        async with ctx.runtime.read_sessions() as session:
            promotion = await session.get(models.Promotion, pk)
        # A targeted promotion does not exist for callers outside its segment, nor an
        # experiment's for the members it holds out.
        shown = await visible_promotions(info, [promotion]) if promotion else []
        return Promotion.from_row(shown[0]) if shown else None
    if type_name == "Reward":
        return await visible_reward(info, pk)
    if type_name == "Partner":
        partner = await ctx.loaders.rewards.partner.load(pk)
        return Partner.from_row(partner) if partner else None
    if type_name == "Badge":
        badge = await ctx.loaders.badges.load(pk)
        return Badge.from_row(badge) if badge else None
    if type_name == "Challenge":
        async with ctx.runtime.read_sessions() as session:
            challenge = await session.get(models.Challenge, pk)
        seen = await visible(info, [challenge]) if challenge else []
        return Challenge.from_row(seen[0]) if seen else None
    if type_name == "EarningRule":
        if viewer.role is not Role.ADMIN:
            return None
        async with ctx.runtime.read_sessions() as session:
            rule = await session.get(models.EarningRule, pk)
            segment = (
                await session.get(models.Segment, rule.segment_id)
                if rule is not None and rule.segment_id is not None
                else None
            )
        return EarningRule.from_row(rule, segment, ctx.runtime.clock.now()) if rule else None
    if type_name == "ActivityType":
        if not viewer.is_staff:  # admin or service, as `activityTypes`
            return None
        async with ctx.runtime.read_sessions() as session:
            activity_type = await session.get(models.ActivityType, pk)
        program = await ctx.loaders.program()
        return ActivityType.from_row(activity_type, program) if activity_type else None
    if type_name in ("WebhookEndpoint", "WebhookEvent", "ApiKey", "AuditEntry"):
        return await _admin_object(ctx, type_name, pk)
    if type_name == "Redemption":
        async with ctx.runtime.read_sessions() as session:
            redemption = await session.get(models.Redemption, pk)
        if redemption is None or not viewer.can_see_member(redemption.member_id):
            return None
        return Redemption.from_row(redemption)
    return None


async def _admin_object(ctx: Context, type_name: str, pk: int) -> Node | None:
    """Objects of running the program: admins only (null for anyone else)."""
    if ctx.viewer.role is not Role.ADMIN:
        return None
    async with ctx.runtime.read_sessions() as session:
        if type_name == "WebhookEndpoint":
            endpoint = await session.get(models.WebhookEndpoint, pk)
            live = endpoint is not None and endpoint.deleted_at is None
            return WebhookEndpoint.from_row(endpoint) if live and endpoint else None
        if type_name == "WebhookEvent":
            event = await session.get(models.WebhookEvent, pk)
            return WebhookEvent.from_row(event) if event else None
        if type_name == "ApiKey":
            key = await session.get(models.ApiKey, pk)
            return ApiKey.from_row(key) if key else None
        entry = await session.get(models.AuditEntry, pk)
        return AuditEntry.from_row(entry) if entry else None
