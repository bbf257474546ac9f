"""The per-request context: who is calling, the process's runtime, and the request's loaders."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from schema.loaders import Loaders
from services.audit import Actor
from services.bus import LocalBus
from services.catalog import CatalogCache
from services.clock import Clock
from services.direct.writer import DirectWriter
from services.leaderboards import Leaderboards
from services.revocations import Revocations
from services.segments import CountCache
from services.webhooks.urls import UrlRules


class Role(enum.StrEnum):
    ANONYMOUS = "anonymous"
    MEMBER = "member"
    SERVICE = "service"
    PARTNER = "partner"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Viewer:
    role: Role
    member_id: int | None = None
    partner_slug: str | None = None
    # Recorded on entries and scoping idempotency keys: "key:<id>" or "member:<id>".
    actor: str = "anonymous"
    # Why a credential that was sent is not accepted (reported only where one is needed).
    credential_problem: str | None = None
    # When the credential stops being valid (member tokens): a live connection closes then.
    expires_at: datetime | None = None
    # The API key's id and name (API keys only): who the audit trail names.
    key_id: int | None = None
    key_name: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.SERVICE, Role.ADMIN)

    def can_see_member(self, member_id: int) -> bool:
        return self.is_staff or (self.role is Role.MEMBER and self.member_id == member_id)

    @property
    def audit_actor(self) -> Actor:
        return Actor(key_id=self.key_id, name=self.key_name, role=self.role.value.upper())


ANONYMOUS = Viewer(role=Role.ANONYMOUS)


async def _nothing_to_tell() -> None:
    return None


async def _nothing_to_tell_of(_: int) -> None:
    return None


@dataclass(slots=True)
class Runtime:
    """What lives as long as the process: session factory, clock, token settings."""

    sessions: async_sessionmaker[AsyncSession]  # units of work that write
    read_sessions: async_sessionmaker[AsyncSession]  # reads only
    read_engine: AsyncEngine  # hot reads in Core, on the same pool
    catalog: CatalogCache
    clock: Clock
    jwt_secret: str | None
    member_token_ttl: timedelta = timedelta(days=7)
    # Rings subscribers when members' events commit (this process's, and others' over Redis).
    bus: LocalBus = field(default_factory=LocalBus)
    leaderboards: Leaderboards | None = None
    # The hot writes' few-statement paths (PostgreSQL only; see services.direct).
    direct: DirectWriter | None = None
    # Await after committing a change to who may call (a key revoked, a partner deactivated
    # or renamed, a member erased): every process drops what it cached of credentials before
    # it returns (`await info.context.runtime.credentials_changed()`).
    credentials_changed: Callable[[], Awaitable[None]] = field(default=_nothing_to_tell)
    # Await after committing a member's erasure: its tokens are refused and its live
    # subscriptions end, in every process, before it returns.
    member_erased: Callable[[int], Awaitable[None]] = field(default=_nothing_to_tell_of)
    revocations: Revocations = field(default_factory=Revocations)
    # Webhook endpoint URLs: what is allowed (settings), and who to tell of new deliveries.
    webhook_urls: UrlRules = field(default_factory=lambda: UrlRules(False, False))
    webhooks_wake: Callable[[], None] = field(default=lambda: None)
    # Segment member counts, kept a few seconds (services.segments.CountCache).
    segment_counts: CountCache = field(default_factory=CountCache)


@dataclass(slots=True)
class Context:
    request: Request | WebSocket
    response: Response | None
    runtime: Runtime
    viewer: Viewer
    loaders: Loaders = field(init=False)
    # A WebSocket's `connection_init` payload (strawberry sets it).
    connection_params: dict[str, object] | None = None
    # When the calling member's view next changes without an event (pending points activate,
    # lots expire): a cached answer must not outlive it.
    member_settles_at: datetime | None = None

    def __post_init__(self) -> None:
        self.renew_loaders()

    def renew_loaders(self) -> None:
        """Fresh loaders: a long-lived context (a WebSocket) must not serve stale answers."""
        runtime = self.runtime
        self.loaders = Loaders(
            runtime.read_engine,
            runtime.read_sessions,
            runtime.catalog,
            runtime.clock,
            runtime.direct,
        )


Info = StrawberryInfo[Context, None]
