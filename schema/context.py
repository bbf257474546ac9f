"""The per-request context: who is calling, the process's runtime, and the request's loaders."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from schema.loaders import Loaders
from services.bus import LocalBus
from services.catalog import CatalogCache
from services.clock import Clock
from services.direct.writer import DirectWriter
from services.leaderboards import Leaderboards


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

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.SERVICE, Role.ADMIN)

    def can_see_member(self, member_id: int) -> bool:
        return self.is_staff or (self.role is Role.MEMBER and self.member_id == member_id)


ANONYMOUS = Viewer(role=Role.ANONYMOUS)


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
            runtime.read_engine, runtime.read_sessions, runtime.catalog, runtime.clock
        )


Info = StrawberryInfo[Context, None]
