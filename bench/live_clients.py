"""The two halves of `bench.live` that run in processes of their own, kept light (no Laurel
import): the WebSocket subscriber clients, and the raw baseline server.

    python -m bench.live_clients client JOB.json   # driven over stdin/stdout by bench.live
    python -m bench.live_clients raw-server --port P

**Client**: opens one WebSocket per member of its job with the `websockets` library, speaking
graphql-transport-ws by hand (`connection_init` with `{"authorization": "Bearer <JWT>"}`,
`connection_ack`, then one `subscribe`), at most `concurrency` handshakes at a time, no
compression, no client pings (the server's pings are answered by the library). Every `next`
message is recorded as (member, transaction reference, time.monotonic() on arrival):
CLOCK_MONOTONIC is one clock for every process of the machine, so the driver compares it with
its own send and response times. It prints one JSON line when every connection is open (or
has failed), then answers commands read from stdin, one JSON object a line:
`{"cmd": "count"}`, `{"cmd": "collect"}` (the receipts) and `{"cmd": "stop"}` (closes every
socket and exits).

**Raw baseline** (`create_raw_app`): Starlette + uvicorn with Laurel's options (uvloop,
httptools, per-message deflate off) and uvicorn's stock sans-I/O WebSocket protocol (Laurel
serves with its leaner subclass, `api.ws_protocol`), asyncpg and PostgreSQL
LISTEN/NOTIFY, and nothing else. It speaks the same subset of graphql-transport-ws (HS256
JWT checked in `connection_init`, `connection_ack`, `subscribe`, `next`), keeps a dict of
member id -> open subscriptions, and one LISTEN connection. `POST /purchase` runs one
transaction: insert an event row and add to the member's balance (one statement), then
`pg_notify` with the payload; on COMMIT PostgreSQL hands the notification to the listener,
which sends `next` to that member's sockets. So it pays for a commit and a database round
trip to deliver, as Laurel does, but reads nothing back and builds no GraphQL result.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson

PROTOCOL = "graphql-transport-ws"
RAW_CHANNEL = "laurel_bench_live"
# What api.cli.UVICORN_OPTIONS sets for `laurel serve` but the WebSocket protocol (uvicorn's
# own, where Laurel has a leaner subclass); bench.live shows where they differ.
RAW_UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "ws": "websockets-sansio",
    "ws_per_message_deflate": False,
    "lifespan": "on",
    "access_log": False,
}


def raise_open_files_limit(needed: int = 0) -> int:
    """The soft limit on open files raised to the hard one, and the hard one to `needed` when
    it is lower and the process may (root); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if hard < needed:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            hard = needed
    if soft == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------- the subscriber client


@dataclass
class ClientJob:
    url: str
    members: list[tuple[int, str]]  # (member id, bearer credential)
    query: str
    concurrency: int = 64
    open_timeout: float = 30.0  # one connection: TCP + HTTP upgrade, then the ack
    open_deadline: float = 150.0  # all of them

    def dump(self, path: Path) -> None:
        path.write_bytes(orjson.dumps(self.__dict__))

    @classmethod
    def load(cls, path: Path) -> ClientJob:
        data = orjson.loads(path.read_bytes())
        data["members"] = [(int(m), str(t)) for m, t in data["members"]]
        return cls(**data)


@dataclass
class ClientState:
    connected: int = 0
    acked: int = 0
    subscribed: list[int] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    receipts: list[tuple[int, str, float]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # first few odd messages, verbatim
    unexpected_count: int = 0
    closed_early: Counter[str] = field(default_factory=Counter)  # close codes, while measuring
    stopping: bool = False


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0][:120] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def _read(ws: Any, member_id: int, state: ClientState) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        async for raw in ws:
            arrived = time.monotonic()
            message = orjson.loads(raw)
            kind = message.get("type")
            if kind == "next":
                try:
                    reference = message["payload"]["data"]["pointsUpdated"]["transaction"][
                        "reference"
                    ]
                except (KeyError, TypeError):
                    reference = None
                if isinstance(reference, str):
                    state.receipts.append((member_id, reference, arrived))
                    continue
            if kind == "ping":
                await ws.send('{"type":"pong"}')
                continue
            state.unexpected_count += 1
            if len(state.unexpected) < 5:
                state.unexpected.append(
                    raw if isinstance(raw, str) else raw.decode(errors="replace")
                )
    except ConnectionClosed:
        pass
    except Exception as error:  # a bad frame: counted, the others go on
        state.failures[f"read: {_short(error)}"] += 1
    if not state.stopping:
        state.closed_early[str(ws.close_code)] += 1


