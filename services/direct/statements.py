"""SQLAlchemy statements compiled once into the SQL asyncpg runs, for the direct paths: the
statement stays the one source of its SQL (and SQLite runs it through a session), while
PostgreSQL's hot reads skip SQLAlchemy's execution and result machinery."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


@dataclass(frozen=True, slots=True)
class AsyncpgStatement:
    """A statement's SQL for asyncpg, its parameters' names in `$n` order, and the values
    of the parameters it binds itself (its literals)."""

    sql: str
    names: tuple[str, ...]
    constants: Mapping[str, Any]

    def arguments(self, given: Mapping[str, Any]) -> list[Any]:
        """The positional arguments: `given` by name, the statement's own values for the
        rest."""
        return [given[n] if n in given else self.constants[n] for n in self.names]


def for_asyncpg(statement: ClauseElement) -> AsyncpgStatement:
    """`statement` compiled for asyncpg (expanding parameters rendered: their values are
    fixed by then)."""
    dialect = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    assert isinstance(compiled, SQLCompiler)
    return AsyncpgStatement(
        sql=compiled.string,
        names=tuple(compiled.positiontup or ()),
        constants=dict(compiled.params),  # (the parameters left to `arguments`: None)
    )
