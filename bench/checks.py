"""Making sure a fast answer is a right one: probes before the load, ledger checks after it.

* Probes (httpx, before any load): the dashboard as a few members from both servers, which
  must answer without errors and with the same data; an earn on each, then its replay, which
  must return the same entry (idempotency); a redemption on each, then its replay, which must
  return the same redemption. Error bodies are kept verbatim.
* Read probes (`probe_reads`): the dashboard and the leaderboard as a few members of the
  population from every target that serves them (Laurel with and without Redis, the raw
  endpoints, PostGraphile 5), each answer brought to one form (`_dashboard`, `_board`) and
  compared with Laurel's: the same numbers or the run is invalid. The raw Redis endpoint has
  no names and no competition rank (ZREVRANK is a position), so it is compared with the raw
  SQL endpoint: the same top (member ids, points) and total, and a position at or after the
  member's rank. PostGraphile must also report its transactions read-only.
* Ledger checks (SQL, after the earn workload): every purchase the run created has exactly one
  PURCHASE entry of its member, order and points, and its idempotency claim (which, if it
  names an entry, names that one), and every such entry exactly one POINTS_UPDATED event;
  no PURCHASE entry lacks its purchase; every member touched has cached balances, lots and
  tier equal to what its entries say; the purchases each server created match the requests
  wrk saw completed (no lost credit, no double credit).
* Ledger checks after the redeem workload: every redemption has exactly one REDEMPTION entry
  (its member, points, reference), one POINTS_UPDATED event whose balances are the ledger's at
  that entry, and its idempotency claim; no REDEMPTION entry or claim lacks its redemption; the
  points drawn add up; the hot members' balances never went negative (running sums in entry
  order, lots, cached balances) and their caches equal their entries; the stocked reward lost
  exactly one unit per redemption that took stock; the redemptions each server created match
  the requests wrk saw completed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import workloads
from bench.config import Database
from models import QUALIFYING_KINDS
from schema.ids import encode_id

PROBE_MEMBERS = 5
MAX_BODY = 4000


# -- probes ------------------------------------------------------------------------------------


def probe(urls: dict[str, str], creds: workloads.Credentials, run_id: str) -> dict[str, Any]:
    """Single requests to every server before the load; returns what each answered."""
    report: dict[str, Any] = {"dashboard": {}, "earn": {}, "redeem": {}}
    with httpx.Client(timeout=30.0) as client:
        answers: dict[str, list[Any]] = {}
        for target, url in urls.items():
            outcomes = []
            for index in range(min(PROBE_MEMBERS, len(creds.dashboard_members))):
                path, headers = workloads.dashboard_request(target, creds, index)
                response = client.post(
                    url + path,
                    content=workloads.dashboard_body(target),
                    headers={**headers, "Content-Type": "application/json"},
                )
                outcomes.append(_outcome(response))
            answers[target] = [o.get("data") for o in outcomes]
            report["dashboard"][target] = _summarize(outcomes)
        if len(answers) == 2:
            report["dashboard"]["same_data"] = answers["laurel"] == answers["raw"]
            if not report["dashboard"]["same_data"]:
                report["dashboard"]["laurel_first"] = answers["laurel"][0]
                report["dashboard"]["raw_first"] = answers["raw"][0]

        member = creds.earn_members[0]
        for target, url in urls.items():
            order_id = f"probe-{run_id}-{target}"
            path, headers, body = workloads.earn_request(target, creds, member, order_id, 42.5)
            headers = {**headers, "Content-Type": "application/json"}
            first = _outcome(client.post(url + path, content=body, headers=headers))
            replay = _outcome(client.post(url + path, content=body, headers=headers))
            first_id = _transaction_id(first)
            report["earn"][target] = {
                "first": _summarize([first]),
                "replay": _summarize([replay]),
                "replay_returns_same_entry": first_id is not None
                and first_id == _transaction_id(replay),
            }

        # The first hot member, the stocked reward: the guarded decrement, then a replay.
        for target, url in urls.items() if creds.redeem_rewards else ():
            key = f"probe-{run_id}-{target}"
            path, headers, body = workloads.redeem_request(
                target, creds, 0, creds.rewards.stocked, key
            )
            headers = {**headers, "Content-Type": "application/json"}
            first = _outcome(client.post(url + path, content=body, headers=headers))
            replay = _outcome(client.post(url + path, content=body, headers=headers))
            first_redemption = _redemption(first)
            report["redeem"][target] = {
                "first": _summarize([first]),
                "replay": _summarize([replay]),
                "replay_returns_same_redemption": first_redemption is not None
                and first_redemption == _redemption(replay),
                "answer": first["data"],
            }
        if len(report["redeem"]) == 2:
            report["redeem"]["same_shape"] = _shape(report["redeem"]["laurel"]["answer"]) == (
                _shape(report["redeem"]["raw"]["answer"])
            )
    return report


def probe_reads(
    urls: dict[str, str], creds: workloads.Credentials, files: dict[str, list[str]]
) -> dict[str, Any]:
    """The reads (dashboard, leaderboard) as PROBE_MEMBERS members of the population, from
    every target in `urls` (target -> server url), compared with Laurel's answers."""
    members = creds.members[:PROBE_MEMBERS]
    tokens = dict(zip(creds.members, files["token"], strict=True))
    report: dict[str, Any] = {}
    with httpx.Client(timeout=30.0) as client:
        for workload in workloads.READS:
            normalize = _dashboard if workload == "dashboard" else _board
            targets = [t for t in workloads.WORKLOAD_TARGETS[workload] if t in urls]
            if not any(workloads.is_laurel(t) for t in targets):
                continue  # the workload is not in this run
            answers: dict[str, list[Any]] = {t: [] for t in targets}
            errors: dict[str, str] = {}
            for pk in members:
                for target in targets:
                    data = lua_request(
                        workloads.member_lua_data(
                            workload,
                            target,
                            {"token": Path("-"), "pk": Path("-")},
                            draw="uniform",
                            hot=1,
                        ),
                        tokens[pk] if workloads.is_laurel(target) else str(pk),
                    )
                    response = client.post(urls[target] + data[0], headers=data[1], content=data[2])
                    try:
                        body = response.json()
                    except ValueError:
                        body = None
                    if (
                        response.status_code != 200
                        or not isinstance(body, dict)
                        or ("errors" in body)
                    ):
                        errors.setdefault(
                            target, f"{response.status_code} {response.text[:MAX_BODY]}"
                        )
                        answers[target].append(None)
                        continue
                    answers[target].append(normalize(target, body))
            laurel = next(t for t in targets if workloads.is_laurel(t))
            same = {
                t: [_without_ids(a) for a in answers[t]] == answers[laurel]
                for t in targets
                if t != "raw-redis"
            }
            if "raw-redis" in answers and "raw-sql" in answers:
                same["raw-redis"] = all(
                    _redis_agrees(r, s)
                    for r, s in zip(answers["raw-redis"], answers["raw-sql"], strict=True)
                )
            report[workload] = {
                "errors": errors,
                "same_data": same,
                "answers": {t: answers[t][:1] for t in targets},
            }
        if "pg5" in urls:
            body = client.post(
                urls["pg5"] + "/graphql", json={"query": "{ benchPg5ReadOnly }"}
            ).json()
            report["pg5_read_only"] = (body.get("data") or {}).get("benchPg5ReadOnly") == "on"
    return report


