"""Preparing a database: the latest schema (Alembic) and the program's defaults."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from models.engine import session_factory
from models.migrations import upgrade
from services.program import ensure_program


async def prepare_database(engine: AsyncEngine) -> None:
    await upgrade(engine)
    async with session_factory(engine).begin() as session:
        await ensure_program(session)
