"""Real API processes (`laurel serve`) on loopback ports, sharing the test PostgreSQL database
and a real Redis, for the live-update tests; and helpers to talk to them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from schema.ids import encode_id
from tests.conftest import JWT_SECRET, PG_URL

REDIS_URL = os.environ.get("LAUREL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LAUREL = Path(sys.executable).with_name("laurel")


@contextlib.asynccontextmanager
async def running(
    work: Coroutine[Any, Any, None], *quiet: type[BaseException]
) -> AsyncIterator[asyncio.Task[None]]:
    """`work` as a task while the block runs, cancelled after it: its cancellation and its
    `quiet` errors are ignored then, anything else it raised is raised."""
    task = asyncio.create_task(work)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, *quiet):
            await task


RECORD_PURCHASE = """mutation($input: RecordPurchaseInput!) { recordPurchase(input: $input) {
    transaction { id } userErrors { code message } } }"""


async def record_purchase(
    server: Server, service_key: str, member_id: int, order_id: str, amount: float = 10.0
) -> None:
    """A purchase through `server` that must be recorded (no userErrors)."""
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as client:
        response = await client.post(
            "/graphql",
            json={
                "query": RECORD_PURCHASE,
                "variables": {
                    "input": {
                        "memberId": encode_id("Member", member_id),
                        "orderId": order_id,
                        "amount": amount,
                    }
                },
            },
            headers={"authorization": f"Bearer {service_key}"},
        )
    body = response.json()
    assert body["data"]["recordPurchase"]["userErrors"] == [], body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """One `laurel serve` process."""

    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def start(self) -> Server:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        self.process = subprocess.Popen(  # noqa: S603 (our own command)
            [str(LAUREL), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"laurel serve exited:\n{self.output()}")
            try:
                if httpx.get(f"{self.http}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("laurel serve did not become ready in 30 s")

    def output(self) -> str:
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM, as an orchestrator would: uvicorn shuts down gracefully."""
        if self.process is None:
            return None
        self.process.terminate()
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            self.process = None
            if self.log is not None:
                self.log.close()
                self.log = None


def server_env(prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUREL_")}
    env.update(
        LAUREL_DATABASE_URL=PG_URL,
        LAUREL_REDIS_URL=REDIS_URL,
        LAUREL_REDIS_PREFIX=prefix,
        LAUREL_JWT_SECRET=JWT_SECRET,
        LAUREL_ENV="production",
        LAUREL_SWEEP_INTERVAL_SECONDS="0",
        # Long enough for a loaded CI machine to get a client's connection_init read in time.
        LAUREL_WS_INIT_TIMEOUT_SECONDS="5",
        LAUREL_MAX_SUBSCRIPTIONS_PER_CONNECTION="3",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def redis_prefix() -> str:
    return f"laureltest:{uuid.uuid4().hex[:12]}:"


@pytest.fixture(scope="module")
def two_servers(
    redis_prefix: str, pg_before_servers: AsyncEngine
) -> Iterator[tuple[Server, Server]]:
    """Processes A and B: one database, one Redis, one key prefix."""
    servers = [Server(free_port(), server_env(redis_prefix)) for _ in range(2)]
    try:
        for server in servers:
            server.start()
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()
