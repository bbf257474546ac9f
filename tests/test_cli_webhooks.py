"""`laurel webhooks receive` (a real process on loopback) prints each webhook's type and id and
says whether its signature verifies, and without a secret registers itself with the configured
database; `laurel worker` refuses a database that is not migrated."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from api.database import prepare_database
from models import AuditEntry, WebhookEndpoint, WebhookEventType
from models.engine import create_engine, session_factory
from services import audit
from services.webhooks.signing import new_secret

ROOT = Path(__file__).resolve().parents[1]
# The `laurel` command as installed (`python -m api.cli` would load api.cli twice).
LAUREL = [sys.executable, "-c", "import sys; from api.cli import main; sys.exit(main())"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def laurel(*argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 (our own command)
        [*LAUREL, *argv],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def receiving() -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    secret, port = new_secret(), free_port()
    process = laurel("webhooks", "receive", "--port", str(port), "--secret", secret)
    assert process.stdout is not None
    assert "receiving webhooks at http://127.0.0.1:" in process.stdout.readline()
    url = f"http://127.0.0.1:{port}/"
    for _ in range(100):  # until uvicorn listens
        try:
            httpx.get(url, timeout=0.2)
            break
        except httpx.TransportError:
            continue
    yield url, secret, process
    if process.poll() is None:
        process.terminate()
        process.wait(5)


def signed(secret: str, message_id: str, event_type: str) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps({"id": message_id, "type": event_type, "data": {}})
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
    }
    return body, headers


def test_the_receiver_prints_each_event_and_whether_its_signature_verifies(
    receiving: tuple[str, str, subprocess.Popen[str]],
) -> None:
    url, secret, process = receiving
    body, headers = signed(secret, "V2ViaG9va0V2ZW50OjE=", "points.earned")
    assert httpx.post(url, content=body, headers=headers).status_code == 204
    forged, headers = signed(new_secret(), "V2ViaG9va0V2ZW50OjI=", "tier.changed")
    assert httpx.post(url, content=forged, headers=headers).status_code == 401
    process.terminate()
    out, _ = process.communicate(timeout=5)

    first, second = out.splitlines()[:2]
    assert first.split() == ["points.earned", "V2ViaG9va0V2ZW50OjE=", "signature", "ok"]
    assert second.startswith("tier.changed")
    assert "V2ViaG9va0V2ZW50OjI=  SIGNATURE DOES NOT VERIFY" in second
    assert secret not in out


def test_the_receiver_refuses_a_secret_that_is_not_one() -> None:
    process = laurel("webhooks", "receive", "--port", str(free_port()), "--secret", "whsec_!!")
    _, err = process.communicate(timeout=20)
    assert process.returncode == 2
    assert "--secret is not a whsec_... signing secret" in err


def test_the_worker_refuses_a_database_that_is_not_migrated(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing.db'}"
    process = laurel("worker", env={"LAUREL_DATABASE_URL": url})
    _, err = process.communicate(timeout=20)
    assert process.returncode == 2
    assert "laurel migrate" in err


async def test_without_a_secret_the_receiver_registers_itself_in_the_database_once(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    engine = create_engine(url)
    await prepare_database(engine)
    port = free_port()

    def start() -> str:
        process = laurel(
            "webhooks", "receive", "--port", str(port), env={"LAUREL_DATABASE_URL": url}
        )
        assert process.stdout is not None and process.stderr is not None
        assert "verifying signatures" in process.stdout.readline()
        process.terminate()
        _, err = process.communicate(timeout=10)
        return err

    first = await asyncio.to_thread(start)
    again = await asyncio.to_thread(start)

    assert f"registered webhook endpoint 1 for http://127.0.0.1:{port}/" in first
    assert f"using webhook endpoint 1 for http://127.0.0.1:{port}/" in again
    async with session_factory(engine)() as session:
        [endpoint] = (await session.scalars(select(WebhookEndpoint))).all()
        audited = (await session.scalars(select(AuditEntry))).all()
    await engine.dispose()
    assert endpoint.url == f"http://127.0.0.1:{port}/" and endpoint.enabled
    assert set(endpoint.event_types) == {t.value for t in WebhookEventType}
    assert [(a.operation, a.actor_name) for a in audited] == [
        ("webhooks receive", audit.COMMAND_LINE.name)
    ]
    assert endpoint.secret not in first + again