def lua_request(data: dict[str, Any], subject: str) -> tuple[str, dict[str, str], str]:
    """(path, headers, body) as member.lua builds them from its data for one subject."""
    headers = {"Content-Type": "application/json"}
    if data["header_format"]:
        headers["Authorization"] = data["header_format"].replace("%s", subject)
    body = data["body_format"]
    if data["body_has_subject"]:
        body = body.replace('"%s"', f'"{subject}"').replace("%%", "%")
    return data["path"], headers, body


def _instant(value: str) -> str:
    return datetime.fromisoformat(value).astimezone(UTC).isoformat()


def _dashboard(target: str, body: dict[str, Any]) -> Any:
    """Any target's dashboard in Laurel's form."""
    data = body.get("data") or {}
    if target != "pg5":
        me = data.get("me")
        for edge in (me or {}).get("transactions", {}).get("edges", []):
            edge["node"]["createdAt"] = _instant(edge["node"]["createdAt"])
        return me
    member = data.get("memberByRowId")
    if member is None:
        return None
    tier = member["tierByTierId"]
    above = [
        t["threshold"] for t in data["allTiers"]["nodes"] if t["threshold"] > tier["threshold"]
    ]
    return {
        "balance": {"available": member["available"], "pending": member["pending"]},
        "tier": {"name": tier["name"]},
        "tierProgress": {
            "pointsToNext": max(above[0] - member["qualifyingPoints"], 0) if above else None
        },
        "transactions": {
            "edges": [
                {
                    "node": {
                        "id": encode_id("PointsTransaction", int(e["rowId"])),
                        "kind": e["kind"],
                        "points": e["points"],
                        "createdAt": _instant(e["createdAt"]),
                        "description": e["description"],
                    }
                }
                for e in member["ledgerEntriesByMemberId"]["nodes"]
            ]
        },
    }


