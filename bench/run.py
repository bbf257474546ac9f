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
    parser.add_argument("--redeem-pool", type=int, default=10, help="hot members redeeming")
    parser.add_argument(
        "--redeem-mix",
        choices=workloads.REDEEM_MIXES,
        default="alternate",
        help="rewards redeemed: in turn (default), or only the unlimited or the stocked one",
    )
    args = parser.parse_args()
    args.workloads = [w for w in args.workloads.split(",") if w]
    unknown = set(args.workloads) - set(workloads.WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    if args.redeem_pool < 1:
        parser.error("--redeem-pool must be at least 1")
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
        workloads.make_credentials(
            db,
            dashboard_pool=args.token_pool,
            earn_pool=args.earn_pool,
            redeem_pool=args.redeem_pool if "redeem" in args.workloads else 0,
            redeem_mix=args.redeem_mix,
        )
    )
    results["redeem_setup"] = creds.redeem_rewards and {
        "hot_members": creds.redeem_members,
        "rewards": {
            "unlimited": creds.rewards.unlimited,
            "stocked": creds.rewards.stocked,
            "stock_before": creds.rewards.stock_before,
        },
        "mix": creds.rewards.mix,
        "cost": workloads.REDEEM_COST,
        "top_up": creds.rewards.top_up,
    }
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
                before = asyncio.run(checks.marks(db)) if workload != "dashboard" else None
                runs = _run_workload(workload, args, db, creds, servers, workdir, run_id)
                measurements += runs
                if before is None:
                    continue
                completed, tolerance = _answered(runs, args)
                if workload == "earn":
                    results["earn_correctness"] = asyncio.run(
                        checks.check_earn(db, before, completed, tolerance)
                    )
                    _print_earn_check(results["earn_correctness"])
                else:
                    results["redeem_correctness"] = asyncio.run(
                        checks.check_redeem(db, before, creds, completed, tolerance)
                    )
                    _print_redeem_check(results["redeem_correctness"])
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
        redeem = probe["redeem"].get(target, {})
        if redeem and not redeem.get("replay_returns_same_redemption"):
            problems.append(f"redeem probe on {target}: replay did not return the first one")
    if probe["dashboard"].get("same_data") is False:
        problems.append("laurel and raw dashboards return different data")
    if probe["redeem"].get("same_shape") is False:
        problems.append("laurel and raw redemptions answer in different shapes")
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
    redeem_check = results.get("redeem_correctness")
    if redeem_check is not None and redeem_check["foreign_redemptions"]:
        problems.append(
            "redemptions the benchmark did not ask for appeared during the run (by key prefix: "
            f"{redeem_check['foreign_redemptions']}): load and checks are polluted"
        )
    if redeem_check is not None and not redeem_check["ok"]:
        problems.append("redeem correctness check failed (see redeem_correctness in the JSON)")
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


def _answered(
    runs: list[Measurement], args: argparse.Namespace
) -> tuple[dict[str, int], dict[str, int]]:
    """Per order/key prefix: the answers without errors wrk saw, and how many requests may have
    been processed without wrk seeing the answer (in flight when a run stopped, timed out)."""
    completed: dict[str, int] = {}
    tolerance: dict[str, int] = {}
    for run in runs:
        prefix = ORDER_PREFIX[run.target]
        answered = run.requests - run.non_2xx - run.error_bodies
        completed[prefix] = completed.get(prefix, 0) + answered
        in_flight = args.connections + run.socket_errors.get("timeout", 0)
        tolerance[prefix] = tolerance.get(prefix, 0) + in_flight
    return completed, tolerance


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
    for workload in ("dashboard", "earn", "redeem"):
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
    for target, outcome in report["redeem"].items():
        if isinstance(outcome, dict):
            same = outcome["replay_returns_same_redemption"]
            print(f"  redeem {target}: replay returns same redemption: {same}")
    print(
        f"  redeem: laurel and raw answer in the same shape: {report['redeem'].get('same_shape')}"
    )


def _print_earn_check(report: dict[str, Any]) -> None:
    print(
        f"  earn correctness: {'OK' if report['ok'] else 'PROBLEMS'} - "
        f"{report['members_checked']:,} members checked, balance/lot/tier mismatches "
        f"{report['balance_mismatches']}/{report['lot_mismatches']}/{report['tier_mismatches']}, "
        f"orders credited twice {report['orders_credited_twice']}, "
        f"entries without purchase {report['entries_without_purchase']}, "
        f"entries without exactly one event {report['entries_without_one_event']}, "
        f"credit {report['credit']}",
        flush=True,
    )


def _print_redeem_check(report: dict[str, Any]) -> None:
    by_prefix = report["redemptions_by_prefix"]
    flaws = {
        name: sum(row[name] for row in by_prefix.values())
        for name in ("bad_entry_links", "without_claim", "bad_drawn", "bad_took_stock")
    }
    stock = report["stock"]
    print(
        f"  redeem correctness: {'OK' if report['ok'] else 'PROBLEMS'} - "
        f"{report['members_checked']:,} members checked, balance/lot/tier mismatches "
        f"{report['balance_mismatches']}/{report['lot_mismatches']}/{report['tier_mismatches']}, "
        f"members ever negative {report['members_ever_negative']} "
        f"(lowest balance now {report['lowest_balance']}), bad lots {report['bad_lots']}, "
        f"bad events {report['bad_events']}, entries without redemption "
        f"{report['entries_without_redemption']}, claims without redemption "
        f"{report['claims_without_redemption']}, {flaws}, stock {stock['stock_before']:,} -> "
        f"{stock['stock']:,} for {stock['took_stock']:,} redemptions "
        f"({'OK' if stock['ok'] else 'WRONG'}), credit {report['credit']}",
        flush=True,
    )


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
