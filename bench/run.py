"""The benchmark, in one command: seed, start both servers, probe, load, check, report.

    .venv/bin/python -m bench.run [--members 100000 --entries-per-member 20 --duration 10
                                   --rounds 3 --connections 32]

See bench/README.md for what is measured and how to read the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import checks, dbstats, pg5, workloads
from bench.config import RESULTS_DIR, Database
from bench.load import Measurement, require_wrk, run_wrk
from bench.seed import SeedSize, ensure_seeded
from bench.servers import Server, member_view_counters, start_uvicorn, stop, wait_until_ready
from models.engine import create_engine, read_session_factory
from services.leaderboards import LeaderboardStore, Period, connect_redis

# Laurel-with-Redis and the raw Redis endpoint share it, under a key prefix of the run's own.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

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
    parser.add_argument(
        "--draw",
        default="uniform",
        help="comma-separated draws of members for the reads (dashboard, leaderboard): uniform "
        "(any member alike, the default), zipf (skewed, s=1.1, over a random permutation), hot "
        "(uniform over the first --hot-pool members: the old bench, its answers cached)",
    )
    parser.add_argument(
        "--hot-pool",
        "--token-pool",
        dest="hot_pool",
        type=int,
        default=1000,
        help="members of the hot draw",
    )
    parser.add_argument("--no-pg5", action="store_true", help="leave PostGraphile 5 out")
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
    args.draw = [d for d in args.draw.split(",") if d]
    if not args.draw or set(args.draw) - set(workloads.DRAWS):
        parser.error(f"--draw: a comma-separated subset of {', '.join(workloads.DRAWS)}")
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
            dashboard_pool=args.hot_pool,
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
    reads = [w for w in args.workloads if w in workloads.READS]
    pg5_wanted = bool(reads) and not args.no_pg5
    if pg5_wanted:
        pg5.ensure_installed()
        asyncio.run(pg5.prepare_schema(db))
    prefix = f"bench-{run_id}:"  # Laurel's Redis keys for this run, deleted at the end
    with tempfile.TemporaryDirectory(prefix="laurel-bench-") as tmp:
        workdir = Path(tmp)
        files = workloads.subject_files(workdir, creds) if reads else {}
        servers = _start_servers(
            db,
            creds,
            workdir,
            redis_prefix=prefix if "leaderboard" in args.workloads else None,
            pg5_wanted=pg5_wanted,
        )
        try:
            urls = {name: server.url for name, server in servers.items()}
            results["servers"] = urls
            if "laurel-redis" in servers:
                results["board_built"] = asyncio.run(build_board(db, prefix))
                print(f"  Redis board built: {results['board_built']}", flush=True)
            print("probing ...", flush=True)
            results["probe"] = checks.probe({t: urls[t] for t in workloads.TARGETS}, creds, run_id)
            _print_probe(results["probe"])
            if reads:
                read_urls = {
                    target: urls[workloads.server_of(target)]
                    for workload in reads
                    for target in workloads.WORKLOAD_TARGETS[workload]
                    if workloads.server_of(target) in urls
                }
                lines = {k: v.read_text().split() for k, v in files.items()}
                results["probe_reads"] = checks.probe_reads(read_urls, creds, lines)
                _print_probe_reads(results["probe_reads"])
            measurements: list[Measurement] = []
            for workload in args.workloads:
                before = asyncio.run(checks.marks(db)) if workload not in workloads.READS else None
                runs = _run_workload(workload, args, db, servers, workdir, run_id, creds, files)
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
            if "leaderboard" in args.workloads:
                asyncio.run(delete_keys(prefix))

    results["measurements"] = [m.as_dict() for m in measurements]
    results["summary"] = summarize(measurements)
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
    reads = results.get("probe_reads") or {}
    for workload in workloads.READS:
        for target, error in (reads.get(workload) or {}).get("errors", {}).items():
            problems.append(f"{workload} probe on {target}: {error[:300]}")
        for target, same in (reads.get(workload) or {}).get("same_data", {}).items():
            if not same:
                problems.append(f"{workload}: {target} does not answer the same numbers as Laurel")
    if reads.get("pg5_read_only") is False:
        problems.append("PostGraphile 5's transactions are not read-only")
    for key, entry in results["summary"].items():
        for target, row in entry["targets"].items():
            if row["failed_requests"]:
                problems.append(f"{key} on {target}: {row['failed_requests']} failed requests")
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


def _start_servers(
    db: Database,
    creds: workloads.Credentials,
    workdir: Path,
    *,
    redis_prefix: str | None,
    pg5_wanted: bool,
) -> dict[str, Server]:
    """raw and laurel (no Redis, as a default deployment) always; with the leaderboard,
    laurel-redis (Redis configured, `redis_prefix` its keys) and the raw app reading its board;
    pg5 with the reads."""
    laurel_env = {
        "LAUREL_DATABASE_URL": db.sqlalchemy_url,
        "LAUREL_ENV": "production",
        "LAUREL_JWT_SECRET": creds.jwt_secret,
        "LAUREL_SWEEP_INTERVAL_SECONDS": "0",
        # Counted as ever, never reached: the Zipf draw sends its first member ~9% of the
        # requests (500 a second), which the default 12,000 a minute refuses.
        "LAUREL_RATE_LIMIT_MEMBER": "1000000/minute",
    }
    raw_env = {
        "BENCH_RAW_DSN": db.dsn,
        "BENCH_RAW_POOL_SIZE": "8",
        "BENCH_RAW_SERVICE_TOKEN": creds.raw_token,
    }
    if redis_prefix is not None:
        raw_env["BENCH_RAW_REDIS_URL"] = REDIS_URL
        raw_env["BENCH_RAW_BOARD_KEY"] = f"{redis_prefix}lb:board:ALL_TIME"
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
    if redis_prefix is not None:
        servers["laurel-redis"] = start_uvicorn(
            "laurel-redis",
            "api.app:create_app",
            factory=True,
            env={**laurel_env, "LAUREL_REDIS_URL": REDIS_URL, "LAUREL_REDIS_PREFIX": redis_prefix},
            log_path=workdir / "laurel-redis.log",
        )
    if pg5_wanted:
        servers["pg5"] = pg5.start(db, log_path=workdir / "pg5.log")
    try:
        for server in servers.values():
            wait_until_ready(server)
        for name in ("laurel", "laurel-redis"):
            if name in servers:
                wait_until_ready(servers[name], path="/readyz")  # and its database (and Redis)
    except BaseException:
        for server in servers.values():
            stop(server)
        raise
    return servers


async def build_board(db: Database, prefix: str) -> int:
    """Laurel's all-time board in Redis, built as `laurel leaderboards rebuild` builds it:
    members ranked."""
    engine = create_engine(db.sqlalchemy_url, pool_size=1)
    redis = connect_redis(REDIS_URL, timeout=30.0)
    try:
        store = LeaderboardStore(redis, prefix=prefix)
        now = datetime.now(UTC)
        return await store.rebuild(read_session_factory(engine), Period.ALL_TIME, now)
    finally:
        await redis.aclose()
        await engine.dispose()


async def delete_keys(prefix: str) -> None:
    redis = connect_redis(REDIS_URL, timeout=30.0)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await redis.delete(*keys[start : start + 1000])
    finally:
        await redis.aclose()


def _run_workload(
    workload: str,
    args: argparse.Namespace,
    db: Database,
    servers: dict[str, Server],
    workdir: Path,
    run_id: str,
    creds: workloads.Credentials,
    files: dict[str, Path],
) -> list[Measurement]:
    """Per draw (reads) : a warm-up of each target, then rounds, alternating the order."""
    targets = [t for t in workloads.WORKLOAD_TARGETS[workload] if workloads.server_of(t) in servers]
    runs: list[Measurement] = []
    for draw in args.draw if workload in workloads.READS else [""]:
        label = f"{workload} ({draw})" if draw else workload
        print(
            f"\n{label}: warm-up {args.warmup:g}s, {args.rounds} x {args.duration:g}s", flush=True
        )
        phases = (["warmup"] if args.warmup > 0 else []) + [
            f"round {n}" for n in range(1, args.rounds + 1)
        ]
        counters = dbstats.read(db)
        for number, phase in enumerate(phases):
            order = targets if number % 2 == 0 else list(reversed(targets))
            for target in order:
                server = servers[workloads.server_of(target)]
                if draw:
                    data = workloads.member_lua_data(
                        workload, target, files, draw=draw, hot=args.hot_pool
                    )
                else:
                    tag = f"{ORDER_PREFIX[target]}-{run_id}-{phase.replace(' ', '')}-"
                    data = workloads.lua_data(
                        workload, target, creds, order_prefix=tag + secrets.token_hex(2)
                    )
                data_file = workloads.write_lua_data(workdir / f"{workload}-{target}.lua", data)
                views_before = _views(server, target)
                measurement = run_wrk(
                    server=server,
                    target=target,
                    workload=workload,
                    phase=phase,
                    script=workloads.lua_script(workload),
                    data_file=data_file,
                    path=data["path"],
                    duration=args.warmup if phase == "warmup" else args.duration,
                    connections=args.connections,
                    threads=args.threads,
                )
                measurement.draw = draw
                views_after = _views(server, target)
                if views_before is not None and views_after is not None:
                    measurement.hits = round(views_after[0] - views_before[0])
                    measurement.misses = round(views_after[1] - views_before[1])
                after = dbstats.read(db)
                measurement.db = dbstats.per_request(counters, after, measurement.requests)
                counters = after
                runs.append(measurement)
                flag = f"  FAILED {measurement.failed}" if measurement.failed else ""
                rate = measurement.hit_rate
                print(
                    f"  {phase:<8} {target:<12} {measurement.rps:>8.0f} req/s  "
                    f"p50 {measurement.p50_ms:6.1f} ms  p99 {measurement.p99_ms:7.1f} ms  "
                    f"cpu {measurement.server_cpu:.2f}  machine {measurement.machine_cpu:.0%}  "
                    f"hit {'-' if rate is None else f'{rate:.0%}'}  "
                    f"rss {measurement.rss_peak_mib:.0f} MiB  "
                    f"tx/req {measurement.db['db_transactions_per_request']:.1f}  "
                    f"conn/req {measurement.db['db_connections_per_request']:.2f}"
                    f"{flag}",
                    flush=True,
                )
    return runs


def _views(server: Server, target: str) -> tuple[float, float] | None:
    return member_view_counters(server.url) if workloads.is_laurel(target) else None


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


def summarize(measurements: list[Measurement]) -> dict[str, Any]:
    """Per workload and draw ("dashboard/uniform", "earn"): medians across rounds (warm-ups
    excluded) per target, the peak RSS of all rounds, the hit rate of all rounds together, and
    Laurel's ratios to each baseline."""
    summary: dict[str, Any] = {}
    keys = list(dict.fromkeys((m.workload, m.draw) for m in measurements))
    for workload, draw in keys:
        per_target: dict[str, Any] = {}
        for target in workloads.WORKLOAD_TARGETS[workload]:
            rounds = [
                m
                for m in measurements
                if (m.workload, m.draw, m.target) == (workload, draw, target)
                and m.phase != "warmup"
            ]
            if not rounds:
                continue
            hits = sum(m.hits or 0 for m in rounds)
            looked = hits + sum(m.misses or 0 for m in rounds)
            per_target[target] = {
                "rps": statistics.median(m.rps for m in rounds),
                "p50_ms": statistics.median(m.p50_ms for m in rounds),
                "p99_ms": statistics.median(m.p99_ms for m in rounds),
                "server_cpu": statistics.median(m.server_cpu for m in rounds),
                "hit_rate": hits / looked if looked else None,
                "rss_peak_mib": max(m.rss_peak_mib for m in rounds),
                "rss_after_mib": rounds[-1].rss_after_mib,
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
        ratios = {}
        for laurel, base in workloads.RATIOS[workload]:
            if laurel in per_target and base in per_target:
                a, b = per_target[laurel], per_target[base]
                ratios[f"{laurel}/{base}"] = {
                    "rps": round(a["rps"] / b["rps"], 3) if b["rps"] else None,
                    "p50": round(a["p50_ms"] / b["p50_ms"], 2) if b["p50_ms"] else None,
                    "p99": round(a["p99_ms"] / b["p99_ms"], 2) if b["p99_ms"] else None,
                }
        key = f"{workload}/{draw}" if draw else workload
        summary[key] = {"targets": per_target, "ratios": ratios}
    return summary


def print_table(summary: dict[str, Any]) -> None:
    print(
        f"\n{'workload':<22} {'server':<13} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'cpu':>5} {'hit':>5} {'rss MiB':>8} {'tx/req':>6} {'failed':>6}  rounds (req/s)"
    )
    for key, entry in summary.items():
        for target, row in entry["targets"].items():
            rounds = ", ".join(f"{r:.0f}" for r in row["rounds_rps"])
            rate = "-" if row["hit_rate"] is None else f"{row['hit_rate']:.0%}"
            print(
                f"{key:<22} {target:<13} {row['rps']:>8.0f} {row['p50_ms']:>8.1f} "
                f"{row['p99_ms']:>8.1f} {row['server_cpu']:>5.2f} {rate:>5} "
                f"{row['rss_peak_mib']:>8.0f} {row['db_transactions_per_request']:>6.1f} "
                f"{row['failed_requests']:>6}  {rounds}"
            )
        for name, ratio in entry["ratios"].items():
            print(
                f"{key:<22} {name:<13} {ratio['rps']:>7.2f}x {ratio['p50']:>7.1f}x "
                f"{ratio['p99']:>7.1f}x"
            )


def _print_probe_reads(report: dict[str, Any]) -> None:
    for workload in workloads.READS:
        entry = report.get(workload)
        if entry is None:
            continue
        for target, error in entry["errors"].items():
            print(f"  {workload} {target}: ERROR {error[:500]}", flush=True)
        same = ", ".join(f"{t} {'yes' if ok else 'NO'}" for t, ok in entry["same_data"].items())
        print(f"  {workload}: same numbers as Laurel: {same}", flush=True)
    if "pg5_read_only" in report:
        print(f"  pg5 read-only: {report['pg5_read_only']}", flush=True)


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