def _board(target: str, body: dict[str, Any]) -> Any:
    """Any target's leaderboard as {entries: [(rank, name, points)], me, total}; the raw Redis
    endpoint's as {top: [(member id, points)], position, total}."""
    if target == "raw-redis":
        me = body["me"]
        return {
            "top": [(e["memberId"], e["points"]) for e in body["entries"]],
            "position": me and me["position"],
            "total": body["totalRanked"],
        }
    if target == "raw-sql":
        entries, me, total = body["entries"], body["me"], body["totalRanked"]
    elif target == "pg5":
        data = body["data"]
        entries = data["benchPg5LeaderboardTop"]["nodes"]
        me = data["benchPg5LeaderboardMe"]
        me = me if me and me.get("memberId") is not None else None
        total = data["benchPg5LeaderboardTotal"]
    else:
        board = body["data"]["leaderboard"]
        entries, me, total = board["entries"], board["me"], board["totalRanked"]
    shaped: dict[str, Any] = {
        "entries": [(e["rank"], e["displayName"], e["points"]) for e in entries],
        "me": me and (me["rank"], me["displayName"], me["points"]),
        "total": total,
    }
    if target == "raw-sql":  # what the Redis endpoint is compared with
        shaped["ids"] = [(e["memberId"], e["points"]) for e in entries]
    return shaped


def _without_ids(answer: Any) -> Any:
    if isinstance(answer, dict) and "ids" in answer:
        return {k: v for k, v in answer.items() if k != "ids"}
    return answer


def _redis_agrees(redis: Any, sql: Any) -> bool:
    if redis is None or sql is None:
        return False
    if redis["top"] != sql["ids"] or redis["total"] != sql["total"]:
        return False
    if sql["me"] is None:
        return redis["position"] is None
    return redis["position"] is not None and redis["position"] >= sql["me"][0]


def _redemption(outcome: dict[str, Any]) -> tuple[str, str] | None:
    """(id, code) of the redemption an answer names."""
    try:
        found = outcome["data"]["redeemReward"]["redemption"]
        return str(found["id"]), str(found["code"])
    except (KeyError, TypeError):
        return None