async def _open(
    job: ClientJob,
    member_id: int,
    token: str,
    gate: asyncio.Semaphore,
    state: ClientState,
    sockets: list[Any],
    readers: set[asyncio.Task[None]],
) -> None:
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    init = orjson.dumps(
        {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
    )
    subscribe = orjson.dumps({"id": "1", "type": "subscribe", "payload": {"query": job.query}})
    async with gate:
        try:
            ws = await connect(
                job.url,
                subprotocols=[Subprotocol(PROTOCOL)],
                compression=None,
                proxy=None,
                ping_interval=None,
                open_timeout=job.open_timeout,
                close_timeout=5,
            )
        except Exception as error:
            state.failures[f"connect: {_short(error)}"] += 1
            return
        state.connected += 1
        sockets.append(ws)
        try:
            await ws.send(init.decode())
            reply = orjson.loads(await asyncio.wait_for(ws.recv(), timeout=job.open_timeout))
            if reply.get("type") != "connection_ack":
                state.failures[f"no ack: {str(reply)[:100]}"] += 1
                return
            state.acked += 1
            await ws.send(subscribe.decode())
        except Exception as error:
            state.failures[f"handshake: {_short(error)}"] += 1
            return
        state.subscribed.append(member_id)
        reader = asyncio.create_task(_read(ws, member_id, state))
        readers.add(reader)
        reader.add_done_callback(readers.discard)


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(message).decode() + "\n")
    sys.stdout.flush()


async def run_client(job: ClientJob) -> None:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    state = ClientState()
    sockets: list[Any] = []
    readers: set[asyncio.Task[None]] = set()
    gate = asyncio.Semaphore(job.concurrency)
    began = time.monotonic()
    opening = [
        asyncio.create_task(_open(job, m, t, gate, state, sockets, readers)) for m, t in job.members
    ]
    _, late = await asyncio.wait(opening, timeout=job.open_deadline)
    for task in late:
        task.cancel()
    if late:
        state.failures["open deadline passed"] += len(late)
    _emit(
        {
            "event": "opened",
            "seconds": time.monotonic() - began,
            "requested": len(job.members),
            "connected": state.connected,
            "acked": state.acked,
            "subscribed": state.subscribed,
            "failures": dict(state.failures),
        }
    )
    while line := await commands.readline():
        command = orjson.loads(line).get("cmd")
        if command == "count":
            _emit({"count": len(state.receipts)})
        elif command == "collect":
            _emit(
                {
                    "receipts": state.receipts,
                    "unexpected": state.unexpected,
                    "unexpected_count": state.unexpected_count,
                    "closed_early": dict(state.closed_early),
                    "failures": dict(state.failures),
                    "open": sum(1 for ws in sockets if ws.close_code is None),
                }
            )
        elif command == "stop":
            break
    state.stopping = True
    began = time.monotonic()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True), timeout=30
        )
    for reader in list(readers):
        reader.cancel()
    _emit({"event": "stopped", "seconds": time.monotonic() - began})


# ---------------------------------------------------------------- the raw baseline


def _member_of(token: str, secret: str) -> int | None:
    import jwt

    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp"]})
        subject = str(claims["sub"])
        raw = base64.urlsafe_b64decode(subject + "=" * (-len(subject) % 4)).decode()
    except (jwt.PyJWTError, KeyError, ValueError):
        return None
    kind, _, pk = raw.partition(":")
    return int(pk) if kind == "Member" and pk.isdigit() else None


