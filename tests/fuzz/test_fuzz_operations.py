"""A property-based fuzz of every query and mutation (issue 15, item 7).

hypothesis-graphql writes documents from the live schema, one root field at a time, with
arguments drawn at random (NUL bytes, SQL, huge numbers, nulls, long text) or taken from the
demo program's real IDs, codes and order numbers, so that a good share gets past the "not
found" checks into the services. Each document is sent over HTTP to the app in production
mode, on PostgreSQL, as an admin key, a service key, a partner key, a member token or nobody.
Whatever it is, the answer must be the client's mistake or a success: never a 5xx, never
INTERNAL_SERVER_ERROR, and no message that gives internals away (tracebacks, SQL, driver or
exception class names, "Did you mean" suggestions).

Arguments go as literals or, half the time, as JSON variables (another coercion path), and
each query is sent twice: the second time it runs from its compiled plan (schema/compiled),
which must answer exactly as graphql-core's executor did.

Cases per operation: LAUREL_FUZZ_EXAMPLES (default 20: the whole fuzz in about a
minute on a 2-core machine). Derandomized when CI=true, so a build is never flaky; random
elsewhere, so each local run explores new cases (hypothesis keeps failures in .hypothesis/
and replays them first).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis_graphql import mutations, nodes, queries
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.settings import Settings
from models import (
    ActivityType,
    ApiKey,
    AuditEntry,
    Badge,
    Challenge,
    EarningRule,
    KeyRole,
    LedgerEntry,
    Member,
    Partner,
    Promotion,
    Purchase,
    Redemption,
    Reward,
    Segment,
    Tier,
    WebhookEndpoint,
)
from models.engine import session_factory
from schema.ids import encode_cursor, encode_id
from schema.schema import build_schema
from services import access
from services.clock import ManualClock
from services.demo import load_demo
from services.demo_rewards import PARTNER_SLUG
from tests.conftest import JWT_SECRET, START, _empty

EXAMPLES = int(os.environ.get("LAUREL_FUZZ_EXAMPLES", "20"))
IN_CI = os.environ.get("CI", "").lower() == "true"

SCHEMA = build_schema()._schema
OPERATIONS = [("query", name) for name in SCHEMA.query_type.fields] + [  # type: ignore[union-attr]
    ("mutation", name)
    for name in SCHEMA.mutation_type.fields  # type: ignore[union-attr]
]
ROLES = ("admin", "service", "partner", "member", "anonymous")

# What production answers must never show: a traceback, SQL, the database driver, Python
# exception class names or object reprs, or graphql-core's name suggestions.
LEAKS = re.compile(
    r"Traceback|File \"|sqlalchemy|asyncpg|aiosqlite|sqlite3|psycopg|postgres"
    r"|\b(?:SELECT|INSERT INTO|UPDATE|DELETE FROM)\b.*\b(?:FROM|SET|VALUES|WHERE)\b"
    r"|\b[A-Z][A-Za-z]*(?:Error|Exception)\b|object at 0x|Did you mean",
    re.DOTALL,
)

# Text that has broken servers: NUL (PostgreSQL cannot store it), SQL, numbers past every
# range, control and bidi characters, emoji, a long string.
HOSTILE = [
    "",
    " ",
    "\x00",
    "order\x00one",
    "null",
    "'; DROP TABLE members; --",
    "%_\\",
    "-1",
    "1e999",
    "0x10",
    "9" * 40,
    "\u202e\u200b\ufeff",
    "\U0001f600" * 3,
    "x" * 5000,
]

# The node types whose IDs the fuzz knows, and the models they are read from.
NODE_MODELS: dict[str, Any] = {
    "Member": Member,
    "Reward": Reward,
    "Tier": Tier,
    "Promotion": Promotion,
    "Partner": Partner,
    "Badge": Badge,
    "Challenge": Challenge,
    "Redemption": Redemption,
    "ApiKey": ApiKey,
    "AuditEntry": AuditEntry,
    "Segment": Segment,
    "EarningRule": EarningRule,
    "ActivityType": ActivityType,
    "WebhookEndpoint": WebhookEndpoint,
    "PointsTransaction": LedgerEntry,
}


@dataclass(repr=False)
class Target:
    """The app under fuzz and what it knows of the demo program."""

    client: httpx.AsyncClient
    credentials: dict[str, str | None]
    scalars: dict[str, st.SearchStrategy[graphql.ValueNode]]
    documents: dict[str, st.SearchStrategy[str]]

    def documents_for(self, kind: str, field: str) -> st.SearchStrategy[str]:
        # Built once per operation: building one walks the schema.
        if field not in self.documents:
            make = queries if kind == "query" else mutations
            self.documents[field] = make(SCHEMA, fields=[field], custom_scalars=self.scalars)
        return self.documents[field]


@pytest.fixture(scope="module")
async def target(pg_engine: AsyncEngine) -> AsyncIterator[Target]:
    clock = ManualClock(START)
    app = create_app(
        Settings(
            database_url=pg_engine.url.render_as_string(hide_password=False),
            jwt_secret=SecretStr(JWT_SECRET),
            env="production",
            sweep_interval_seconds=0,
            # The fuzz calls fast and as one member: no 429s in the way.
            rate_limits=False,
            # Endpoints the fuzz creates are never called, and their hosts never looked
            # up (random names would go to DNS).
            webhooks_in_process=False,
            webhooks_allow_private=True,
            _env_file=None,  # type: ignore[call-arg]
        ),
        clock=clock,
    )
    credentials, scalars = await load_world(pg_engine, clock)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    yield Target(client, credentials, scalars, {})
    await client.aclose()
    await app.state.laurel.engine.dispose()


async def load_world(
    pg_engine: AsyncEngine, clock: ManualClock
) -> tuple[dict[str, str | None], dict[str, st.SearchStrategy[graphql.ValueNode]]]:
    """The demo program loaded (on an emptied database), a credential per role (None for
    anonymous), and the scalar strategies drawing on its IDs and strings."""
    await _empty(pg_engine)
    sessions = session_factory(pg_engine)
    summary = await load_demo(sessions, clock)
    credentials: dict[str, str | None] = {"anonymous": None}
    async with sessions.begin() as session:
        for role, slug in (
            (KeyRole.ADMIN, None),
            (KeyRole.SERVICE, None),
            (KeyRole.PARTNER, PARTNER_SLUG),
        ):
            issued = await access.create_api_key(
                session, role=role, name=f"fuzz {role}", now=clock.now(), partner_slug=slug
            )
            credentials[role.value.lower()] = issued.secret
        # In a fixed order: with CI=true the same cases every run.
        ids = [encode_cursor(n) for n in (0, 1, 5)]
        for type_name, model in NODE_MODELS.items():
            for pk in (await session.scalars(select(model.id).order_by(model.id).limit(8))).all():
                ids.append(encode_id(type_name, pk))
        strings = [
            *(
                await session.scalars(
                    select(Member.external_id).order_by(Member.external_id).limit(5)
                )
            ).all(),
            *(await session.scalars(select(Member.email).order_by(Member.email).limit(5))).all(),
            *(
                await session.scalars(select(Redemption.code).order_by(Redemption.code).limit(5))
            ).all(),
            *(
                await session.scalars(
                    select(Purchase.order_id).order_by(Purchase.order_id).limit(5)
                )
            ).all(),
            *(await session.scalars(select(ActivityType.key).order_by(ActivityType.key))).all(),
            PARTNER_SLUG,
        ]
    credentials["member"] = access.issue_member_token(
        subject=encode_id("Member", summary.featured_member_id),
        secret=JWT_SECRET,
        now=clock.now(),
        ttl=timedelta(days=30),
    )
    return credentials, _custom_scalars(ids, [s for s in strings if s])


def _custom_scalars(
    ids: list[str], strings: list[str]
) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    text = st.text(max_size=40)
    # Random text finds a NUL or an odd number only now and then: these come often.
    junk = st.one_of(text, st.sampled_from(HOSTILE))
    json_values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | text,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), inner)
        ),
        max_leaves=10,
    )
    return {
        # Real IDs most of the time (to reach the services), else any ID of a known type with
        # any number, else anything.
        "ID": st.one_of(
            st.sampled_from(ids),
            st.builds(
                encode_id,
                st.sampled_from([*NODE_MODELS, "cursor", "Nope"]),
                st.integers(-(2**63), 2**63),
            ),
            junk,
        ).map(nodes.String),
        "String": st.one_of(
            st.sampled_from(strings),
            st.sampled_from(strings).map(lambda known: known + "\x00"),
            junk,
        ).map(nodes.String),
        "Date": st.one_of(st.dates().map(date.isoformat), junk).map(nodes.String),
        "DateTime": st.one_of(
            st.datetimes(
                min_value=datetime(1, 1, 2),
                max_value=datetime(9999, 12, 30),
                timezones=st.just(UTC),
            ).map(datetime.isoformat),
            junk,
        ).map(nodes.String),
        # Literals: a JSON value written as GraphQL, which the JSON scalar reads back.
        "JSON": json_values.map(_json_node),
    }


def _json_node(value: object) -> graphql.ValueNode:
    """A JSON value as a GraphQL literal (object keys are names there)."""
    if isinstance(value, dict):
        return graphql.ObjectValueNode(
            fields=tuple(
                graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=_json_node(v))
                for k, v in value.items()
            )
        )
    if isinstance(value, list):
        return graphql.ListValueNode(values=tuple(_json_node(v) for v in value))
    if value is None:
        return graphql.NullValueNode()
    if isinstance(value, bool):
        return graphql.BooleanValueNode(value=value)
    if isinstance(value, int):
        return graphql.IntValueNode(value=str(value))
    if isinstance(value, float):
        return graphql.FloatValueNode(value=repr(value))
    return graphql.StringValueNode(value=str(value))


def _leaks(body: Any) -> Iterator[str]:
    """Every message in the answer (errors and userErrors) that shows internals."""
    if isinstance(body, dict):
        for key, value in body.items():
            if key == "message" and isinstance(value, str) and LEAKS.search(value):
                yield value
            else:
                yield from _leaks(value)
    elif isinstance(body, list):
        for item in body:
            yield from _leaks(item)


def _as_variables(document: str, kind: str) -> tuple[str, dict[str, Any]]:
    """The document with its root field's arguments sent as variables, as apps send them
    (coerced from JSON by another path than literals are)."""
    parsed = graphql.parse(document)
    operation = parsed.definitions[0]
    assert isinstance(operation, graphql.OperationDefinitionNode)
    root = {
        "query": SCHEMA.query_type,
        "mutation": SCHEMA.mutation_type,
        "subscription": SCHEMA.subscription_type,
    }[kind]
    assert root is not None
    definitions: list[graphql.VariableDefinitionNode] = []
    variables: dict[str, Any] = {}
    selections = []
    for selection in operation.selection_set.selections:
        assert isinstance(selection, graphql.FieldNode)
        field = root.fields[selection.name.value]
        arguments = []
        for argument in selection.arguments or ():
            name = f"v{len(definitions)}"
            variables[name] = graphql.value_from_ast_untyped(argument.value)
            definitions.append(
                graphql.VariableDefinitionNode(
                    variable=graphql.VariableNode(name=graphql.NameNode(value=name)),
                    type=graphql.parse_type(str(field.args[argument.name.value].type)),
                )
            )
            arguments.append(
                graphql.ArgumentNode(
                    name=argument.name,
                    value=graphql.VariableNode(name=graphql.NameNode(value=name)),
                )
            )
        selections.append(dataclasses.replace(selection, arguments=tuple(arguments)))
    operation = dataclasses.replace(
        operation,
        variable_definitions=tuple(definitions),
        selection_set=dataclasses.replace(operation.selection_set, selections=tuple(selections)),
    )
    return graphql.print_ast(graphql.DocumentNode(definitions=(operation,))), variables


async def _send(
    target: Target, document: str, variables: dict[str, Any], headers: dict[str, str]
) -> Any:
    response = await target.client.post(
        "/graphql", json={"query": document, "variables": variables}, headers=headers
    )
    assert response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    codes = [(e.get("extensions") or {}).get("code") for e in body.get("errors") or []]
    assert "INTERNAL_SERVER_ERROR" not in codes, body
    assert list(_leaks(body)) == [], body
    return body


@pytest.mark.parametrize(("kind", "field"), OPERATIONS, ids=[f"{k}.{f}" for k, f in OPERATIONS])
@settings(
    max_examples=EXAMPLES,
    derandomize=IN_CI,
    database=None if IN_CI else settings().database,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(data=st.data())
async def test_no_operation_fails_inside_or_leaks_internals(
    target: Target, kind: str, field: str, data: st.DataObject
) -> None:
    document = data.draw(target.documents_for(kind, field), "document")
    role = data.draw(st.sampled_from(ROLES), "role")
    credential = target.credentials[role]
    headers = {"authorization": f"Bearer {credential}"} if credential else {}
    variables: dict[str, Any] = {}
    if data.draw(st.booleans(), "as variables"):
        document, variables = _as_variables(document, kind)
    # What to send again by hand when a case fails (hypothesis prints notes then).
    note(f"as {role}: {json.dumps({'query': document, 'variables': variables})}")
    body = await _send(target, document, variables, headers)
    if kind == "query":
        # Sent again, a document runs from its compiled plan (schema/compiled): the same
        # answer as graphql-core's executor gave.
        assert await _send(target, document, variables, headers) == body