def _shape(value: Any) -> Any:
    """The keys (nested) and value types of a JSON value, without the values."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return type(value).__name__


def _outcome(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    payload = (body or {}).get("data") if isinstance(body, dict) else None
    user_errors = _user_errors(payload)
    bad = (
        response.status_code != 200
        or not isinstance(body, dict)
        or "errors" in body
        or bool(user_errors)
    )
    return {
        "status": response.status_code,
        "ok": not bad,
        "data": payload,
        "body": response.text[:MAX_BODY] if bad else None,
    }


def _user_errors(payload: Any) -> list[Any]:
    if not isinstance(payload, dict):
        return []
    return [
        e
        for value in payload.values()
        if isinstance(value, dict)
        for e in value.get("userErrors") or []
    ]


def _transaction_id(outcome: dict[str, Any]) -> str | None:
    try:
        return str(outcome["data"]["recordPurchase"]["transaction"]["id"])
    except (KeyError, TypeError):
        return None


def _summarize(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    failed = [o for o in outcomes if not o["ok"]]
    return {
        "requests": len(outcomes),
        "with_errors": len(failed),
        "first_error_body": failed[0]["body"] if failed else None,
    }


# -- ledger checks -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Marks:
    """The highest ids before a workload: what is above was written by it."""

    entry_id: int
    purchase_id: int
    idempotency_id: int
    redemption_id: int
    event_id: int


async def marks(db: Database) -> Marks:
    conn = await asyncpg.connect(db.dsn)
    try:
        row = await conn.fetchrow(
            """
            SELECT (SELECT coalesce(max(id), 0) FROM ledger_entries) AS entry_id,
                   (SELECT coalesce(max(id), 0) FROM purchases) AS purchase_id,
                   (SELECT coalesce(max(id), 0) FROM idempotency_records) AS idempotency_id,
                   (SELECT coalesce(max(id), 0) FROM redemptions) AS redemption_id,
                   (SELECT coalesce(max(id), 0) FROM member_events) AS event_id
            """
        )
    finally:
        await conn.close()
    return Marks(**dict(row))


PURCHASES_SQL = """
    SELECT split_part(p.order_id, '-', 1) AS prefix,
           count(*) AS purchases,
           count(*) FILTER (WHERE e.id IS NULL OR e.kind <> 'PURCHASE'
                            OR e.member_id <> p.member_id OR e.points <> p.points_earned
                            OR e.reference IS DISTINCT FROM p.order_id) AS bad_entry_links,
           -- The claim must exist; whether it also names the entry is the application's choice
           -- (the purchase row records the result), but if it does, it must be this one.
           count(*) FILTER (WHERE i.id IS NULL OR i.entry_id <> p.entry_id)
             AS bad_idempotency_records
    FROM purchases AS p
    LEFT JOIN ledger_entries AS e ON e.id = p.entry_id
    LEFT JOIN idempotency_records AS i ON i.scope = 'purchase' AND i.key = p.order_id
    WHERE p.id > $1
    GROUP BY 1
"""
ORPHANS_SQL = """
    SELECT
      (SELECT count(*) FROM ledger_entries AS e
       WHERE e.id > $1 AND e.kind = 'PURCHASE'
         AND NOT EXISTS (SELECT 1 FROM purchases AS p WHERE p.entry_id = e.id))
        AS entries_without_purchase,
      (SELECT count(*) FROM (SELECT reference FROM ledger_entries
                             WHERE id > $1 AND kind = 'PURCHASE'
                             GROUP BY reference HAVING count(*) > 1) AS d)
        AS orders_credited_twice,
      (SELECT count(*) FROM idempotency_records AS i
       WHERE i.id > $2 AND i.scope = 'purchase'
         AND NOT EXISTS (SELECT 1 FROM purchases AS p WHERE p.order_id = i.key))
        AS claims_without_purchase,
      -- The outbox: each entry leaves exactly one POINTS_UPDATED event, in its transaction.
      (SELECT count(*) FROM ledger_entries AS e
       LEFT JOIN (SELECT entry_id, count(*) AS events FROM member_events
                  WHERE entry_id IS NOT NULL AND kind = 'POINTS_UPDATED'
                  GROUP BY entry_id) AS ev ON ev.entry_id = e.id
       WHERE e.id > $1 AND e.kind = 'PURCHASE' AND coalesce(ev.events, 0) <> 1)
        AS entries_without_one_event
