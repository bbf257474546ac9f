"""Alembic environment: async engines, either backend, batch mode so SQLite can alter tables."""

from __future__ import annotations

import asyncio
import os

from sqlalchemy.engine import Connection

from alembic import context
from models import Base
from models.engine import DEFAULT_SQLITE_URL, create_engine

target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: str) -> None:
    engine = create_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_configure)
        await connection.commit()
    await engine.dispose()


def run() -> None:
    # `laurel migrate` (and the tests) hand over an open connection; the alembic CLI does not.
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get(
        "LAUREL_DATABASE_URL", DEFAULT_SQLITE_URL
    )
    asyncio.run(_run_online(url))


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `laurel migrate`")
run()
