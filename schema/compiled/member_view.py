"""A member's own view (`me { ... }`) answered from one statement, its transaction pages built
as JSON by PostgreSQL.

A member's app opens on its dashboard, and most members of a large program are in no cache
when they do. Through the plan (`schema.compiled.executor`) such a view costs one read and
then, in Python, about as much again: the page's rows become records, then strawberry
objects, then completed values, an entry at a time, each field with its global ID, datetime
and enum to serialize, and four resolvers run inside strawberry's wrappers. Here the plan of
the document decides once what can be answered how:

* the member's own attributes (`id`, `displayName`, `balance { ... }`...) are read from
  `Member.from_row` with the plan's flat completions, as the executor reads them;
* `tier` and `tierProgress` come from the same functions as their resolvers
  (`schema.types.member.tier_of`, `tier_progress_of`), completed flat;
* each `transactions(first: N)` is built by PostgreSQL as JSON, in the same statement as the
  member (`_connection`), and parsed once (so the response's bytes are orjson's, as always).

The page's SQL is a second definition of a few fields (a transaction's global ID, cursor,
datetime and enum): each is written once, here, next to the GraphQL type it must have (a
retyped field makes the plan decline), and `tests/graphql/test_member_view_sql.py` holds the
two paths to byte-for-byte agreement on generated views.

Anything else is left to the plan or to strawberry (`plan_member_view` returns None, or
`answer` returns None having written nothing): a field not listed here, a variable, a
`first` out of range or an `after`, a viewer who is not a member (strawberry says why), a
member not found, a member whose pending points or lots are due (the general path settles
them first), SQLite (no direct reads), and any error (the general path reads again and
reports it as it always has). With tracing's slow-resolver spans on, no view is planned at
all: every resolver then runs, to be timed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
from graphql import GraphQLError, GraphQLObjectType, OperationType
from graphql.execution.values import get_argument_values
from graphql.type.introspection import TypeNameMetaFieldDef

from schema.compiled.plan import (
    Completion,
    FieldPlan,
    Flat,
    ListCompletion,
    NonNullCompletion,
    NotFlat,
    ObjectCompletion,
    OperationPlan,
    attribute_reader,
    field_permissions,
    flat_of,
)
from schema.context import Context, Role
from schema.exceptions import BadUserInput
from schema.pagination import page_size
from schema.permissions import MemberOnly
from schema.types.member import Member, tier_of, tier_progress_of
from services.direct.writer import MEMBER_COLUMNS, LockedMember

__all__ = ["MemberView", "plan_member_view"]

logger: Final = logging.getLogger("laurel.graphql")

# Response names go into the statement as JSON keys: GraphQL names only (validated
# documents have nothing else, checked all the same).
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
# json_build_object takes at most 100 arguments.
_MAX_KEYS = 50


def _global_id(type_name: str, pk: str) -> str:
    """`services.global_ids.encode_id(type_name, pk)`: URL-safe base64, unpadded."""
    return (
        f"rtrim(translate(encode(convert_to('{type_name}:' || {pk}, 'UTF8'), 'base64'),"
        " '+/', '-_'), '=')"
    )


def _datetime(column: str) -> str:
    """The DateTime scalar's output (`schema.scalars`): ISO 8601 in UTC, `+00:00`, the
    microseconds only when there are any (`datetime.isoformat`)."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN extract(microseconds FROM"
        f" {column})::bigint % 1000000 = 0 THEN '' ELSE to_char({utc}, '.US') END || '+00:00'"
    )


# PointsTransaction's fields the page can build, over its rows `p`, with their GraphQL types.
_ENTRY_FIELDS: Final[dict[str, tuple[str, str]]] = {
    "id": ("ID!", _global_id("PointsTransaction", "p.id")),
    "kind": ("TransactionKind!", "p.kind"),  # the enum's name, as stored
    "points": ("Int!", "p.points"),
    "status": ("TransactionStatus!", "p.status"),
    "description": ("String!", "p.description"),
    "reference": ("String", "p.reference"),
    "createdAt": ("DateTime!", _datetime("p.created_at")),
    "availableAt": ("DateTime", _datetime("p.available_at")),
    "expiresAt": ("DateTime", _datetime("p.expires_at")),
}
_ENTRY_COLUMNS = (
    "id, kind, points, status, description, reference, created_at, available_at, expires_at"
)
_EDGE_TYPES: Final = {"cursor": "String!", "node": "PointsTransaction!"}
_PAGE_INFO_TYPES: Final = {
    "hasNextPage": "Boolean!",
    "hasPreviousPage": "Boolean!",
    "startCursor": "String",
    "endCursor": "String",
}


class _Declined(Exception):
    """The document has something this module does not answer for."""


# What one of the member's fields is, given the member row, its object, the context and the
# statement's row (for the pages).
FieldValue = Callable[[LockedMember, Member, Context, Any], Awaitable[Any] | Any]


@dataclass(frozen=True, slots=True)
class _Field:
    response_name: str
    value: FieldValue
    awaits: bool


