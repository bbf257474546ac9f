"""Engines and session factories for both backends: PostgreSQL (asyncpg) and embedded SQLite."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

T = TypeVar("T")
DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///laurel.db"
_READ_ONLY = "laurel_read_only"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, pool_size: int = 16, echo: bool = False) -> AsyncEngine:
    if is_sqlite(url):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _serialize_sqlite_writers(engine)
        return engine
    engine = create_async_engine(
        url,
        echo=echo,
        # At most `pool_size` and a quarter more (at least 2) at once, and every connection
        # opened is kept. SQLAlchemy closes an overflow connection when it is handed back,
        # and a busy process goes past its pool all the time: 32 requests in flight opened
        # 3-8 connections a second, each ~2 ms of this process's CPU (TLS refused first,
        # then the plain handshake) plus a backend started, with every statement prepared
        # again on it, and a request waiting ~6 ms for it.
        pool_size=pool_size + max(pool_size // 4, 2),
        max_overflow=0,
        pool_pre_ping=False,
        # asyncpg prepares statements itself; a bigger cache keeps the hot ones prepared. JIT
        # compiling costs more than it saves on queries like these (60-160 ms a chart query,
        # and the leaderboard and celebration sweeps saw it too).
        connect_args={"statement_cache_size": 512, "server_settings": {"jit": "off"}},
    )
    _replace_closed_connections(engine)
    return engine


def _replace_closed_connections(engine: AsyncEngine) -> None:
    """A pooled connection asyncpg knows is closed (the server ended it while it sat in the
    pool: a failover, a terminated backend) is replaced at checkout instead of failing the
    statement that would use it. It costs an attribute read, where `pool_pre_ping` costs a
    round trip (three outside autocommit) per checkout; what it cannot see (a connection whose
    end has not reached asyncpg yet) the disconnect handling of each path deals with."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.driver_connection.is_closed():
            # The pool invalidates it and checks out a new connection in its place.
            raise exc.DisconnectionError("the server closed this pooled connection")


def _serialize_sqlite_writers(engine: AsyncEngine) -> None:
    """SQLite has one writer: take the write lock at BEGIN so concurrent units of work queue
    up (busy timeout) instead of failing on lock upgrade, and enforce foreign keys."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Readers take no write lock (WAL lets them run beside the writer).
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def session_factory(
    engine: AsyncEngine, *, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Units of work; `info` is given to every session (e.g. who to tell after a commit)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info=info)


def read_only(engine: AsyncEngine) -> AsyncEngine:
    """The engine for reads that change nothing: on PostgreSQL in autocommit, which saves the
    BEGIN and ROLLBACK round trips around every read; on SQLite without the write lock."""
    if is_sqlite(str(engine.url)):
        return engine.execution_options(**{_READ_ONLY: True})
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def read_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        read_only(engine), expire_on_commit=False, autoflush=False, class_=ReadSession
    )


class ReadSession(AsyncSession):
    """A session for reads in autocommit: a statement whose connection the server dropped
    (a failover) runs once more on a new connection, as nothing was written and no
    transaction is lost. `scalars` goes through `execute`."""

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._once_more_if_dropped(super().execute, *args, **kwargs)

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        return await self._once_more_if_dropped(super().scalar, *args, **kwargs)

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        return await self._once_more_if_dropped(super().get, *args, **kwargs)

    async def _once_more_if_dropped(
        self, read: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> Any:
        for _ in range(ATTEMPTS_AFTER_DROP - 1):
            try:
                return await read(*args, **kwargs)
            except Exception as error:
                if not dropped(error):
                    raise
            await self.rollback()  # gives the dead connection back; the next read takes another
            await asyncio.sleep(0)  # lets asyncpg read the other dropped connections' ends
        return await read(*args, **kwargs)


class DroppedConnection(Exception):
    """The server dropped the connection under a statement of a direct path (asyncpg's own
    error is the cause). asyncpg reports it in several ways, depending on when it learns it: a
    PostgreSQL error (57P01 "terminating connection due to administrator command"),
    ConnectionDoesNotExistError, or, when the server's farewell reached an idle pooled
    connection and the connection's end has not been read yet, InternalClientError "cannot
    switch to state 12; another operation (2) is in progress": asyncpg takes the unrequested
    ErrorResponse for a protocol error and leaves the connection in its error-consuming state
    (2) with no operation waiting, and the next statement on it refuses to start (before
    sending anything) and closes it."""


def dropped(error: BaseException | None) -> bool:
    """Whether `error` says the server dropped the connection under a statement (a failover,
    a terminated backend): the same work may then succeed on a new connection. SQLAlchemy
    marks the errors it sees (and has invalidated the pool's connections as old), the direct
    paths raise DroppedConnection; asyncpg's own errors that close the connection reach us
    unwrapped from SQLAlchemy's BEGIN."""
    return isinstance(error, (DroppedConnection, *_CLOSING)) or (
        isinstance(error, exc.DBAPIError) and error.connection_invalidated
    )


# asyncpg errors after which asyncpg has closed the connection (see DroppedConnection).
_CLOSING = (asyncpg.ConnectionDoesNotExistError, asyncpg.InternalClientError)


# How many times work safe to repeat is tried when the server keeps dropping its connection.
# More than two: after a failover several pooled connections may still look open (asyncpg has
# not read their end yet), and a retry may take one of them.
ATTEMPTS_AFTER_DROP = 3


async def once_more_if_dropped(attempt: Callable[[], Awaitable[T]]) -> T:
    """`attempt()`, and again (ATTEMPTS_AFTER_DROP in all) if the server dropped its
    connection: for work that is safe to repeat (a read). The pool replaces the connections as
    old as the dropped one, so a failover costs a reconnection, not the request."""
    for _ in range(ATTEMPTS_AFTER_DROP - 1):
        try:
            return await attempt()
        except Exception as error:
            if not dropped(error):
                raise
        await asyncio.sleep(0)  # lets asyncpg read the other dropped connections' ends
    return await attempt()


@contextlib.asynccontextmanager
async def planner_settings(
    session: AsyncSession, settings: Mapping[str, str]
) -> AsyncIterator[None]:
    """PostgreSQL planner settings (trusted names and values) for the statements run inside,
    set and reset around them: reads run in autocommit, where `SET LOCAL` does nothing.
    Nothing on other databases."""
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    for name, value in settings.items():
        await session.execute(text(f"SET {name} = {value}"))
    try:
        yield
    finally:
        # After an error inside a transaction the reset fails, and the rollback undoes the SET.
        with contextlib.suppress(exc.DBAPIError):
            for name in settings:
                await session.execute(text(f"RESET {name}"))
