"""Where the benchmark's database lives, and the names every module shares."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LUA_DIR = BENCH_DIR / "lua"


@dataclass(frozen=True, slots=True)
class Database:
    host: str = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
    port: int = int(os.environ.get("BENCH_PG_PORT", "5432"))
    user: str = os.environ.get("BENCH_PG_USER", "postgres")
    name: str = os.environ.get("BENCH_PG_DATABASE", "laurel_bench")

    @property
    def dsn(self) -> str:
        """For asyncpg."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.name}"

    @property
    def sqlalchemy_url(self) -> str:
        """For Laurel (LAUREL_DATABASE_URL)."""
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{self.name}"

    @property
    def admin_dsn(self) -> str:
        """The maintenance database, to drop and create the benchmark's own."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/postgres"
