"""Generating load with wrk and reading its results (printed by bench/lua/common.lua)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.config import LUA_DIR
from bench.servers import RssSampler, Server, cpu_seconds, machine_cpu, rss_bytes

RESULT_PREFIX = "BENCH_RESULT "


class WrkMissing(SystemExit):
    pass


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing(
            "wrk is not installed: the benchmark drives its load with wrk.\n"
            "Install it with:  apt-get install -y wrk   (Debian/Ubuntu; brew install wrk on macOS)"
        )
    return path


@dataclass(slots=True)
class Measurement:
    """One wrk run against one server."""

    target: str
    workload: str
    phase: str  # "warmup" or "round N"
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    non_2xx: int
    socket_errors: dict[str, int]
    error_bodies: int  # 2xx responses reporting GraphQL errors or userErrors
    first_bad_body: str
    server_cpu: float  # the server process's CPU use, in cores (1.0 = one core busy)
    machine_cpu: float  # the whole machine's, as a fraction of all its cores
    draw: str = ""  # how members were drawn (reads), "" for the write workloads
    rss_peak_mib: float = 0.0  # the server process's peak RSS during the run
    rss_after_mib: float = 0.0  # and a second after it
    # Laurel's member-views cache during the run (None: not Laurel, or no lookups).
    hits: int | None = None
    misses: int | None = None
    db: dict[str, Any] = field(default_factory=dict)  # PostgreSQL's counters per request

    @property
    def hit_rate(self) -> float | None:
        if self.hits is None or self.misses is None or not self.hits + self.misses:
            return None
        return self.hits / (self.hits + self.misses)

    @property
    def failed(self) -> int:
        return self.non_2xx + self.error_bodies + sum(self.socket_errors.values())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_wrk(
    *,
    server: Server,
    workload: str,
    phase: str,
    script: Path,
    data_file: Path,
    path: str,
    duration: float,
    connections: int,
    threads: int,
    timeout: float = 10.0,
    target: str | None = None,
) -> Measurement:
    """One bounded wrk run (`duration` seconds) against `server`."""
    command = [
        require_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={max(1, round(timeout))}s",
        "-s",
        str(script),
        server.url + path,
    ]
    env = {**os.environ, "BENCH_LUA_DIR": str(LUA_DIR), "BENCH_LUA_DATA": str(data_file)}
    cpu_before, (busy_before, total_before) = cpu_seconds(server.process.pid), machine_cpu()
    with RssSampler(server.process.pid) as rss:
        completed = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=duration + timeout + 30
        )
    cpu_after, (busy_after, total_after) = cpu_seconds(server.process.pid), machine_cpu()
    lines = [ln for ln in completed.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"wrk failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
        )
    result = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    time.sleep(1.0)  # what the process keeps once the load is over
    rss_after = rss_bytes(server.process.pid)
    seconds = result["duration_us"] / 1e6
    latency = result["latency_us"]
    return Measurement(
        target=target or server.name,
        workload=workload,
        phase=phase,
        requests=result["requests"],
        seconds=round(seconds, 3),
        rps=round(result["requests"] / seconds, 1),
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        mean_ms=round(latency["mean"] / 1000, 3),
        non_2xx=result["non_2xx"],
        socket_errors=result["socket_errors"],
        error_bodies=result["error_bodies"],
        first_bad_body=result["first_bad_body"],
        server_cpu=round((cpu_after - cpu_before) / seconds, 2),
        machine_cpu=round((busy_after - busy_before) / max(total_after - total_before, 1), 2),
        rss_peak_mib=round(max(rss.peak, rss_after) / 2**20, 1),
        rss_after_mib=round(rss_after / 2**20, 1),
    )