"""
# Members whose cached figures differ from their entries (all members, or those with entries
# above an id).
BALANCES_SQL = """
    WITH sums AS (
        SELECT member_id,
               coalesce(sum(points) FILTER (WHERE status = 'POSTED'), 0) AS available,
               coalesce(sum(points) FILTER (WHERE status = 'PENDING'), 0) AS pending,
               coalesce(sum(points) FILTER (WHERE status = 'POSTED' AND kind = ANY($1)), 0)
                 AS lifetime_earned,
               coalesce(sum(points) FILTER (WHERE status <> 'VOIDED' AND kind = ANY($1)), 0)
                 AS qualifying_points,
               coalesce(sum(points) FILTER (WHERE status <> 'VOIDED' AND kind = ANY($1)), 0)
                 AS earned_points,
               coalesce(-sum(points) FILTER (WHERE status = 'POSTED' AND kind = 'REDEMPTION'),
                        0) AS redeemed,
               coalesce(sum(remaining) FILTER (WHERE status = 'POSTED'), 0) AS lots_remaining
        FROM ledger_entries
        WHERE member_id IN (SELECT member_id FROM ledger_entries WHERE id > $2)
        GROUP BY member_id
    )
    SELECT count(*) AS members,
           count(*) FILTER (WHERE m.available <> s.available OR m.pending <> s.pending
                            OR m.lifetime_earned <> s.lifetime_earned
                            OR m.qualifying_points <> s.qualifying_points
                            OR m.earned_points <> s.earned_points
                            OR m.redeemed <> s.redeemed) AS balance_mismatches,
           count(*) FILTER (WHERE s.lots_remaining <> m.available) AS lot_mismatches,
           count(*) FILTER (WHERE m.tier_id <> (SELECT t.id FROM tiers AS t
                                                WHERE t.threshold <= m.qualifying_points
                                                ORDER BY t.threshold DESC LIMIT 1))
             AS tier_mismatches
    FROM members AS m JOIN sums AS s ON s.member_id = m.id
"""


async def check_balances(db: Database, *, above_entry_id: int = 0) -> dict[str, int]:
    """Members (with entries above `above_entry_id`) whose cached figures are wrong."""
    conn = await asyncpg.connect(db.dsn)
    try:
        row = await conn.fetchrow(BALANCES_SQL, list(QUALIFYING_KINDS), above_entry_id)
    finally:
        await conn.close()
    return dict(row)


async def check_earn(
    db: Database, before: Marks, completed: dict[str, int], tolerance: dict[str, int]
) -> dict[str, Any]:
    """The ledger after the earn workload. `completed`: 2xx answers without errors that wrk
    saw per order prefix ("L", "R"); `tolerance`: requests that may have been processed
    without wrk seeing the answer (in flight when a run stopped, or timed out)."""
    conn = await asyncpg.connect(db.dsn)
    try:
        by_prefix = {
            row["prefix"]: dict(row) for row in await conn.fetch(PURCHASES_SQL, before.purchase_id)
        }
        orphans = dict(await conn.fetchrow(ORPHANS_SQL, before.entry_id, before.idempotency_id))
    finally:
        await conn.close()
    balances = await check_balances(db, above_entry_id=before.entry_id)
    credit: dict[str, Any] = {}
    for prefix, answered in completed.items():
        created = by_prefix.get(prefix, {}).get("purchases", 0)
        # Each answered request must have created its purchase; at most `tolerance` more may
        # exist (requests the server finished after wrk stopped listening).
        credit[prefix] = {
            "answered_ok": answered,
            "purchases_created": created,
            "lost": max(answered - created, 0),
            "unanswered_but_created": created - answered,
            "within_tolerance": 0 <= created - answered <= tolerance.get(prefix, 0),
        }
    # Purchases whose order ids are none of ours: someone else is writing to this database.
    foreign = {p: row["purchases"] for p, row in by_prefix.items() if p not in completed}
    problems = (
        sum(foreign.values())
        + sum(row["bad_entry_links"] + row["bad_idempotency_records"] for row in by_prefix.values())
        + sum(orphans.values())
        + balances["balance_mismatches"]
        + balances["lot_mismatches"]
        + balances["tier_mismatches"]
        + sum(1 for c in credit.values() if not c["within_tolerance"])
    )
    return {
        "ok": problems == 0,
        "purchases_by_prefix": by_prefix,
        **orphans,
        "members_checked": balances["members"],
        "balance_mismatches": balances["balance_mismatches"],
        "lot_mismatches": balances["lot_mismatches"],
        "tier_mismatches": balances["tier_mismatches"],
        "credit": credit,
        "foreign_purchases": foreign,
    }


# -- the redeem workload ---------------------------------------------------------------------

REDEMPTIONS_SQL = """
    SELECT split_part(i.key, '-', 1) AS prefix,
           count(*) AS redemptions,
           count(*) FILTER (WHERE e.id IS NULL OR e.kind <> 'REDEMPTION'
                            OR e.status <> 'POSTED' OR e.member_id <> r.member_id
                            OR e.points <> -r.points
                            OR e.reference IS DISTINCT FROM 'reward:' || r.reward_id)
             AS bad_entry_links,
           count(*) FILTER (WHERE i.id IS NULL) AS without_claim,
           count(*) FILTER (WHERE r.status <> 'ISSUED' OR r.code IS NULL) AS bad_status,
           count(*) FILTER (WHERE r.took_stock <> (r.reward_id = $2)) AS bad_took_stock,
           count(*) FILTER (WHERE (SELECT coalesce(sum((d ->> 1)::int), 0)
                                   FROM json_array_elements(r.drawn) AS d) <> r.points)
             AS bad_drawn,
           count(*) FILTER (WHERE r.member_id <> ALL($3::bigint[])) AS not_hot_members
    FROM redemptions AS r
    LEFT JOIN ledger_entries AS e ON e.id = r.entry_id
    LEFT JOIN idempotency_records AS i
      ON i.entry_id = r.entry_id AND i.scope = 'redeem:member:' || r.member_id
    WHERE r.id > $1
    GROUP BY 1
