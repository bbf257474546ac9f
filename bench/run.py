"""The benchmark, in one command: seed, start both servers, probe, load, check, report.

    .venv/bin/python -m bench.run [--members 100000 --entries-per-member 20 --duration 10
                                   --rounds 3 --connections 32]

See bench/README.md for what is measured and how to read the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import checks, dbstats, workloads
from bench.config import RESULTS_DIR, Database
from bench.load import Measurement, require_wrk, run_wrk
from bench.seed import SeedSize, ensure_seeded
from bench.servers import Server, start_uvicorn, stop, wait_until_ready

ORDER_PREFIX = {"laurel": "L", "raw": "R"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Laurel vs a raw Starlette + asyncpg baseline, on the same data, with wrk."
    )
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--entries-per-member", type=int, default=20)
    parser.add_argument("--reseed", action="store_true", help="seed again even if the size fits")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds a round")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up a server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--workloads", default=",".join(workloads.WORKLOADS), help="comma-separated subset"
    )
    parser.add_argument("--token-pool", type=int, default=1000, help="members with a JWT")
    parser.add_argument("--earn-pool", type=int, default=10_000, help="members earning")
    args = parser.parse_args()
    args.workloads = [w for w in args.workloads.split(",") if w]
    unknown = set(args.workloads) - set(workloads.WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    if not 1 <= args.rounds <= 20 or not 1 <= args.duration <= 300 or args.warmup > 300:
        parser.error("rounds must be 1-20, duration 1-300 s, warm-up at most 300 s")
    return args


def main() -> None:
    args = parse_args()
    require_wrk()  # before minutes of seeding
    db = Database()
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    started = time.perf_counter()
    results: dict[str, Any] = {
        "run_id": run_id,
        "config": {k: v for k, v in vars(args).items()},
        "machine": {"cpus": _cpus(), "python": platform.python_version()},
    }

    print(f"seeding {args.members:,} members x ~{args.entries_per_member} entries ...", flush=True)
    seed = asyncio.run(
        ensure_seeded(db, SeedSize(args.members, args.entries_per_member), reseed=args.reseed)
    )
    results["seed"] = seed.as_dict()
    verb = "reused (reset)" if seed.reused else "seeded"
    print(
        f"  {verb} in {seed.seconds:.1f}s (original seed {seed.original_seed_seconds:.1f}s): "
        f"{seed.members:,} members, {seed.ledger_entries:,} entries, tiers {seed.tiers}",
        flush=True,
    )
    results["seed_consistency"] = asyncio.run(checks.check_balances(db))
    print(f"  consistency: {results['seed_consistency']}", flush=True)

    creds = asyncio.run(
        workloads.make_credentials(db, dashboard_pool=args.token_pool, earn_pool=args.earn_pool)
    )
    with tempfile.TemporaryDirectory(prefix="laurel-bench-") as tmp:
        workdir = Path(tmp)
        servers = _start_servers(db, creds, workdir)
        try:
            urls = {name: server.url for name, server in servers.items()}
            results["servers"] = urls
            print("probing ...", flush=True)
            results["probe"] = checks.probe(urls, creds, run_id)
            _print_probe(results["probe"])
            measurements: list[Measurement] = []
            for workload in args.workloads:
                before = asyncio.run(checks.marks(db)) if workload == "earn" else None
                runs = _run_workload(workload, args, db, creds, servers, workdir, run_id)
                measurements += runs
                if before is not None:
                    results["earn_correctness"] = asyncio.run(_check_earn(db, before, runs, args))
                    _print_earn_check(results["earn_correctness"])
            for server in servers.values():
                if server.process.poll() is not None:
                    raise RuntimeError(f"{server.name} died:\n{server.log_tail()}")
            results["server_log_tail"] = {n: s.log_tail(40) for n, s in servers.items()}
        finally:
            for server in servers.values():
                stop(server)

    results["measurements"] = [m.as_dict() for m in measurements]
    results["summary"] = summarize(measurements, args.workloads)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    print_table(results["summary"])
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{run_id}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {path}  (total {results['total_seconds']}s)")
    problems = find_problems(results)
    if problems:
        print("\nPROBLEMS (these figures are not a valid result):")
        for problem in problems:
            print(f"  - {problem}")
        raise SystemExit(1)


def find_problems(results: dict[str, Any]) -> list[str]:
    """Everything that makes a run's figures meaningless: errors, wrong data, lost credit."""
    problems = []
    consistency = results["seed_consistency"]
    if any(v for k, v in consistency.items() if k != "members"):
        problems.append(f"seeded data inconsistent (run again with --reseed): {consistency}")
    probe = results["probe"]
    for target in workloads.TARGETS:
        if probe["dashboard"].get(target, {}).get("with_errors"):
            problems.append(f"dashboard probe errors on {target}")
        earn = probe["earn"].get(target, {})
        if earn and not earn.get("replay_returns_same_entry"):
            problems.append(f"earn probe on {target}: replay did not return the first entry")
    if probe["dashboard"].get("same_data") is False:
        problems.append("laurel and raw dashboards return different data")
    for workload, entry in results["summary"].items():
        for target in workloads.TARGETS:
            failed = entry.get(target, {}).get("failed_requests", 0)
            if failed:
                problems.append(f"{workload} on {target}: {failed} failed requests")
    earn_check = results.get("earn_correctness")
    if earn_check is not None and earn_check["foreign_purchases"]:
        problems.append(
            "another process wrote to the benchmark database during the run (purchases by "
            f"order-id prefix: {earn_check['foreign_purchases']}): load and checks are polluted"
        )
    if earn_check is not None and not earn_check["ok"]:
        problems.append("earn correctness check failed (see earn_correctness in the JSON)")
    return problems