def create_raw_app() -> Any:
    """The baseline ASGI app (see the module doc); reads BENCH_LIVE_DSN, BENCH_LIVE_JWT_SECRET."""
    import asyncpg
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    dsn = os.environ["BENCH_LIVE_DSN"]
    secret = os.environ["BENCH_LIVE_JWT_SECRET"]
    by_member: dict[int, dict[WebSocket, str]] = {}
    sending: set[asyncio.Task[None]] = set()
    pool: Any = None

    def notified(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
        member, _, body = payload.partition("|")
        for ws, operation in by_member.get(int(member), {}).items():
            message = (
                '{"id":' + json.dumps(operation) + ',"type":"next","payload":{"data":'
                '{"pointsUpdated":' + body + "}}}"
            )
            task = asyncio.create_task(ws.send_text(message))
            sending.add(task)
            task.add_done_callback(sending.discard)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        nonlocal pool
        pool = await asyncpg.create_pool(dsn, min_size=8, max_size=8)
        listener = await asyncpg.connect(dsn)
        await listener.add_listener(RAW_CHANNEL, notified)
        try:
            yield
        finally:
            await listener.close()
            await pool.close()

    async def purchase(request: Request) -> Response:
        body = orjson.loads(await request.body())
        member, order, points = int(body["memberId"]), str(body["orderId"]), int(body["points"])
        async with pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                """
                WITH e AS (INSERT INTO raw_live_events (member_id, order_id, points)
                           VALUES ($1, $2, $3) RETURNING id),
                     b AS (INSERT INTO raw_live_balances AS b (member_id, available)
                           VALUES ($1, $3) ON CONFLICT (member_id)
                           DO UPDATE SET available = b.available + EXCLUDED.available
                           RETURNING available)
                SELECT e.id, b.available FROM e, b
                """,
                member,
                order,
                points,
            )
            update = {
                "transaction": {"reference": order, "points": points},
                "balance": {"available": row["available"]},
            }
            await connection.execute(
                "SELECT pg_notify($1, $2)", RAW_CHANNEL, f"{member}|{orjson.dumps(update).decode()}"
            )
        return Response(orjson.dumps({"id": row["id"]}), media_type="application/json")

    async def healthz(_: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def live(ws: WebSocket) -> None:
        if PROTOCOL not in ws.scope.get("subprotocols", []):
            await ws.close(code=4406)
            return
        await ws.accept(subprotocol=PROTOCOL)
        member: int | None = None
        try:
            init = orjson.loads(await asyncio.wait_for(ws.receive_text(), timeout=5))
            authorization = str((init.get("payload") or {}).get("authorization", ""))
            scheme, _, token = authorization.partition(" ")
            member = _member_of(token, secret) if scheme.lower() == "bearer" else None
            if init.get("type") != "connection_init" or member is None:
                await ws.close(code=4403)
                return
            await ws.send_text('{"type":"connection_ack"}')
            while True:
                message = orjson.loads(await ws.receive_text())
                kind = message.get("type")
                if kind == "subscribe":
                    by_member.setdefault(member, {})[ws] = str(message["id"])
                elif kind == "complete":
                    by_member.get(member, {}).pop(ws, None)
                elif kind == "ping":
                    await ws.send_text('{"type":"pong"}')
        except (WebSocketDisconnect, TimeoutError, RuntimeError, ValueError):
            pass
        finally:
            if member is not None:
                mine = by_member.get(member)
                if mine is not None:
                    mine.pop(ws, None)
                    if not mine:
                        del by_member[member]

    return Starlette(
        routes=[
            Route("/purchase", purchase, methods=["POST"]),
            Route("/healthz", healthz),
            WebSocketRoute("/graphql", live),
        ],
        lifespan=lifespan,
    )


# ---------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.live_clients")
    commands = parser.add_subparsers(dest="command", required=True)
    client = commands.add_parser("client")
    client.add_argument("job", type=Path)
    raw = commands.add_parser("raw-server")
    raw.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    raise_open_files_limit()
    import uvloop

    if args.command == "client":
        uvloop.run(run_client(ClientJob.load(cast(Path, args.job))))
        return
    import uvicorn

    uvicorn.run(
        "bench.live_clients:create_raw_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,  # uvicorn's default log level, as `laurel serve` has
        **RAW_UVICORN_OPTIONS,
    )


if __name__ == "__main__":
    main()
