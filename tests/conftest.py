"""Shared fixtures: real PostgreSQL and real SQLite databases, migrated once with Alembic and
emptied before each test; a movable clock; an HTTP client on the real app.

PostgreSQL is required: set LAUREL_TEST_DATABASE_URL to point the suite elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from api.app import create_app
from api.database import prepare_database
from api.settings import Settings
from models import Base, KeyRole
from models.engine import create_engine, session_factory
from schema.ids import encode_id
from services import access
from services.clock import ManualClock
from services.program import ensure_program

PG_URL = os.environ.get(
    "LAUREL_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/laurel_test"
)
# Under pytest-xdist each worker process gets a database of its own (laurel_test_gw0, ...).
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if WORKER:
    _url = make_url(PG_URL)
    PG_URL = _url.set(database=f"{_url.database}_{WORKER}").render_as_string(hide_password=False)
JWT_SECRET = "test-secret-with-enough-length-for-hs256"
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


async def _recreate_pg_database(url: str) -> None:
    parsed = make_url(url)
    admin = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database="postgres",
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{parsed.database}"')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def pg_engine() -> AsyncIterator[AsyncEngine]:
    await _recreate_pg_database(PG_URL)
    engine = create_engine(PG_URL, pool_size=20)
    await prepare_database(engine)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AsyncEngine]:
    path: Path = tmp_path_factory.mktemp("sqlite") / "laurel.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await prepare_database(engine)
    yield engine
    await engine.dispose()


async def _empty(engine: AsyncEngine) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                await connection.execute(text(f"DELETE FROM {table}"))
    async with session_factory(engine).begin() as session:
        await ensure_program(session)


@pytest.fixture(params=["postgresql", "sqlite"])
async def engine(
    request: pytest.FixtureRequest, pg_engine: AsyncEngine, sqlite_engine: AsyncEngine
) -> AsyncEngine:
    """Each test using this runs on both backends, on an empty, migrated database."""
    chosen = pg_engine if request.param == "postgresql" else sqlite_engine
    await _empty(chosen)
    return chosen


@pytest.fixture(scope="module")
async def pg_before_servers(pg_engine: AsyncEngine) -> AsyncEngine:
    """PostgreSQL emptied before a module's long-lived servers start. A server reads at
    startup what it then keeps in memory (erased members, the catalog), and a test empties
    the database as it starts, not as it ends: started on the last test's rows, whose ids
    the next test's restarted identities reuse, a server refuses a new member 1 as erased."""
    await _empty(pg_engine)
    return pg_engine


@pytest.fixture
async def pg(pg_engine: AsyncEngine) -> AsyncEngine:
    """PostgreSQL only (concurrency tests that need real row locks across connections)."""
    await _empty(pg_engine)
    return pg_engine


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@dataclass
class Api:
    """The real app over HTTP, with helpers for credentials of every role."""

    client: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    clock: ManualClock
    app: Starlette

    async def key(self, role: KeyRole, partner_slug: str | None = None) -> str:
        async with self.sessions.begin() as session:
            issued = await access.create_api_key(
                session,
                role=role,
                name=f"test {role}",
                now=self.clock.now(),
                partner_slug=partner_slug,
            )
        return issued.secret

    def member_token(self, member_pk: int, ttl: timedelta = timedelta(hours=1)) -> str:
        return access.issue_member_token(
            subject=encode_id("Member", member_pk), secret=JWT_SECRET, now=self.clock.now(), ttl=ttl
        )

    async def gql(
        self, query: str, variables: dict[str, object] | None = None, *, token: str | None = None
    ) -> dict[str, object]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        body: dict[str, object] = response.json()
        return body


class ApiFactory(Protocol):
    def __call__(self, engine: AsyncEngine, *, production: bool = False) -> Awaitable[Api]: ...


@pytest.fixture
async def make_api(clock: ManualClock) -> AsyncIterator[ApiFactory]:
    apps = []

    async def factory(engine: AsyncEngine, *, production: bool = False) -> Api:
        settings = Settings(
            database_url=engine.url.render_as_string(hide_password=False),
            jwt_secret=SecretStr(JWT_SECRET),
            env="production" if production else "development",
            sweep_interval_seconds=0,
            _env_file=None,  # type: ignore[call-arg]
        )
        app = create_app(settings, clock=clock)
        apps.append(app)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        return Api(client=client, sessions=session_factory(engine), clock=clock, app=app)

    yield factory
    for app in apps:
        await app.state.laurel.engine.dispose()


@pytest.fixture
async def api(engine: AsyncEngine, make_api: ApiFactory) -> Api:
    """The app on both backends."""
    return await make_api(engine)


@pytest.fixture
async def pg_api(pg: AsyncEngine, make_api: ApiFactory) -> Api:
    """The app on PostgreSQL only."""
    return await make_api(pg)