@dataclass(frozen=True, slots=True)
class _Root:
    response_name: str
    fields: tuple[_Field, ...] | None  # None: `__typename`


@dataclass(frozen=True, slots=True)
class MemberView:
    """A planned member view: the statement, and how each response key is answered."""

    statement: str
    roots: tuple[_Root, ...]

    async def answer(self, context: Context) -> dict[str, Any] | None:
        """The operation's `data` (it has no errors), or None, having written nothing,
        where the plan or strawberry must answer."""
        viewer = context.viewer
        direct = context.runtime.direct
        if viewer.role is not Role.MEMBER or viewer.member_id is None or direct is None:
            return None
        try:
            rows = await direct.read_rows(self.statement, viewer.member_id)
            if not rows:
                return None
            row = rows[0]
            member = LockedMember.from_record(row)
            if member.settlement_due(context.runtime.clock.now()):
                return None
            found = Member.from_row(member)
            data: dict[str, Any] = {}
            for root in self.roots:
                if root.fields is None:
                    data[root.response_name] = "Query"
                    continue
                view: dict[str, Any] = {}
                for field in root.fields:
                    value = field.value(member, found, context, row)
                    view[field.response_name] = await value if field.awaits else value
                data[root.response_name] = view
        except NotFlat:
            return None  # the general path completes it, and reports what it finds
        except Exception:
            # The general path reads again (on a new connection if this one was dropped)
            # and reports whatever is wrong as it always has.
            logger.debug("member view left to the general path", exc_info=True)
            return None
        context.member_settles_at = member.next_settlement_at
        return data


def plan_member_view(plan: OperationPlan) -> MemberView | None:
    """The member view of `plan`, or None where this module does not answer for it."""
    operation = plan.operation
    if operation.operation is not OperationType.QUERY or operation.variable_definitions:
        return None
    pages: list[str] = []
    roots: list[_Root] = []
    try:
        for root in plan.fields:
            if root.definition is TypeNameMetaFieldDef:
                roots.append(_Root(root.response_name, None))
                continue
            if root.parent_type.name != "Query" or root.field_name != "me":
                return None
            if root.nodes[0].arguments or field_permissions(root) != [MemberOnly]:
                return None
            member = _object(root.completion, "Member")
            roots.append(_Root(root.response_name, _member_fields(member, pages)))
    except _Declined:
        return None
    if not any(root.fields is not None for root in roots):
        return None
    columns = "".join(f",\n       ({page}) AS page_{index}" for index, page in enumerate(pages))
    statement = f"SELECT {MEMBER_COLUMNS}{columns}\nFROM members AS m\nWHERE m.id = $1"
    return MemberView(statement, tuple(roots))


# -- the member's fields --------------------------------------------------------------------


def _member_fields(member: ObjectCompletion, pages: list[str]) -> tuple[_Field, ...]:
    fields: list[_Field] = []
    for field in member.fields:
        name = field.response_name
        if field.definition is TypeNameMetaFieldDef:
            fields.append(_Field(name, _constant("Member"), awaits=False))
        elif field.field_name in ("tier", "tierProgress"):
            fields.append(_tier_field(field))
        elif field.field_name == "transactions":
            fields.append(_page_field(field, pages))
        else:
            reader = attribute_reader(field)
            complete = flat_of(field.completion)
            if reader is None or complete is None:
                raise _Declined(name)
            fields.append(_Field(name, _attribute(reader, complete), awaits=False))
    return tuple(fields)


def _constant(value: str) -> FieldValue:
    def read(_member: LockedMember, _found: Member, _context: Context, _row: Any) -> str:
        return value

    return read


def _attribute(reader: Callable[[Any], Any], complete: Flat) -> FieldValue:
    def read(_member: LockedMember, found: Member, _context: Context, _row: Any) -> Any:
        return complete(reader(found))

    return read


def _tier_field(field: FieldPlan) -> _Field:
    if field.nodes[0].arguments or field_permissions(field) != []:
        raise _Declined(field.field_name)
    complete = flat_of(field.completion)
    if complete is None:
        raise _Declined(field.field_name)
    rule = tier_of if field.field_name == "tier" else tier_progress_of

    async def read(member: LockedMember, _found: Member, context: Context, _row: Any) -> Any:
        return complete(await rule(context.loaders, member))

    return _Field(field.response_name, read, awaits=True)


def _page_field(field: FieldPlan, pages: list[str]) -> _Field:
    if field_permissions(field) != []:
        raise _Declined(field.field_name)
    try:  # the document's literals (no variables here), and the resolver's own page rule
        arguments = get_argument_values(field.definition, field.nodes[0])
        first = page_size(arguments.get("first"))
    except (GraphQLError, BadUserInput) as error:
        raise _Declined("`first` out of range") from error  # strawberry's error, not ours
    if arguments.get("after") is not None:
        raise _Declined("an `after`: not the newest page")
    column = f"page_{len(pages)}"
    pages.append(_connection(_object(field.completion, "PointsTransactionConnection"), first))

    def read(_member: LockedMember, _found: Member, _context: Context, row: Any) -> Any:
        return orjson.loads(row[column])

    return _Field(field.response_name, read, awaits=False)