"""
REDEEM_ORPHANS_SQL = """
    SELECT
      (SELECT count(*) FROM ledger_entries AS e
       WHERE e.id > $1 AND e.kind = 'REDEMPTION'
         AND NOT EXISTS (SELECT 1 FROM redemptions AS r WHERE r.entry_id = e.id))
        AS entries_without_redemption,
      (SELECT count(*) FROM idempotency_records AS i
       WHERE i.id > $2 AND i.scope LIKE 'redeem:%'
         AND NOT EXISTS (SELECT 1 FROM redemptions AS r WHERE r.entry_id = i.entry_id))
        AS claims_without_redemption
"""
# Each redemption's event, against the hot members' running balances in entry order (every
# change of a member holds its row lock, so entry ids follow commit order within a member).
REDEEM_LEDGER_SQL = """
    WITH running AS (
        SELECT id, member_id, points, remaining,
               sum(CASE WHEN status = 'POSTED' THEN points ELSE 0 END)
                 OVER (PARTITION BY member_id ORDER BY id) AS available,
               sum(CASE WHEN status = 'POSTED' AND kind = 'REDEMPTION' THEN -points ELSE 0 END)
                 OVER (PARTITION BY member_id ORDER BY id) AS redeemed
        FROM ledger_entries
        WHERE member_id = ANY($3::bigint[])
    ), events AS (
        SELECT entry_id, count(*) AS events, min(member_id) AS member_id,
               min((data ->> 'available')::int) AS available,
               min((data ->> 'redeemed')::int) AS redeemed,
               bool_and(kind = 'POINTS_UPDATED') AS points_updated
        FROM member_events
        WHERE id > $2 AND entry_id IS NOT NULL
        GROUP BY entry_id
    )
    SELECT
      (SELECT count(*) FROM redemptions AS r
       LEFT JOIN events AS ev ON ev.entry_id = r.entry_id
       LEFT JOIN running AS w ON w.id = r.entry_id
       WHERE r.id > $1
         AND (ev.entry_id IS NULL OR ev.events <> 1 OR NOT ev.points_updated
              OR ev.member_id <> r.member_id OR w.id IS NULL
              OR ev.available <> w.available OR ev.redeemed <> w.redeemed))
        AS bad_events,
      (SELECT count(DISTINCT member_id) FROM running WHERE available < 0)
        AS members_ever_negative,
      (SELECT count(*) FROM running WHERE remaining < 0 OR remaining > greatest(points, 0))
        AS bad_lots,
      (SELECT count(*) FROM members WHERE id = ANY($3::bigint[]) AND available < 0)
        AS negative_balances,
      (SELECT min(available) FROM members WHERE id = ANY($3::bigint[])) AS lowest_balance