def _start_servers(db: Database, creds: workloads.Credentials, workdir: Path) -> dict[str, Server]:
    laurel_env = {
        "LAUREL_DATABASE_URL": db.sqlalchemy_url,
        "LAUREL_ENV": "production",
        "LAUREL_JWT_SECRET": creds.jwt_secret,
        "LAUREL_SWEEP_INTERVAL_SECONDS": "0",
    }
    raw_env = {
        "BENCH_RAW_DSN": db.dsn,
        "BENCH_RAW_POOL_SIZE": "8",
        "BENCH_RAW_SERVICE_TOKEN": creds.raw_token,
    }
    servers = {
        "raw": start_uvicorn("raw", "bench.raw_app:app", env=raw_env, log_path=workdir / "raw.log"),
        "laurel": start_uvicorn(
            "laurel",
            "api.app:create_app",
            factory=True,
            env=laurel_env,
            log_path=workdir / "laurel.log",
        ),
    }
    try:
        for server in servers.values():
            wait_until_ready(server)
        wait_until_ready(servers["laurel"], path="/readyz")  # and its database
    except BaseException:
        for server in servers.values():
            stop(server)
        raise
    return servers


def _run_workload(
    workload: str,
    args: argparse.Namespace,
    db: Database,
    creds: workloads.Credentials,
    servers: dict[str, Server],
    workdir: Path,
    run_id: str,
) -> list[Measurement]:
    """Warm-up of each server, then rounds, alternating which server goes first."""
    print(f"\n{workload}: warm-up {args.warmup:g}s, {args.rounds} x {args.duration:g}s", flush=True)
    runs: list[Measurement] = []
    phases = (["warmup"] if args.warmup > 0 else []) + [
        f"round {n}" for n in range(1, args.rounds + 1)
    ]
    counters = dbstats.read(db)
    for number, phase in enumerate(phases):
        order = list(workloads.TARGETS) if number % 2 == 0 else list(reversed(workloads.TARGETS))
        for target in order:
            tag = f"{ORDER_PREFIX[target]}-{run_id}-{phase.replace(' ', '')}-{secrets.token_hex(2)}"
            data = workloads.lua_data(workload, target, creds, order_prefix=tag)
            data_file = workloads.write_lua_data(workdir / f"{workload}-{target}.lua", data)
            measurement = run_wrk(
                server=servers[target],
                workload=workload,
                phase=phase,
                script=workloads.lua_script(workload),
                data_file=data_file,
                path=data["path"],
                duration=args.warmup if phase == "warmup" else args.duration,
                connections=args.connections,
                threads=args.threads,
            )
            after = dbstats.read(db)
            measurement.db = dbstats.per_request(counters, after, measurement.requests)
            counters = after
            runs.append(measurement)
            flag = f"  FAILED {measurement.failed}" if measurement.failed else ""
            print(
                f"  {phase:<8} {target:<6} {measurement.rps:>8.0f} req/s  "
                f"p50 {measurement.p50_ms:6.1f} ms  p99 {measurement.p99_ms:7.1f} ms  "
                f"server cpu {measurement.server_cpu:.2f}  machine {measurement.machine_cpu:.0%}  "
                f"db tx/req {measurement.db['db_transactions_per_request']:.1f}  "
                f"new db conn/req {measurement.db['db_connections_per_request']:.2f}"
                f"{flag}",
                flush=True,
            )
    return runs


