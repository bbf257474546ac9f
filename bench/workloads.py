"""The two workloads, as requests to Laurel and to the raw baseline, and their credentials.

* dashboard: Laurel's ``Dashboard`` query as a random member of a pool (a member JWT each,
  issued with services.access.issue_member_token and the server's secret); the raw app's
  ``POST /dashboard`` as the same members.
* earn: ``recordPurchase`` with a service API key (services.access.create_api_key) for random
  members of a pool, a unique orderId per request; the raw app's ``POST /earn`` alike.
"""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.config import LUA_DIR, Database
from models import KeyRole
from models.engine import create_engine, session_factory
from schema.ids import encode_id
from services.access import create_api_key, issue_member_token

WORKLOADS = ("dashboard", "earn")
TARGETS = ("raw", "laurel")

DASHBOARD_QUERY = (
    "query Dashboard { me { balance { available pending } tier { name } "
    "tierProgress { pointsToNext } transactions(first: 10) { edges { node { "
    "id kind points createdAt description } } } } }"
)
EARN_MUTATION = (
    "mutation Earn($input: RecordPurchaseInput!) { recordPurchase(input: $input) { "
    "transaction { id points } member { balance { available } } "
    "userErrors { code message } } }"
)
# Lua string.format placeholders, in the order earn.lua passes them.
_MEMBER, _ORDER, _AMOUNT = "@MEMBER@", "@ORDER@", 12.5


@dataclass(frozen=True, slots=True)
class Credentials:
    jwt_secret: str
    api_key: str  # a Laurel service key
    raw_token: str  # the raw app's service bearer
    dashboard_members: list[int]
    member_tokens: list[str]  # one per dashboard member, same order
    earn_members: list[int]


async def make_credentials(
    db: Database, *, dashboard_pool: int, earn_pool: int, seed: int = 42
) -> Credentials:
    """A service key in the database, member tokens, and the members each workload uses."""
    jwt_secret = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    conn = await asyncpg.connect(db.dsn)
    try:
        ids = [row["id"] for row in await conn.fetch("SELECT id FROM members ORDER BY id")]
    finally:
        await conn.close()
    chooser = random.Random(seed)
    dashboard_members = chooser.sample(ids, min(dashboard_pool, len(ids)))
    earn_members = chooser.sample(ids, min(earn_pool, len(ids)))
    engine = create_engine(db.sqlalchemy_url, pool_size=1)
    try:
        async with session_factory(engine).begin() as session:
            issued = await create_api_key(session, role=KeyRole.SERVICE, name="bench", now=now)
    finally:
        await engine.dispose()
    tokens = [
        issue_member_token(
            subject=encode_id("Member", pk), secret=jwt_secret, now=now, ttl=timedelta(hours=6)
        )
        for pk in dashboard_members
    ]
    return Credentials(
        jwt_secret=jwt_secret,
        api_key=issued.secret,
        raw_token=secrets.token_urlsafe(24),
        dashboard_members=dashboard_members,
        member_tokens=tokens,
        earn_members=earn_members,
    )


# -- single requests (for the probes) ---------------------------------------------------------


def dashboard_request(target: str, creds: Credentials, index: int) -> tuple[str, dict[str, str]]:
    """(path, headers) of a dashboard request as the index-th member; the body is
    `dashboard_body(target)`."""
    if target == "laurel":
        return "/graphql", {"Authorization": f"Bearer {creds.member_tokens[index]}"}
    return "/dashboard", {"Authorization": f"Bearer {creds.dashboard_members[index]}"}


def dashboard_body(target: str) -> str:
    return json.dumps({"query": DASHBOARD_QUERY}) if target == "laurel" else ""


def earn_request(
    target: str, creds: Credentials, member: int, order_id: str, amount: float
) -> tuple[str, dict[str, str], str]:
    """(path, headers, body) of one earn request."""
    return (
        "/graphql" if target == "laurel" else "/earn",
        {"Authorization": _service_authorization(target, creds)},
        _earn_body(target, member, order_id, amount),
    )


def _service_authorization(target: str, creds: Credentials) -> str:
    return f"Bearer {creds.api_key if target == 'laurel' else creds.raw_token}"


def _earn_body(target: str, member: Any, order_id: Any, amount: Any) -> str:
    if target == "laurel":
        member = encode_id("Member", member) if isinstance(member, int) else member
        variables = {"input": {"memberId": member, "orderId": order_id, "amount": amount}}
        return json.dumps({"query": EARN_MUTATION, "variables": variables})
    return json.dumps({"memberId": member, "orderId": order_id, "amount": amount})


# -- wrk data files ---------------------------------------------------------------------------


def lua_data(workload: str, target: str, creds: Credentials, order_prefix: str) -> dict[str, Any]:
    """What the workload's Lua script needs to build its requests for `target`."""
    if workload == "dashboard":
        count = len(creds.dashboard_members)
        return {
            "method": "POST",
            "path": dashboard_request(target, creds, 0)[0],
            "body": dashboard_body(target),
            "credentials": [
                dashboard_request(target, creds, i)[1]["Authorization"] for i in range(count)
            ],
        }
    body_format = _earn_body(target, _MEMBER, _ORDER, _AMOUNT).replace("%", "%%")
    body_format = body_format.replace(f'"{_ORDER}"', '"%s"').replace(str(_AMOUNT), "%s")
    if target == "laurel":
        body_format = body_format.replace(f'"{_MEMBER}"', '"%s"')
        members: list[Any] = [encode_id("Member", pk) for pk in creds.earn_members]
    else:
        body_format = body_format.replace(f'"{_MEMBER}"', "%s")
        members = [str(pk) for pk in creds.earn_members]
    return {
        "path": "/graphql" if target == "laurel" else "/earn",
        "authorization": _service_authorization(target, creds),
        "order_prefix": order_prefix,
        "body_format": body_format,
        "members": members,
    }


def write_lua_data(path: Path, data: dict[str, Any]) -> Path:
    """Write `data` as a Lua file returning a table (strings must be ASCII)."""
    path.write_text("return " + _lua(data) + "\n")
    return path


def lua_script(workload: str) -> Path:
    return LUA_DIR / f"{workload}.lua"


def _lua(value: Any) -> str:
    if isinstance(value, str):
        if not value.isascii():
            raise ValueError("Lua data must be ASCII")
        return json.dumps(value)  # JSON's escapes for ASCII (\" \\ \n ...) are Lua's too
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "{" + ",\n".join(_lua(item) for item in value) + "}"
    if isinstance(value, dict):
        return "{" + ",\n".join(f"{key} = {_lua(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to Lua")