"""
STOCK_SQL = """
    SELECT (SELECT stock FROM rewards WHERE id = $1) AS stock,
           (SELECT stock FROM rewards WHERE id = $2) AS unlimited_stock,
           (SELECT count(*) FROM redemptions WHERE reward_id = $1 AND took_stock
                                               AND status <> 'CANCELLED') AS took_stock
"""


async def check_redeem(
    db: Database,
    before: Marks,
    creds: workloads.Credentials,
    completed: dict[str, int],
    tolerance: dict[str, int],
) -> dict[str, Any]:
    """The ledger after the redeem workload (`completed` and `tolerance` as for check_earn)."""
    hot = list(creds.redeem_members)
    rewards = creds.rewards
    conn = await asyncpg.connect(db.dsn)
    try:
        by_prefix = {
            row["prefix"]: dict(row)
            for row in await conn.fetch(REDEMPTIONS_SQL, before.redemption_id, rewards.stocked, hot)
        }
        orphans = dict(
            await conn.fetchrow(REDEEM_ORPHANS_SQL, before.entry_id, before.idempotency_id)
        )
        ledger = dict(
            await conn.fetchrow(REDEEM_LEDGER_SQL, before.redemption_id, before.event_id, hot)
        )
        stock = dict(await conn.fetchrow(STOCK_SQL, rewards.stocked, rewards.unlimited))
    finally:
        await conn.close()
    balances = await check_balances(db, above_entry_id=before.entry_id)
    stock["stock_before"] = rewards.stock_before
    stock["ok"] = (
        stock["stock"] is not None
        and stock["stock"] >= 0
        and rewards.stock_before - stock["stock"] == stock["took_stock"]
        and stock["unlimited_stock"] is None
    )
    credit: dict[str, Any] = {}
    for prefix, answered in completed.items():
        created = by_prefix.get(prefix, {}).get("redemptions", 0)
        credit[prefix] = {
            "answered_ok": answered,
            "redemptions_created": created,
            "lost": max(answered - created, 0),
            "unanswered_but_created": created - answered,
            "within_tolerance": 0 <= created - answered <= tolerance.get(prefix, 0),
        }
    foreign = {str(p): row["redemptions"] for p, row in by_prefix.items() if p not in completed}
    per_redemption = (
        "bad_entry_links",
        "without_claim",
        "bad_status",
        "bad_took_stock",
        "bad_drawn",
        "not_hot_members",
    )
    problems = (
        sum(foreign.values())
        + sum(row[name] for row in by_prefix.values() for name in per_redemption)
        + sum(orphans.values())
        + ledger["bad_events"]
        + ledger["members_ever_negative"]
        + ledger["bad_lots"]
        + ledger["negative_balances"]
        + balances["balance_mismatches"]
        + balances["lot_mismatches"]
        + balances["tier_mismatches"]
        + (0 if stock["ok"] else 1)
        + sum(1 for c in credit.values() if not c["within_tolerance"])
    )
    return {
        "ok": problems == 0,
        "redemptions_by_prefix": by_prefix,
        **orphans,
        **ledger,
        "members_checked": balances["members"],
        "balance_mismatches": balances["balance_mismatches"],
        "lot_mismatches": balances["lot_mismatches"],
        "tier_mismatches": balances["tier_mismatches"],
        "stock": stock,
        "credit": credit,
        "foreign_redemptions": foreign,
    }
