"""Every migration is reversible, on both backends: up, all the way down, and up again."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from models import Base
from models.engine import create_engine
from models.migrations import downgrade, is_up_to_date, upgrade
from tests.conftest import PG_URL, _recreate_pg_database


@pytest.fixture(params=["postgresql", "sqlite"])
async def scratch_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
    own = make_url(
        PG_URL
    )  # the run's (or the xdist worker's) database, and a scratch one beside it
    url = own.set(database=f"{own.database}_migrations").render_as_string(False)
    await _recreate_pg_database(url)
    return url


async def test_migrations_go_down_and_up_again(scratch_url: str) -> None:
    engine = create_engine(scratch_url, pool_size=2)
    try:
        await upgrade(engine)
        assert await is_up_to_date(engine)
        await downgrade(engine)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert tables <= {"alembic_version"}
        await upgrade(engine)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert set(Base.metadata.tables) <= tables
    finally:
        await engine.dispose()


# Objects the migrations make on PostgreSQL only, outside the models: the celebration-day
# expression indexes (0009) and member search (0011).
PG_ONLY = {"ix_members_birthday_month_day", "ix_members_joined_month_day", "member_search"}


async def test_migrations_build_what_the_models_describe(scratch_url: str) -> None:
    """A model changed without its migration (or the reverse) fails here, on both backends."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    def include(obj: object, name: str | None, kind: str, reflected: bool, other: object) -> bool:
        return name not in PG_ONLY

    def differences(connection: object) -> list[object]:
        context = MigrationContext.configure(
            connection,  # type: ignore[arg-type]
            opts={"compare_type": True, "include_object": include},
        )
        return list(compare_metadata(context, Base.metadata))

    engine = create_engine(scratch_url, pool_size=2)
    try:
        await upgrade(engine)
        async with engine.connect() as connection:
            found = await connection.run_sync(differences)
        assert found == []
    finally:
        await engine.dispose()