# -- the page, in SQL --------------------------------------------------------------------------


def _connection(connection: ObjectCompletion, first: int) -> str:
    """The statement's subquery for one page: the member's newest `first` entries and one
    more (which only says there is a next page), as `Member.transactions` reads them."""
    shown = f"p.n <= {first}"
    keys: list[tuple[str, str]] = []
    for field in connection.fields:
        name = field.field_name
        if field.definition is TypeNameMetaFieldDef:
            keys.append((field.response_name, "'PointsTransactionConnection'"))
        elif name == "edges" and str(field.definition.type) == "[PointsTransactionEdge!]!":
            edge = _edge(_object(_items(field.completion), "PointsTransactionEdge"))
            edges = f"json_agg({edge} ORDER BY p.id DESC) FILTER (WHERE {shown})"
            keys.append((field.response_name, f"coalesce({edges}, '[]'::json)"))
        elif name == "pageInfo" and str(field.definition.type) == "PageInfo!":
            keys.append((field.response_name, _page_info(field, first, shown)))
        else:
            raise _Declined(name)  # totalCount, or a retyped field
    # Formatted into the statement: this module's SQL, integers, and GraphQL names (`_NAME`).
    # (`ledger_entries.points` is an integer column: every value fits GraphQL's Int.)
    return (
        f"SELECT {_object_sql(keys)}::text"  # noqa: S608
        f" FROM (SELECT {_ENTRY_COLUMNS}, row_number() OVER (ORDER BY e.id DESC) AS n"
        " FROM ledger_entries AS e WHERE e.member_id = m.id"
        f" ORDER BY e.id DESC LIMIT {first + 1}) AS p"
    )


def _edge(edge: ObjectCompletion) -> str:
    keys: list[tuple[str, str]] = []
    for field in edge.fields:
        if field.definition is TypeNameMetaFieldDef:
            keys.append((field.response_name, "'PointsTransactionEdge'"))
        elif _EDGE_TYPES.get(field.field_name) != str(field.definition.type):
            raise _Declined(field.field_name)
        elif field.field_name == "cursor":
            keys.append((field.response_name, _global_id("cursor", "p.id")))
        else:
            keys.append((field.response_name, _entry(_object(field.completion, None))))
    return _object_sql(keys)


def _entry(entry: ObjectCompletion) -> str:
    if entry.type.name != "PointsTransaction":
        raise _Declined(entry.type.name)
    keys: list[tuple[str, str]] = []
    for field in entry.fields:
        if field.definition is TypeNameMetaFieldDef:
            keys.append((field.response_name, "'PointsTransaction'"))
            continue
        known = _ENTRY_FIELDS.get(field.field_name)
        if known is None or known[0] != str(field.definition.type) or not field.basic:
            raise _Declined(field.field_name)
        keys.append((field.response_name, known[1]))
    return _object_sql(keys)


def _page_info(field: FieldPlan, first: int, shown: str) -> str:
    values = {
        "hasNextPage": f"count(*) > {first}",
        "hasPreviousPage": "false",  # no `after`: the newest page
        "startCursor": _global_id("cursor", f"max(p.id) FILTER (WHERE {shown})"),
        "endCursor": _global_id("cursor", f"min(p.id) FILTER (WHERE {shown})"),
    }
    keys: list[tuple[str, str]] = []
    for info in _object(field.completion, "PageInfo").fields:
        if info.definition is TypeNameMetaFieldDef:
            keys.append((info.response_name, "'PageInfo'"))
        elif _PAGE_INFO_TYPES.get(info.field_name) != str(info.definition.type):
            raise _Declined(info.field_name)
        else:
            keys.append((info.response_name, values[info.field_name]))
    return _object_sql(keys)


def _object_sql(keys: list[tuple[str, str]]) -> str:
    if not keys or len(keys) > _MAX_KEYS:
        raise _Declined("too many keys")
    for name, _ in keys:
        if not _NAME.fullmatch(name):
            raise _Declined(name)
    return "json_build_object(" + ", ".join(f"'{name}', {sql}" for name, sql in keys) + ")"


# -- plans ------------------------------------------------------------------------------------


def _object(completion: Completion, type_name: str | None) -> ObjectCompletion:
    """The object a field completes to (through non-null), of type `type_name` if given."""
    while isinstance(completion, NonNullCompletion):
        completion = completion.inner
    if not isinstance(completion, ObjectCompletion):
        raise _Declined(str(completion))
    object_type: GraphQLObjectType = completion.type
    if type_name is not None and object_type.name != type_name:
        raise _Declined(object_type.name)
    return completion


def _items(completion: Completion) -> Completion:
    """What a list field's items complete to (through non-null)."""
    while isinstance(completion, NonNullCompletion):
        completion = completion.inner
    if not isinstance(completion, ListCompletion):
        raise _Declined(str(completion))
    return completion.item