async def _check_earn(
    db: Database, before: checks.Marks, runs: list[Measurement], args: argparse.Namespace
) -> dict[str, Any]:
    completed: dict[str, int] = {}
    tolerance: dict[str, int] = {}
    for run in runs:
        prefix = ORDER_PREFIX[run.target]
        answered = run.requests - run.non_2xx - run.error_bodies
        completed[prefix] = completed.get(prefix, 0) + answered
        in_flight = args.connections + run.socket_errors.get("timeout", 0)
        tolerance[prefix] = tolerance.get(prefix, 0) + in_flight
    return await checks.check_earn(db, before, completed, tolerance)


# -- reporting -----------------------------------------------------------------------------------


def summarize(measurements: list[Measurement], workload_names: list[str]) -> dict[str, Any]:
    """Medians across rounds (warm-ups excluded) per workload and server, and Laurel/raw."""
    summary: dict[str, Any] = {}
    for workload in workload_names:
        per_target: dict[str, Any] = {}
        for target in workloads.TARGETS:
            rounds = [
                m
                for m in measurements
                if m.workload == workload and m.target == target and m.phase != "warmup"
            ]
            if not rounds:
                continue
            per_target[target] = {
                "rps": statistics.median(m.rps for m in rounds),
                "p50_ms": statistics.median(m.p50_ms for m in rounds),
                "p99_ms": statistics.median(m.p99_ms for m in rounds),
                "server_cpu": statistics.median(m.server_cpu for m in rounds),
                "db_transactions_per_request": statistics.median(
                    m.db["db_transactions_per_request"] for m in rounds
                ),
                "db_connections_per_request": statistics.median(
                    m.db["db_connections_per_request"] for m in rounds
                ),
                "rounds_rps": [m.rps for m in rounds],
                "failed_requests": sum(m.failed for m in rounds),
                "first_bad_body": next((m.first_bad_body for m in rounds if m.first_bad_body), ""),
            }
        entry: dict[str, Any] = dict(per_target)
        if "laurel" in per_target and "raw" in per_target:
            laurel, raw = per_target["laurel"], per_target["raw"]
            entry["laurel_over_raw"] = {
                "rps": round(laurel["rps"] / raw["rps"], 3) if raw["rps"] else None,
                "p50": round(laurel["p50_ms"] / raw["p50_ms"], 2) if raw["p50_ms"] else None,
                "p99": round(laurel["p99_ms"] / raw["p99_ms"], 2) if raw["p99_ms"] else None,
            }
        summary[workload] = entry
    return summary


def print_table(summary: dict[str, Any]) -> None:
    print(
        f"\n{'workload':<10} {'server':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'cpu':>5} {'tx/req':>6} {'conn/req':>8} {'failed':>6}  rounds (req/s)"
    )
    for workload, entry in summary.items():
        for target in workloads.TARGETS:
            row = entry.get(target)
            if row is None:
                continue
            rounds = ", ".join(f"{r:.0f}" for r in row["rounds_rps"])
            print(
                f"{workload:<10} {target:<10} {row['rps']:>8.0f} {row['p50_ms']:>8.1f} "
                f"{row['p99_ms']:>8.1f} {row['server_cpu']:>5.2f} "
                f"{row['db_transactions_per_request']:>6.1f} "
                f"{row['db_connections_per_request']:>8.2f} {row['failed_requests']:>6}  {rounds}"
            )
        ratio = entry.get("laurel_over_raw")
        if ratio:
            print(
                f"{workload:<10} {'laurel/raw':<10} {ratio['rps']:>7.2f}x "
                f"{ratio['p50']:>7.1f}x {ratio['p99']:>7.1f}x"
            )


def _print_probe(report: dict[str, Any]) -> None:
    for workload in ("dashboard", "earn"):
        for target, outcome in report[workload].items():
            if not isinstance(outcome, dict):
                continue
            bodies = [outcome] if "with_errors" in outcome else list(outcome.values())
            for part in bodies:
                if isinstance(part, dict) and part.get("with_errors"):
                    print(f"  {workload} {target}: ERROR {part['first_error_body']}", flush=True)
    same = report["dashboard"].get("same_data")
    print(f"  dashboard: laurel and raw return the same data: {same}", flush=True)
    for target, outcome in report["earn"].items():
        print(f"  earn {target}: replay returns same entry: {outcome['replay_returns_same_entry']}")


def _print_earn_check(report: dict[str, Any]) -> None:
    print(
        f"  earn correctness: {'OK' if report['ok'] else 'PROBLEMS'} - "
        f"{report['members_checked']:,} members checked, balance/lot/tier mismatches "
        f"{report['balance_mismatches']}/{report['lot_mismatches']}/{report['tier_mismatches']}, "
        f"orders credited twice {report['orders_credited_twice']}, "
        f"entries without purchase {report['entries_without_purchase']}, "
        f"credit {report['credit']}",
        flush=True,
    )


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
