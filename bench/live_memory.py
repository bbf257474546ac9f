"""Where a live subscriber's memory goes: tracemalloc snapshots of one `laurel serve` taken
with N and then 2N `pointsUpdated` subscribers open, diffed, per subscriber.

    .venv/bin/python -m bench.live_memory [--subscribers 1000] [--top 40] [--untraced]

Seeds `laurel_bench_live` as `bench.live` does (same `BENCH_LIVE_DATABASE`,
`BENCH_REDIS_URL`), serves Laurel through this module (`serve`: the server itself, with a
SIGUSR1 handler: the first signal starts tracemalloc, the next ones each write a snapshot), opens
N subscribers from client processes (`bench.live_clients`), snapshots, opens N more, snapshots
again, and prints: RSS growth per subscriber for each half, the traced growth per subscriber by
package (each allocation counted in the innermost frame of a package it passed through), and
the top source lines. Tracing makes the server several times slower (a few minutes for the
default); `--untraced` measures RSS only. Loopback only; the server and clients are stopped at
the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

PACKAGES = ("uvicorn", "websockets", "starlette", "strawberry", "graphql", "sqlalchemy")
OURS = ("api", "schema", "resolvers", "services", "models")


def serve(argv: list[str]) -> None:
    """`laurel serve` (argv), with the SIGUSR1 handler described in the module doc."""
    out = os.environ["BENCH_TRACE_OUT"]
    taken = [0]

    def on_signal(_signal: int, _frame: object) -> None:
        gc.collect()
        if not tracemalloc.is_tracing():
            tracemalloc.start(10)
        else:
            tracemalloc.take_snapshot().dump(f"{out}.{taken[0]}")
        Path(f"{out}.{taken[0]}.done").touch()
        taken[0] += 1

    signal.signal(signal.SIGUSR1, on_signal)
    from api.cli import main

    sys.argv = ["laurel", *argv]
    sys.exit(main())


def _package(filename: str, root: str) -> str | None:
    for name in PACKAGES:
        if f"/{name}/" in filename:
            return name
    if filename.startswith(root):
        top = filename[len(root) :].lstrip("/").split("/", 1)[0]
        if top in OURS:
            return f"laurel {top}"
    return None


def report(before: Path, after: Path, subscribers: int, top: int) -> None:
    old = tracemalloc.Snapshot.load(str(before))
    new = tracemalloc.Snapshot.load(str(after))
    root = str(Path(__file__).resolve().parent.parent)
    by_package: Counter[str] = Counter()
    for stat in new.compare_to(old, "traceback"):
        frames = list(stat.traceback)  # oldest first
        name = next(
            (p for f in reversed(frames) if (p := _package(f.filename, root)) is not None),
            "other",
        )
        by_package[name] += stat.size_diff
    total = sum(by_package.values())
    print(f"traced growth: {total / 1024 / subscribers:.1f} KiB a subscriber")
    for name, size in by_package.most_common():
        print(f"  {size / subscribers:8.0f} B  {name}")
    print("top lines (innermost frame):")
    for stat in new.compare_to(old, "lineno")[:top]:
        frame = stat.traceback[0]
        where = frame.filename.split("site-packages/")[-1].replace(root + "/", "")
        print(f"  {stat.size_diff / subscribers:8.0f} B  {where}:{frame.lineno}")


def _wait_for(path: Path, timeout: float = 600.0) -> None:
    """Until the server has written `path` (a snapshot of 2,000 connections takes seconds)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path} after {timeout} s")
        time.sleep(0.2)


async def measure(subscribers: int, traced: bool, top: int) -> None:
    from bench import live
    from bench.live_clients import raise_open_files_limit
    from bench.servers import stop

    raise_open_files_limit(2 * subscribers + 200)
    work = Path(tempfile.mkdtemp(prefix="laurel-live-memory-"))
    out = work / "snapshot"
    os.environ["BENCH_TRACE_OUT"] = str(out)
    live.LAUREL[:] = [sys.executable, "-m", "bench.live_memory", "serve"]
    seeded = await live.seed(2 * subscribers + 1)
    secret = os.urandom(32).hex()
    tokens = live.member_tokens(seeded.members, secret)
    target = live._laurel_target(secret, seeded.service_key)
    server = await live.start_server(target, work / "server.log")
    pid = server.process.pid
    options = live.Options(
        subscribers=subscribers,
        purchases=0,
        probes=0,
        rate=1,
        rounds=1,
        client_processes=2,
        concurrency=64,
        delivery_timeout=10,
        writers=[],
        cycles=1,
        seed=1,
        open_deadline=600,
    )
    signals = [0]

    async def snapshot() -> int:
        await live.settle(pid)
        if traced:
            os.kill(pid, signal.SIGUSR1)
            await asyncio.to_thread(_wait_for, Path(f"{out}.{signals[0]}.done"))
            signals[0] += 1
            await live.settle(pid)
        return live.rss_kib(pid)

    clients: list[live.ClientProcess] = []
    try:
        async with live.http_client(server) as http:
            last = seeded.members[-1]
            await live.warm_up(target, server, http, last, tokens[last])
        rss = [await snapshot()]
        for half in (seeded.members[:subscribers], seeded.members[subscribers:-1]):
            opened = await live.open_subscribers(server, options, half, tokens, work)
            clients += opened.clients
            if len(opened.subscribed) < len(half):
                raise RuntimeError(f"{len(opened.subscribed)} of {len(half)} subscribed")
            rss.append(await snapshot())
        print(
            f"RSS growth a subscriber: first {subscribers:,} {(rss[1] - rss[0]) / subscribers:.1f}"
            f" KiB, next {subscribers:,} {(rss[2] - rss[1]) / subscribers:.1f} KiB"
            + (" (tracing inflates RSS; the traced figures below do not)" if traced else "")
        )
        if traced:
            report(Path(f"{out}.1"), Path(f"{out}.2"), subscribers, top)
    finally:
        for client in clients:
            client.kill()
        stop(server)


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(prog="python -m bench.live_memory")
    parser.add_argument("--subscribers", type=int, default=1_000)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--untraced", action="store_true")
    args = parser.parse_args()
    asyncio.run(measure(args.subscribers, not args.untraced, args.top))


if __name__ == "__main__":
    main()
