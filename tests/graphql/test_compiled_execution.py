"""Compiled operations (`schema.compiled`) answer exactly what strawberry and graphql-core
answer, and decline, running nothing, whatever they cannot answer for.

A toy schema defined here produces each case on purpose: every document runs once through
`strawberry.Schema.execute` (the reference, its errors then coded by `code_errors` as the
compiled path codes its own) and once through `CompiledOperations.execute`, each with a fresh
context; the data must be equal and the errors' formatted forms equal, in the same order. The
last tests run real requests against the app over HTTP, with and without plans.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import re
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Annotated, Any, TypeVar, cast

import pytest
import strawberry
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.routing import Route
from strawberry.dataloader import DataLoader
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types import ExecutionResult

from api.graphql_view import LaurelGraphQL
from bench.workloads import DASHBOARD_QUERY, EARN_MUTATION, REDEEM_MUTATION
from models import KeyRole
from schema.compiled import CompiledOperations
from schema.compiled.plan import (
    Completion,
    FieldPlan,
    ListCompletion,
    NonNullCompletion,
    ObjectCompletion,
)
from schema.documents import DocumentCache
from schema.error_codes import MASKED_MESSAGE, code_errors
from schema.exceptions import Forbidden
from schema.limits import QueryLimits
from tests.conftest import START, Api, ApiFactory
from tests.graphql.test_persisted_queries import URQL_ACCEPT
from tests.graphql.test_rewards_api import CREATE_TIER, Someone, call, new_member, new_reward, ok

# -- the toy schema ---------------------------------------------------------------------------


@dataclass
class Ctx:
    """One execution's context: what its resolvers did, and its DataLoader."""

    log: list[str] = field(default_factory=list)
    batches: list[list[int]] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    counter: int = 0
    met: dict[str, asyncio.Event] = field(
        default_factory=lambda: {"left": asyncio.Event(), "right": asyncio.Event()}
    )
    authors: DataLoader[int, Author] = field(init=False)

    def __post_init__(self) -> None:
        self.authors = DataLoader(load_fn=self._load_authors)

    async def _load_authors(self, keys: list[int]) -> list[Author]:
        self.batches.append(list(keys))
        return [AUTHORS[key] for key in keys]


Info = strawberry.Info[Ctx, None]


async def ticks(count: int) -> None:
    """Give the event loop `count` turns."""
    for _ in range(count):
        await asyncio.sleep(0)


async def later(value: int) -> int:
    await ticks(value)
    return value


def describe(info: Info, tag: str) -> str:
    """All a resolver can read of its resolve info."""
    raw = info._raw_info
    return repr(
        (
            tag,
            raw.field_name,
            [node.alias.value if node.alias else None for node in raw.field_nodes],
            str(raw.return_type),
            raw.parent_type.name,
            raw.path.as_list(),
            raw.path.typename,
            sorted(raw.fragments),
            raw.root_value,
            raw.operation.name.value if raw.operation.name else None,
            raw.variable_values,
            raw.context is info.context,
            raw.is_awaitable.__name__,
            raw.abort_signal,
            type(raw.async_helpers).__name__,
            raw.operation_extensions,  # type: ignore[attr-defined]
            info.selected_fields,  # dataclasses: their repr shows every nested selection
        )
    )


@strawberry.enum
class Color(Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


@strawberry.input
class Shelf:
    label: str
    colors: list[Color] = strawberry.field(default_factory=lambda: [Color.RED])
    limit: int = 2


@strawberry.interface
class Named:
    name: str


@strawberry.type
class Author(Named):
    id: int

    @strawberry.field
    def books(self) -> list[Book]:
        return [book for book in BOOKS if book.author_id == self.id]


@strawberry.type
class Book:
    id: int
    title: str
    author_id: strawberry.Private[int]

    @strawberry.field
    async def author(self, info: Info) -> Author:
        info.context.log.append(f"author of {self.id}")
        return await info.context.authors.load(self.author_id)

    @strawberry.field
    def probe(self, info: Info, tag: str = "") -> str:
        return describe(info, tag)

    @strawberry.field
    async def blurb(self, info: Info, words: int = 2) -> str:
        await ticks(self.id % 3)
        info.context.log.append(f"blurb of {self.id}")
        return " ".join(self.title.split()[:words])


@strawberry.type
class Gadget:
    label: str


Thing = Annotated[Book | Gadget, strawberry.union("Thing")]

AUTHORS = {1: Author(id=1, name="Ursula"), 2: Author(id=2, name="Italo")}
BOOKS = [
    Book(id=1, title="The Dispossessed Anarres Story", author_id=1),
    Book(id=2, title="Invisible Cities", author_id=2),
    Book(id=3, title="The Lathe of Heaven", author_id=1),
    Book(id=4, title="If on a winter's night", author_id=2),
]


@strawberry.type
class Leaves:
    """Attributes only (so completed flat), holding values at the edges of the built-in
    scalars' output coercion (the flat path returns some as they are, `plan._flat_leaf`)."""

    number: int
    text: str
    flag: bool
    ident: strawberry.ID


class Text(str):
    """A str of another type."""


EDGE_LEAVES: list[Any] = [
    (2**31 - 1, "plain", True, "7"),
    (-(2**31), Text("sub"), False, 7),
    (True, True, 1.0, 7.0),
    (2.0, 3.5, 0, Text("i")),
]


@strawberry.type
class Holder:
    """Fields that fail on demand, at every nullability."""

    value: str = "ok"
    fails: strawberry.Private[bool] = True

    @strawberry.field
    def boom(self) -> str:
        if self.fails:
            raise ValueError("boom")
        return "fine"

    @strawberry.field
    async def async_boom(self) -> str:
        await ticks(1)
        if self.fails:
            raise ValueError("async boom")
        return "fine"

    @strawberry.field
    def nullable_boom(self) -> str | None:
        raise ValueError("nullable boom")

    @strawberry.field
    async def slow_note(self, info: Info) -> str | None:
        await asyncio.sleep(0.01)
        info.context.finished.append("slow note")
        raise ValueError("slow note failed")

    @strawberry.field
    def inner(self) -> Holder:
        return Holder(fails=self.fails)

    @strawberry.field
    def maybe(self) -> Holder | None:
        return Holder(fails=self.fails)


@strawberry.type
class Checked:
    """An object type whose runtime check is asynchronous."""

    value: int

    @classmethod
    async def is_type_of(cls, obj: Any, _info: Any) -> bool:
        await ticks(1)
        return isinstance(obj, Checked)


@strawberry.type
class Tagged:
    """An object type whose runtime check notes the path of the resolve info it is given."""

    value: int

    @classmethod
    def is_type_of(cls, obj: Any, info: Any) -> bool:
        info.context.log.append(f"is_type_of {info.field_name} at {info.path.as_list()}")
        return isinstance(obj, Tagged)


@strawberry.type
class Crate:
    """Attribute fields only (strawberry's "basic" fields: no resolve info is built)."""

    owner: Author | None
    tagged: list[Tagged]
    first: Tagged


def pending_items(info: Info, *items: int | Exception) -> Iterator[Any]:
    """Items, each an awaitable (numbers) or an exception, the awaitables noting their end."""

    async def later(value: int) -> int:
        await ticks(value)
        info.context.finished.append(f"item {value}")
        return value

    for item in items:
        yield item if isinstance(item, Exception) else later(item)


async def count_up() -> AsyncIterator[int]:
    for number in (1, 2, 3):
        yield number


@strawberry.type
class Query:
    @strawberry.field
    def greeting(self, name: str = "you", excited: bool = False) -> str:
        return f"hello {name}{'!' if excited else '.'}"

    @strawberry.field
    async def slow_greeting(self, name: str) -> str:
        await ticks(2)
        return f"hello {name}, slowly"

    @strawberry.field
    def colors(self, only: list[Color] | None = None) -> list[Color]:
        return [color for color in Color if only is None or color in only]

    @strawberry.field
    def describe_shelf(self, shelf: Shelf) -> str:
        colors = ",".join(color.value for color in shelf.colors)
        return f"{shelf.label}:{colors}:{shelf.limit}"

    @strawberry.field
    def total(self, numbers: list[int], start: int = 0) -> int:
        return start + sum(numbers)

    @strawberry.field
    def limited(self, n: int = 5) -> int:
        return n

    @strawberry.field
    def book(self, id: int) -> Book | None:
        return next((book for book in BOOKS if book.id == id), None)

    @strawberry.field
    def books(self) -> list[Book]:
        return BOOKS

    @strawberry.field
    async def async_books(self) -> list[Book]:
        await ticks(1)
        return BOOKS[::-1]

    @strawberry.field
    def authors(self) -> list[Author]:
        return list(AUTHORS.values())

    @strawberry.field
    def matrix(self) -> list[list[int | None]]:
        return [[1, 2], [], [None, 4]]

    @strawberry.field
    def pending_numbers(self, info: Info) -> list[int]:
        return list(pending_items(info, 3, 1, 2))

    @strawberry.field
    def probe(self, info: Info, tag: str = "") -> str:
        return describe(info, tag)

    @strawberry.field
    async def helped(self, info: Info) -> list[int]:
        """Through the resolve info's async helpers: gathered work, and tracked side work."""

        async def side() -> None:
            await ticks(2)
            info.context.finished.append("tracked")

        info._raw_info.async_helpers.track([side(), "not awaitable"])
        gathered: list[int] = await info._raw_info.async_helpers.gather([later(2), later(1)])
        return gathered

    @strawberry.field
    def nullable_boom(self) -> str | None:
        raise ValueError("nullable boom")

    @strawberry.field
    def coded_boom(self) -> str | None:
        raise Forbidden("not yours")

    @strawberry.field
    def holder(self) -> Holder | None:
        return Holder()

    @strawberry.field
    def leaves(self, huge: bool = False) -> list[Leaves]:
        edges = [*EDGE_LEAVES, (2**31, "x", True, "1")] if huge else EDGE_LEAVES
        return [Leaves(number=n, text=t, flag=f, ident=i) for n, t, f, i in edges]

    @strawberry.field
    def required(self) -> Holder:
        return Holder()

    @strawberry.field
    def holders(self) -> list[Holder | None]:
        return [Holder(value="a", fails=False), Holder(value="b"), Holder(value="c", fails=False)]

    @strawberry.field
    def strict_holders(self) -> list[Holder] | None:
        return [Holder(value="a", fails=False), Holder(value="b"), Holder(value="c", fails=False)]

    @strawberry.field
    def strict_pending(self, info: Info) -> list[int] | None:
        # A non-null item fails while earlier items are pending and later ones unstarted.
        return cast("list[int]", pending_items(info, 2, 1, ValueError("bad item"), 3))

    @strawberry.field
    def loose_pending(self, info: Info) -> list[int | None]:
        return cast("list[int | None]", list(pending_items(info, 2, ValueError("bad item"), 1)))

    @strawberry.field
    def non_null_none(self) -> str:
        return cast("str", None)

    @strawberry.field
    async def async_non_null_none(self) -> str:
        await ticks(1)
        return cast("str", None)

    @strawberry.field
    def bad_int(self) -> int | None:
        return cast("int", "abc")

    @strawberry.field
    def huge_int(self) -> int | None:
        return 2**40

    @strawberry.field
    def not_a_number(self) -> float | None:
        return math.nan

    @strawberry.field
    def object_string(self) -> str | None:
        return cast("str", {"a": 1})

    @strawberry.field
    def bad_color(self) -> Color | None:
        return cast("Color", "purple")

    @strawberry.field
    def strict_colors(self) -> list[Color] | None:
        return cast("list[Color]", [Color.RED, "purple"])

    @strawberry.field
    def not_a_list(self, kind: str) -> list[int] | None:
        values: dict[str, Any] = {"int": 5, "dict": {"a": 1}, "str": "abc"}
        return cast("list[int]", values[kind])

    @strawberry.field
    def wrong_author(self) -> Author | None:
        return cast("Author", BOOKS[0])

    @strawberry.field
    def crate(self, wrong: bool = False) -> Crate:
        owner = cast("Author", BOOKS[0]) if wrong else AUTHORS[1]
        return Crate(owner=owner, tagged=[Tagged(value=1), Tagged(value=2)], first=Tagged(value=0))

    @strawberry.field
    def tagged(self) -> list[Tagged]:
        return [Tagged(value=1), Tagged(value=2)]

    @strawberry.field
    def checked(self, ok: bool) -> Checked | None:
        return Checked(value=1) if ok else cast("Checked", Gadget(label="not checked"))

    @strawberry.field
    async def fail_after(self, turns: int, message: str) -> str | None:
        await ticks(turns)
        raise ValueError(message)

    @strawberry.field
    async def meet(self, info: Info, side: str) -> str:
        return await meet(info, side)

    @strawberry.field
    def async_items(self) -> list[int]:
        return cast("list[int]", count_up())

    @strawberry.field
    def named(self) -> Named:
        return AUTHORS[1]

    @strawberry.field
    def thing(self) -> Thing:
        return Gadget(label="gadget")


async def meet(info: Info, side: str) -> str:
    """Wait for the other side: only fields run concurrently ever meet."""
    other = "right" if side == "left" else "left"
    info.context.met[side].set()
    await info.context.met[other].wait()
    return f"{side} met {other}"


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def add(self, info: Info, amount: int) -> int:
        info.context.log.append(f"add {amount} starts")
        await asyncio.sleep(0.01 * amount)
        info.context.counter += amount
        info.context.log.append(f"add {amount} ends")
        return info.context.counter

    @strawberry.mutation
    async def double(self, info: Info) -> int:
        info.context.log.append("double starts")
        await ticks(1)
        info.context.counter *= 2
        info.context.log.append("double ends")
        return info.context.counter

    @strawberry.mutation
    def fail_required(self, info: Info) -> int:
        info.context.log.append("fail required")
        raise ValueError("mutation failed")

    @strawberry.mutation
    async def meet(self, info: Info, side: str) -> str:
        return await meet(info, side)


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def numbers(self) -> AsyncGenerator[int, None]:
        yield 1


SCHEMA = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)

# -- running both ways ------------------------------------------------------------------------


def compiled_operations(*, mask_internal: bool = False) -> CompiledOperations:
    """Plans for the toy schema, wrapped as `schema.schema.build_schema` wraps the app's."""
    return CompiledOperations(
        SCHEMA._schema, DocumentCache(QueryLimits()), mask_internal=mask_internal
    )


@dataclass
class Run:
    result: ExecutionResult
    context: Ctx

    @property
    def data(self) -> Any:
        return self.result.data

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [dict(error.formatted) for error in self.result.errors or ()]


async def reference(
    query: str,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
    *,
    mask_internal: bool = False,
    extensions: dict[str, Any] | None = None,
) -> Run:
    """What strawberry and graphql-core answer, errors coded as the compiled path codes them."""
    context = Ctx()
    result = await SCHEMA.execute(
        query,
        variable_values=variables,
        context_value=context,
        operation_name=operation_name,
        operation_extensions=extensions,
    )
    if result.errors:
        result.errors = code_errors(result.errors, mask_internal=mask_internal)
    return Run(result, context)


async def compiled(
    query: str,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
    *,
    mask_internal: bool = False,
    extensions: dict[str, Any] | None = None,
    operations: CompiledOperations | None = None,
) -> Run:
    """What the compiled path answers (it must answer)."""
    if operations is None:  # (not `or`: an empty CompiledOperations is falsy)
        operations = compiled_operations(mask_internal=mask_internal)
    assert operations.find(query, operation_name) is not None, "the document has no plan"
    context = Ctx()
    result = await operations.execute(
        query,
        operation_name=operation_name,
        variables=variables,
        context=context,
        allowed_types={"query", "mutation"},
        operation_extensions=extensions,
    )
    assert result is not None, "the compiled path declined"
    return Run(result, context)


async def both(
    query: str,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
    **options: Any,
) -> tuple[Run, Run]:
    """(reference, compiled): the same data and the same errors, in the same order."""
    expected = await reference(query, variables, operation_name, **options)
    got = await compiled(query, variables, operation_name, **options)
    assert got.data == expected.data
    assert got.errors == expected.errors
    return expected, got


def messages(run: Run) -> list[tuple[str, list[str | int] | None]]:
    return [(error["message"], error.get("path")) for error in run.errors]


async def settled() -> None:
    """Let work left in the background finish, and collect what nothing refers to any more."""
    await asyncio.sleep(0.05)
    gc.collect()


# -- data: resolvers, arguments, selections ---------------------------------------------------


async def test_sync_async_and_attribute_fields_give_the_same_data() -> None:
    query = '{ greeting slowGreeting(name: "ann") book(id: 2) { id title author { name } } }'

    expected, _ = await both(query)

    assert expected.data == {
        "greeting": "hello you.",
        "slowGreeting": "hello ann, slowly",
        "book": {"id": 2, "title": "Invisible Cities", "author": {"name": "Italo"}},
    }


@pytest.mark.parametrize(
    ("query", "variables", "data"),
    [
        pytest.param(
            '{ greeting(name: "bo", excited: true) }',
            None,
            {"greeting": "hello bo!"},
            id="literals",
        ),
        pytest.param(
            "query($n: String!, $e: Boolean) { greeting(name: $n, excited: $e) }",
            {"n": "cy", "e": True},
            {"greeting": "hello cy!"},
            id="variables",
        ),
        pytest.param(
            'query($n: String = "dee") { greeting(name: $n) }',
            {},
            {"greeting": "hello dee."},
            id="variable default",
        ),
        pytest.param(
            "query($n: String) { greeting(name: $n) }",
            {},
            {"greeting": "hello you."},
            id="unset variable: argument default",
        ),
        pytest.param(
            "{ all: colors some: colors(only: [BLUE, RED]) one: colors(only: GREEN) }",
            None,
            {"all": ["RED", "GREEN", "BLUE"], "some": ["RED", "BLUE"], "one": ["GREEN"]},
            id="enums and lists (one item coerced to a list)",
        ),
        pytest.param(
            "query($only: [Color!]) { colors(only: $only) }",
            {"only": ["GREEN", "BLUE"]},
            {"colors": ["GREEN", "BLUE"]},
            id="enum list variable",
        ),
        pytest.param(
            '{ a: describeShelf(shelf: {label: "x"}) '
            'b: describeShelf(shelf: {label: "y", colors: [GREEN, BLUE], limit: 7}) }',
            None,
            {"a": "x:red:2", "b": "y:green,blue:7"},
            id="input object literals, with defaults",
        ),
        pytest.param(
            "query($shelf: Shelf!) { describeShelf(shelf: $shelf) }",
            {"shelf": {"label": "z", "colors": ["BLUE"]}},
            {"describeShelf": "z:blue:2"},
            id="input object variable",
        ),
        pytest.param(
            'query($c: Color!) { describeShelf(shelf: {label: "w", colors: [$c]}) }',
            {"c": "GREEN"},
            {"describeShelf": "w:green:2"},
            id="variable inside an input literal",
        ),
        pytest.param(
            "query($ns: [Int!]!, $s: Int) { total(numbers: $ns) from10: total(numbers: $ns, "
            "start: 10) withS: total(numbers: [1, 2], start: $s) }",
            {"ns": [1, 2, 3], "s": 5},
            {"total": 6, "from10": 16, "withS": 8},
            id="list variable",
        ),
        pytest.param(
            "{ book(id: 3) { blurb b1: blurb(words: 1) b4: blurb(words: 4) } }",
            None,
            {"book": {"blurb": "The Lathe", "b1": "The", "b4": "The Lathe of Heaven"}},
            id="arguments on nested fields",
        ),
    ],
)
async def test_arguments_from_literals_variables_and_defaults_are_the_same(
    query: str, variables: dict[str, Any] | None, data: dict[str, Any]
) -> None:
    expected, _ = await both(query, variables)

    assert expected.data == data


async def test_a_plan_runs_again_with_other_variables() -> None:
    operations = compiled_operations()
    query = "query($id: Int!) { book(id: $id) { title author { name } } }"

    for book_id, title in ((1, "The Dispossessed Anarres Story"), (4, "If on a winter's night")):
        expected = await reference(query, {"id": book_id})
        got = await compiled(query, {"id": book_id}, operations=operations)
        assert got.data == expected.data
        assert got.data["book"]["title"] == title
    assert len(operations) == 1  # one plan, run twice


async def test_aliases_and_a_field_selected_twice_are_merged_the_same_way() -> None:
    query = """{
        book(id: 1) { title }
        book(id: 1) { id author { name } }
        first: book(id: 1) { id }
        second: book(id: 2) { t: title title t2: title }
        book(id: 1) { author { id } }
    }"""

    expected, _ = await both(query)

    assert expected.data == {
        "book": {
            "title": "The Dispossessed Anarres Story",
            "id": 1,
            "author": {"name": "Ursula", "id": 1},
        },
        "first": {"id": 1},
        "second": {"t": "Invisible Cities", "title": "Invisible Cities", "t2": "Invisible Cities"},
    }


async def test_fragments_inline_fragments_and_typename_at_every_level_are_the_same() -> None:
    query = """
        query Shelf {
            __typename
            books { ...BookParts ... on Book { id __typename } }
            ... on Query { book(id: 2) { ... { title } author { ...AuthorParts } } }
        }
        fragment BookParts on Book { title author { ...AuthorParts } }
        fragment AuthorParts on Author { __typename name books { __typename id } }
    """

    expected, _ = await both(query)

    data = expected.data
    assert data["__typename"] == "Query"
    assert data["books"][0] == {
        "title": "The Dispossessed Anarres Story",
        "author": {
            "__typename": "Author",
            "name": "Ursula",
            "books": [{"__typename": "Book", "id": 1}, {"__typename": "Book", "id": 3}],
        },
        "id": 1,
        "__typename": "Book",
    }
    assert data["book"]["title"] == "Invisible Cities"


async def test_typename_on_the_mutation_root_is_the_same() -> None:
    expected, _ = await both("mutation { __typename add(amount: 1) t: __typename }")

    assert expected.data == {"__typename": "Mutation", "add": 1, "t": "Mutation"}


async def test_skip_and_include_with_literal_booleans_select_the_same_fields() -> None:
    query = """{
        a: greeting @skip(if: true)
        b: greeting @skip(if: false)
        c: greeting @include(if: false)
        d: greeting @include(if: true) @skip(if: true)
        book(id: 1) {
            id @include(if: false)
            ... on Book @skip(if: true) { title }
            ...Parts @include(if: true)
        }
    }
    fragment Parts on Book { author { name } }"""

    expected, _ = await both(query)

    assert expected.data == {"b": "hello you.", "book": {"author": {"name": "Ursula"}}}


async def test_resolvers_see_the_same_resolve_info() -> None:
    query = """query Probing($tag: String = "v", $other: String) {
        probe
        aliased: probe(tag: $tag)
        ...Probe
        books { probe(tag: $other) ... on Book { probe(tag: $other) } author { name } }
    }
    fragment Probe on Query { p2: probe(tag: $other) }"""

    expected, got = await both(query, {"other": "o"}, extensions={"trace": "x"})

    assert (
        "['aliased'], 'String!', 'Query', ['aliased'], 'Query', ['Probe'], None, "
        in (expected.data["aliased"])
    )
    assert "{'tag': 'v', 'other': 'o'}" in got.data["aliased"]
    assert "{'trace': 'x'}" in got.data["probe"]
    assert "['books', 2, 'probe'], 'Book', " in got.data["books"][2]["probe"]


async def test_resolvers_async_helpers_gather_and_track_alike() -> None:
    expected, got = await both("{ helped }")
    await settled()

    assert expected.data == {"helped": [2, 1]}
    assert got.context.finished == expected.context.finished == ["tracked"]


# -- lists and asynchronous items --------------------------------------------------------------


async def test_a_list_of_objects_loads_its_items_in_one_dataloader_batch_on_both_paths() -> None:
    query = "{ books { title author { name books { id author { id } } } } }"

    expected, got = await both(query)

    assert [book["author"]["name"] for book in expected.data["books"]] == [
        "Ursula",
        "Italo",
        "Ursula",
        "Italo",
    ]
    assert expected.context.batches == [[1, 2]]  # both levels: the second hits the cache
    assert got.context.batches == expected.context.batches
    assert got.context.log == expected.context.log  # resolvers called in the same order


async def test_async_fields_of_list_items_finish_in_the_same_order() -> None:
    query = "{ asyncBooks { id blurb author { name } } books { blurb(words: 1) } }"

    expected, got = await both(query)

    assert [book["id"] for book in expected.data["asyncBooks"]] == [4, 3, 2, 1]
    assert got.context.log == expected.context.log
    assert got.context.batches == expected.context.batches == [[2, 1]]


async def test_nested_lists_and_lists_of_awaitables_complete_the_same_way() -> None:
    expected, got = await both("{ matrix pendingNumbers }")

    assert expected.data == {"matrix": [[1, 2], [], [None, 4]], "pendingNumbers": [3, 1, 2]}
    assert got.context.finished == expected.context.finished == ["item 1", "item 2", "item 3"]


async def test_a_list_field_may_return_an_async_iterable() -> None:
    expected, _ = await both("{ asyncItems }")

    assert expected.data == {"asyncItems": [1, 2, 3]}


# -- errors -----------------------------------------------------------------------------------


async def test_an_error_in_a_nullable_field_nulls_that_field_only() -> None:
    expected, _ = await both("{ greeting nullableBoom holder { value nullableBoom } }")

    assert expected.data == {
        "greeting": "hello you.",
        "nullableBoom": None,
        "holder": {"value": "ok", "nullableBoom": None},
    }
    assert messages(expected) == [
        ("nullable boom", ["nullableBoom"]),
        ("nullable boom", ["holder", "nullableBoom"]),
    ]
    assert {error["extensions"]["code"] for error in expected.errors} == {"INTERNAL_SERVER_ERROR"}


@pytest.mark.parametrize("boom", ["boom", "asyncBoom"])
async def test_an_error_in_a_non_null_field_nulls_the_nearest_nullable_parent(boom: str) -> None:
    query = f"{{ holder {{ value maybe {{ value inner {{ inner {{ {boom} }} }} }} }} }}"

    expected, _ = await both(query)

    assert expected.data == {"holder": {"value": "ok", "maybe": None}}
    assert len(expected.errors) == 1
    assert expected.errors[0]["path"] == ["holder", "maybe", "inner", "inner", boom]


@pytest.mark.parametrize("boom", ["boom", "asyncBoom"])
async def test_an_error_reaching_a_non_null_root_field_nulls_all_the_data(boom: str) -> None:
    expected, _ = await both(f"{{ greeting holder {{ value }} required {{ inner {{ {boom} }} }} }}")

    assert expected.data is None
    assert messages(expected) == [(boom.replace("B", " b"), ["required", "inner", boom])]


@pytest.mark.parametrize(
    ("field", "data"),
    [
        pytest.param(
            "holders",
            {"holders": [{"value": "a", "boom": "fine"}, None, {"value": "c", "boom": "fine"}]},
            id="nullable items: the item is null",
        ),
        pytest.param(
            "strictHolders", {"strictHolders": None}, id="non-null items: the list is null"
        ),
    ],
)
async def test_an_error_in_a_list_item_nulls_the_item_or_the_list(
    field: str, data: dict[str, Any]
) -> None:
    expected, _ = await both(f"{{ {field} {{ value boom }} }}")

    assert expected.data == data
    assert messages(expected) == [("boom", [field, 1, "boom"])]


async def test_a_failing_list_item_is_null_in_a_list_of_nullable_items() -> None:
    expected, got = await both("{ loosePending }")

    assert expected.data == {"loosePending": [2, None, 1]}
    assert messages(expected) == [("bad item", ["loosePending", 1])]
    assert got.context.finished == expected.context.finished == ["item 1", "item 2"]


async def test_a_failing_non_null_item_leaves_its_pending_siblings_to_settle() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expected, got = await both("{ strictPending greeting }")
        await settled()

    assert expected.data == {"strictPending": None, "greeting": "hello you."}
    assert messages(expected) == [("bad item", ["strictPending", 2])]
    # Started items and the one after the failure (drained from the iterator) still ran.
    assert sorted(got.context.finished) == sorted(expected.context.finished)
    assert sorted(expected.context.finished) == ["item 1", "item 2", "item 3"]
    assert not [warning for warning in caught if "never awaited" in str(warning.message)]


async def test_a_non_null_field_returning_none_is_an_error() -> None:
    expected, _ = await both("{ holder { value } nonNullNone }")
    assert expected.data is None
    assert messages(expected) == [
        ("Cannot return null for non-nullable field Query.nonNullNone.", ["nonNullNone"])
    ]

    expected, _ = await both("{ asyncNonNullNone }")
    assert messages(expected) == [
        ("Cannot return null for non-nullable field Query.asyncNonNullNone.", ["asyncNonNullNone"])
    ]


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("badInt", "Int cannot represent non-integer value: 'abc'"),
        ("hugeInt", "Int cannot represent non 32-bit signed integer value: 1099511627776"),
        ("notANumber", "Float cannot represent non numeric value: nan"),
        ("objectString", "String cannot represent value: {'a': 1}"),
        ("badColor", "Enum 'Color' cannot represent value: 'purple'"),
    ],
)
async def test_a_leaf_that_cannot_be_coerced_is_an_error(field: str, message: str) -> None:
    expected, _ = await both(f"{{ {field} greeting }}")

    assert expected.data == {field: None, "greeting": "hello you."}
    assert len(expected.errors) == 1
    assert expected.errors[0]["path"] == [field]
    assert expected.errors[0]["message"] == message


async def test_flat_objects_coerce_their_leaves_as_graphql_core_does() -> None:
    expected, _ = await both("{ leaves { number text flag ident } }")
    assert expected.data == {
        "leaves": [
            {"number": 2**31 - 1, "text": "plain", "flag": True, "ident": "7"},
            {"number": -(2**31), "text": "sub", "flag": False, "ident": "7"},
            {"number": 1, "text": "true", "flag": True, "ident": "7"},
            {"number": 2, "text": "3.5", "flag": False, "ident": "i"},
        ]
    }

    expected, _ = await both("{ leaves(huge: true) { number ident } }")
    assert messages(expected) == [
        (
            "Int cannot represent non 32-bit signed integer value: 2147483648",
            ["leaves", 4, "number"],
        )
    ]


async def test_an_enum_value_that_is_no_member_nulls_a_list_of_non_null_items() -> None:
    expected, _ = await both("{ strictColors }")

    assert expected.data == {"strictColors": None}
    assert messages(expected) == [
        ("Enum 'Color' cannot represent value: 'purple'", ["strictColors", 1])
    ]


@pytest.mark.parametrize("kind", ["int", "dict", "str"])
async def test_a_list_field_returning_a_non_iterable_is_an_error(kind: str) -> None:
    expected, _ = await both(f'{{ notAList(kind: "{kind}") }}')

    assert expected.data == {"notAList": None}
    assert messages(expected) == [
        ("Expected Iterable, but did not find one for field 'Query.notAList'.", ["notAList"])
    ]


async def test_an_object_field_returning_another_type_is_an_error() -> None:
    query = """{ wrongAuthor { name } checked(ok: false) { value } ok: checked(ok: true) { value }
        crate(wrong: true) { owner { name } } }"""

    expected, _ = await both(query)

    assert expected.data == {
        "wrongAuthor": None,
        "checked": None,
        "ok": {"value": 1},
        "crate": {"owner": None},
    }
    assert [(error["message"].split(" but ")[0], error["path"]) for error in expected.errors] == [
        ("Expected value of type 'Author'", ["wrongAuthor"]),
        ("Expected value of type 'Author'", ["crate", "owner"]),  # (an attribute field)
        ("Expected value of type 'Checked'", ["checked"]),  # last: its check is asynchronous
    ]


async def test_a_runtime_type_check_gets_the_same_resolve_info() -> None:
    expected, got = await both("{ tagged { value } crate { first { value } } }")

    assert expected.data == {
        "tagged": [{"value": 1}, {"value": 2}],
        "crate": {"first": {"value": 0}},
    }
    assert got.context.log == expected.context.log
    assert expected.context.log == [
        "is_type_of tagged at ['tagged']",
        "is_type_of tagged at ['tagged']",
        "is_type_of first at ['crate', 'first']",
    ]


async def test_a_runtime_type_check_on_items_of_an_attribute_list_gets_the_fields_info() -> None:
    expected, got = await both("{ crate { tagged { value } } }")

    assert expected.context.log == ["is_type_of tagged at ['crate', 'tagged']"] * 2
    assert got.context.log == expected.context.log


async def test_an_argument_that_fails_at_execution_is_the_same_error() -> None:
    # A nullable variable may stand for an argument with a default; null is then refused.
    query = "query($n: Int) { limited(n: $n) greeting }"

    expected, _ = await both(query, {"n": None})

    assert expected.data is None
    assert messages(expected) == [
        (
            "Argument 'n' has invalid value:"
            " Expected variable '$n' provided to non-null type 'Int!' not to be None.",
            ["limited"],
        )
    ]
    assert expected.errors[0]["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}


async def test_a_propagating_error_lets_its_pending_async_sibling_settle() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expected, got = await both("{ holder { slowNote value boom } greeting }")
        root_expected, root_got = await both("{ holder { slowNote } required { slowNote boom } }")
        await settled()

    assert expected.data == {"holder": None, "greeting": "hello you."}
    assert messages(expected) == [("boom", ["holder", "boom"])]  # slowNote's error: under a null
    assert root_expected.data is None
    assert messages(root_expected) == [("boom", ["required", "boom"])]
    for run in (expected, got):
        assert run.context.finished == ["slow note"]
    for run in (root_expected, root_got):
        assert run.context.finished == ["slow note", "slow note"]
    assert not [warning for warning in caught if "never awaited" in str(warning.message)]


async def test_an_async_error_propagating_cancels_its_pending_siblings_alike() -> None:
    expected, got = await both("{ required { slowNote asyncBoom } holder { value } }")
    await settled()

    assert expected.data is None
    assert messages(expected) == [("async boom", ["required", "asyncBoom"])]
    # graphql-core's gather_with_cancel cancels the sibling still sleeping: it never ends.
    assert got.context.finished == expected.context.finished == []


async def test_errors_come_in_the_same_order() -> None:
    # Every failure's moment is fixed by counting event-loop turns, so graphql-core's order
    # (the order in which the errors happen) is deterministic.
    query = """{
        a: failAfter(turns: 3, message: "a")
        b: failAfter(turns: 1, message: "b")
        holder { nullableBoom maybe { asyncBoom } }
        c: failAfter(turns: 0, message: "c")
        holders { boom }
        nullableBoom
        d: failAfter(turns: 1, message: "d")
    }"""

    expected, _ = await both(query)

    assert [error["message"] for error in expected.errors] == [
        "nullable boom",
        "boom",
        "nullable boom",
        "c",
        "b",
        "async boom",
        "d",
        "a",
    ]


async def test_internal_errors_are_masked_and_coded_errors_kept_alike() -> None:
    query = "{ nullableBoom codedBoom holder { value boom } greeting }"

    expected, got = await both(query, mask_internal=True)

    assert expected.data == {
        "nullableBoom": None,
        "codedBoom": None,
        "holder": None,
        "greeting": "hello you.",
    }
    assert [(error["message"], error["extensions"]) for error in got.errors] == [
        (MASKED_MESSAGE, {"code": "INTERNAL_SERVER_ERROR"}),
        ("not yours", {"code": "FORBIDDEN"}),
        (MASKED_MESSAGE, {"code": "INTERNAL_SERVER_ERROR"}),
    ]
    assert got.errors[2]["path"] == ["holder", "boom"]


# -- mutations and concurrency ----------------------------------------------------------------


async def test_mutation_root_fields_run_serially_in_document_order() -> None:
    # The first `add` sleeps longest: run concurrently, `double` would see 0.
    query = "mutation { first: add(amount: 3) double second: add(amount: 1) }"

    expected, got = await both(query)

    assert expected.data == {"first": 3, "double": 6, "second": 7}
    assert got.context.log == expected.context.log
    assert expected.context.log == [
        "add 3 starts",
        "add 3 ends",
        "double starts",
        "double ends",
        "add 1 starts",
        "add 1 ends",
    ]


async def test_a_failing_non_null_mutation_field_stops_the_later_ones() -> None:
    query = "mutation { add(amount: 1) failRequired double }"

    expected, got = await both(query)

    assert expected.data is None
    assert messages(expected) == [("mutation failed", ["failRequired"])]
    assert (
        got.context.log == expected.context.log == ["add 1 starts", "add 1 ends", "fail required"]
    )


async def test_query_root_fields_run_concurrently() -> None:
    # Each side waits for the other: run one after the other, they would wait forever.
    query = '{ l: meet(side: "left") r: meet(side: "right") }'

    expected = await asyncio.wait_for(reference(query), timeout=2)
    got = await asyncio.wait_for(compiled(query), timeout=2)

    assert got.data == expected.data == {"l": "left met right", "r": "right met left"}

    # The same fields as mutation root fields never meet, on either path.
    mutation = 'mutation { l: meet(side: "left") r: meet(side: "right") }'
    for run in (reference, compiled):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(run(mutation), timeout=0.2)


# -- declining --------------------------------------------------------------------------------


async def execute_compiled(
    operations: CompiledOperations,
    query: str,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
    allowed_types: frozenset[str] = frozenset({"query", "mutation"}),
) -> ExecutionResult | None:
    context = Ctx()
    result = await operations.execute(
        query,
        operation_name=operation_name,
        variables=variables,
        context=context,
        allowed_types=allowed_types,
    )
    assert context.log == [] and context.batches == []  # nothing ran
    return result


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("{ __schema { queryType { name } } greeting }", id="__schema"),
        pytest.param('{ __type(name: "Book") { name } }', id="__type"),
        pytest.param("{ named { name } }", id="interface field"),
        pytest.param("{ thing { ... on Gadget { label } } }", id="union field"),
        pytest.param("{ book(id: 1) { author { books { id } } } named { __typename } }", id="deep"),
        pytest.param("query($s: Boolean!) { greeting @skip(if: $s) }", id="@skip($var)"),
        pytest.param(
            "query($i: Boolean!) { book(id: 1) { ... on Book @include(if: $i) { id } } }",
            id="@include($var) on a fragment",
        ),
        pytest.param("query A { greeting } query B { colors }", id="two operations, no name"),
        pytest.param("subscription { numbers }", id="subscription"),
    ],
)
async def test_documents_without_a_plan_are_declined(query: str) -> None:
    operations = compiled_operations()

    assert operations.find(query, None) is None
    assert await execute_compiled(operations, query, {"s": True, "i": True}) is None
    assert len(operations) == 1  # the verdict is kept: the next request does not plan again


async def test_a_document_with_two_operations_is_planned_by_name() -> None:
    query = "query A { greeting } query B { colors }"
    operations = compiled_operations()

    assert operations.find(query, None) is None
    expected, _ = await both(query, operation_name="B")
    assert expected.data == {"colors": ["RED", "GREEN", "BLUE"]}
    # Strawberry runs the first operation when none is named; the compiled path left it alone.
    assert (await reference(query)).data == {"greeting": "hello you."}


async def test_an_unknown_operation_name_is_declined() -> None:
    operations = compiled_operations()
    query = "query A { greeting }"

    assert operations.find(query, "Z") is None
    assert await execute_compiled(operations, query, operation_name="Z") is None
    with pytest.raises(CannotGetOperationTypeError):
        await reference(query, operation_name="Z")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param(
            "{ greeting(", "Syntax Error: Expected Name, found <EOF>.", id="does not parse"
        ),
        pytest.param("{ nope }", "Cannot query field 'nope' on type 'Query'.", id="invalid"),
        pytest.param(
            "{ book(id: 1) }",
            "Field 'book' of type 'Book' must have a selection of subfields."
            " Did you mean 'book { ... }'?",
            id="no selection",
        ),
    ],
)
async def test_a_document_that_does_not_parse_or_validate_is_declined(
    query: str, message: str
) -> None:
    operations = compiled_operations()

    assert operations.find(query, None) is None
    assert await execute_compiled(operations, query) is None
    expected = await reference(query)
    assert expected.data is None
    assert messages(expected) == [(message, None)]


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"id": "x"}, "Int cannot represent non-integer value: 'x'"),
        ({}, "Expected a value of non-null type 'Int!' to be provided."),
        ({"id": None}, "Expected value of non-null type 'Int!' not to be None."),
    ],
)
async def test_variables_that_do_not_coerce_are_left_to_graphql_core(
    variables: dict[str, Any], message: str
) -> None:
    operations = compiled_operations()
    query = "query($id: Int!) { book(id: $id) { title } }"

    assert operations.find(query, None) is not None
    assert await execute_compiled(operations, query, variables) is None
    expected = await reference(query, variables)
    assert expected.data is None
    assert [error["message"] for error in expected.errors] == [
        f"Variable '$id' has invalid value: {message}"
    ]
    assert expected.errors[0]["extensions"] == {"code": "BAD_USER_INPUT"}
    # The plan is still good for variables that coerce.
    result = await execute_compiled(operations, query, {"id": 2})
    assert result is not None and result.data == {"book": {"title": "Invisible Cities"}}


async def test_a_mutation_is_declined_where_only_queries_are_allowed() -> None:
    operations = compiled_operations()
    query = "mutation { add(amount: 1) }"

    assert operations.find(query, None) is not None
    assert await execute_compiled(operations, query, allowed_types=frozenset({"query"})) is None
    allowed = await execute_compiled(operations, "{ greeting }", allowed_types=frozenset({"query"}))
    assert allowed is not None and allowed.data == {"greeting": "hello you."}


async def test_a_document_past_the_query_limits_is_declined() -> None:
    operations = CompiledOperations(
        SCHEMA._schema, DocumentCache(QueryLimits(max_depth=2)), mask_internal=False
    )
    query = "{ book(id: 1) { author { name } } }"

    assert await execute_compiled(operations, query) is None
    assert await execute_compiled(operations, "{ book(id: 1) { title } }") is not None


# -- the real app -----------------------------------------------------------------------------


def graphql_view(app: Starlette) -> LaurelGraphQL[Any]:
    for route in app.routes:
        if isinstance(route, Route) and route.path == "/graphql":
            view = route.endpoint
            assert isinstance(view, LaurelGraphQL)
            return view
    raise AssertionError("no /graphql route")


def app_operations(api: Api) -> CompiledOperations:
    """The app's plans: `create_app` keeps its schema (built by `build_schema`) in its state."""
    operations = api.app.state.laurel.schema.compiled
    assert isinstance(operations, CompiledOperations)
    assert graphql_view(api.app).compiled is operations  # what the view runs
    return operations


async def test_the_bench_documents_have_plans(pg_api: Api) -> None:
    operations = app_operations(pg_api)

    for document, name in (
        (EARN_MUTATION, "Earn"),
        (DASHBOARD_QUERY, "Dashboard"),
        (REDEEM_MUTATION, "Redeem"),
    ):
        for operation_name in (None, name):
            found = operations.find(document, operation_name)
            assert found is not None, (name, operation_name)
            assert found.name == name


def _flat_objects(fields: tuple[FieldPlan, ...]) -> dict[str, bool]:
    """Each object-valued field below `fields`, by response path: whether it completes flat."""
    found: dict[str, bool] = {}
    for planned in fields:
        completion: Completion = planned.completion
        while isinstance(completion, NonNullCompletion | ListCompletion):
            if isinstance(completion, ListCompletion):
                found[planned.response_name + "[]"] = completion.flat is not None
                completion = completion.item
            else:
                completion = completion.inner
        if isinstance(completion, ObjectCompletion):
            found[planned.response_name] = completion.flat is not None
            for name, flat in _flat_objects(completion.fields).items():
                found[f"{planned.response_name}.{name}"] = flat
    return found


async def test_the_dashboard_completes_its_attribute_objects_flat(pg_api: Api) -> None:
    found = app_operations(pg_api).find(DASHBOARD_QUERY, None)
    assert found is not None

    assert _flat_objects(found.plan.fields) == {
        "me": False,  # its fields have resolvers
        "me.balance": True,
        "me.tier": True,
        "me.tierProgress": True,
        "me.transactions": True,
        "me.transactions.edges[]": True,
        "me.transactions.edges": True,
        "me.transactions.edges.node": True,
    }


ViewT = TypeVar("ViewT")


def read_view(api: Api, query: str, kind: type[ViewT]) -> ViewT | None:
    """The app's read view of type `kind` for `query` (`CompiledOperation.view`), if any."""
    found = app_operations(api).find(query, None)
    assert found is not None, query
    return found.view if isinstance(found.view, kind) else None


def spy_answers(monkeypatch: pytest.MonkeyPatch, kind: type[ViewT]) -> list[tuple[ViewT, bool]]:
    """Each view of type `kind` asked from now on, and whether it answered."""
    asked: list[tuple[ViewT, bool]] = []
    answer = kind.answer  # type: ignore[attr-defined]

    async def spied(self: ViewT, context: Any) -> dict[str, Any] | None:
        data = await answer(self, context)
        asked.append((self, data is not None))
        return cast(dict[str, Any] | None, data)

    monkeypatch.setattr(kind, "answer", spied)
    return asked


@dataclass
class Twins:
    """Two apps on one database, one answering from plans, one never using them."""

    planned: Api
    unplanned: Api
    answered: list[tuple[str, bool]]  # (query, answered by the plan) on the planned app

    async def send(
        self,
        api: Api,
        query: str,
        variables: dict[str, Any] | None,
        token: str | None,
        method: str,
        accept: str | None = None,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        headers["x-request-id"] = "twins"  # (else each response has an id of its own)
        if accept is not None:
            headers["accept"] = accept
        if method == "GET":
            params = {"query": query, "variables": json.dumps(variables)}
            response = await api.client.get("/graphql", params=params, headers=headers)
        else:
            body = {"query": query, "variables": variables}
            response = await api.client.post("/graphql", json=body, headers=headers)
        return response.status_code, sorted(response.headers.items()), response.content

    async def same(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
        *,
        unplanned_token: str | None = None,
        unplanned_variables: dict[str, Any] | None = None,
        method: str = "POST",
        accept: str | None = None,
    ) -> Any:
        """Both apps' responses, byte for byte (after numbering ids and voucher codes, when
        each app acts for its own twin member); the planned app's JSON."""
        planned = await self.send(self.planned, query, variables, token, method, accept)
        unplanned = await self.send(
            self.unplanned,
            query,
            variables if unplanned_variables is None else unplanned_variables,
            token if unplanned_token is None else unplanned_token,
            method,
            accept,
        )
        assert normalised(planned) == normalised(unplanned)
        return json.loads(planned[2])


_NAMED = re.compile(rb'"(id|code|receiptNumber)":"([^"]*)"')
_TWIN_KEY = re.compile(rb"\b(?:ann|bob)-(\d+)\b")  # order ids and idempotency keys


def normalised(
    response: tuple[int, list[tuple[str, str]], bytes],
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Ids and voucher codes numbered in order of appearance, each twin's own keys made
    one (twin members' differ)."""
    status, headers, content = response
    seen: dict[bytes, int] = {}

    def number(match: re.Match[bytes]) -> bytes:
        key, value = match.group(1), match.group(2)
        index = seen.setdefault(value, len(seen))
        return b'"%s":"#%d"' % (key, index)

    return status, headers, _TWIN_KEY.sub(rb"twin-\1", _NAMED.sub(number, content))


@pytest.fixture
async def twins(
    engine: AsyncEngine, make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> Twins:
    planned = await make_api(engine)
    unplanned = await make_api(engine)
    graphql_view(unplanned.app).compiled = None  # the view then never looks for a plan

    operations = app_operations(planned)
    execute = operations.execute
    answered: list[tuple[str, bool]] = []

    async def spied(query: str, **options: Any) -> ExecutionResult | None:
        result = await execute(query, **options)
        answered.append((query, result is not None))
        return result

    monkeypatch.setattr(operations, "execute", spied)
    return Twins(planned, unplanned, answered)


ADMIN_QUERY = """query($from: DateTime!, $to: DateTime!) {
    programStats(from: $from, to: $to) { members pointsIssued outstandingPoints }
    partners { id } tiers { name threshold } }"""
PUBLIC_QUERY = """{ program { name currency pointsPerCurrencyUnit pendingDays expiryDays }
    tiers { __typename id name rank threshold multiplier benefits } }"""


async def test_real_requests_answer_byte_for_byte_alike_with_and_without_plans(
    twins: Twins,
) -> None:
    api = twins.planned
    admin, service = await api.key(KeyRole.ADMIN), await api.key(KeyRole.SERVICE)
    ok(await call(api, CREATE_TIER, admin, name="Silver", threshold=50), "createTier")
    reward = await new_reward(api, admin, cost=10)
    ann, bob = await new_member(api, admin, "ann", 500), await new_member(api, admin, "bob", 500)
    window = {"from": START.isoformat(), "to": (START + timedelta(days=1)).isoformat()}

    # Reading the same state: the same bytes.
    dashboard = await twins.same(DASHBOARD_QUERY, None, ann.token)
    assert dashboard["data"]["me"]["balance"] == {"available": 500, "pending": 0}
    public = await twins.same(PUBLIC_QUERY)
    assert [tier["name"] for tier in public["data"]["tiers"]][-1] == "Silver"
    stats = await twins.same(ADMIN_QUERY, window, admin)
    assert stats["data"]["programStats"]["members"] == 2

    # Refused root fields: nullable (null and FORBIDDEN), non-null (no data at all).
    refused = await twins.same("{ tiers { name } partner { id } }", None, ann.token)
    assert refused["data"] == {"tiers": [{"name": "Member"}, {"name": "Silver"}], "partner": None}
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    refused = await twins.same("{ tiers { name } partners { id } }", None, ann.token)
    assert refused["data"] is None
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    anonymous = await twins.same("{ me { id } program { name } }")
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    # Over GET (the view's full path, plans still used): a query runs, a mutation is refused.
    got = await twins.same(DASHBOARD_QUERY, None, ann.token, method="GET")
    assert got == dashboard
    # A client that also accepts streamed answers (urql): the same JSON, for Laurel streams
    # nothing over HTTP (subscriptions are on WebSockets).
    streamed = await twins.same(DASHBOARD_QUERY, None, ann.token, accept=URQL_ACCEPT)
    assert streamed == dashboard
    refused = await twins.same(EARN_MUTATION, {"input": {}}, service, method="GET")
    assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

    # Malformed variables: left to strawberry by the planned app too.
    for variables in ({"input": {"orderId": 5, "amount": "x"}}, {"input": {"orderId": "o"}}, {}):
        malformed = await twins.same(EARN_MUTATION, variables, service)
        assert malformed["data"] is None
        assert {error["extensions"]["code"] for error in malformed["errors"]} == {"BAD_USER_INPUT"}

    # Writes, each app for its own twin member: the same bytes but for ids and codes.
    def purchase(member: Someone, order: str, amount: float) -> dict[str, Any]:
        return {"input": {"memberId": member.id, "orderId": order, "amount": amount}}

    bad = await twins.same(
        EARN_MUTATION,
        purchase(ann, "ann-1", -5),
        service,
        unplanned_variables=purchase(bob, "bob-1", -5),
    )
    assert bad["data"]["recordPurchase"]["userErrors"][0]["code"] == "INVALID"
    earned = await twins.same(
        EARN_MUTATION,
        purchase(ann, "ann-2", 60),
        service,
        unplanned_variables=purchase(bob, "bob-2", 60),
    )
    assert earned["data"]["recordPurchase"]["member"] == {"balance": {"available": 560}}

    def redemption(key: str) -> dict[str, Any]:
        return {"input": {"rewardId": reward["id"], "idempotencyKey": key}}

    redeemed = await twins.same(
        REDEEM_MUTATION,
        redemption("ann-1"),
        ann.token,
        unplanned_token=bob.token,
        unplanned_variables=redemption("bob-1"),
    )
    assert redeemed["data"]["redeemReward"]["member"] == {"balance": {"available": 550}}
    after = await twins.same(DASHBOARD_QUERY, None, ann.token, unplanned_token=bob.token)
    assert [edge["node"]["kind"] for edge in after["data"]["me"]["transactions"]["edges"]][:2] == [
        "REDEMPTION",
        "PURCHASE",
    ]

    # The planned app answered from its plans, but for what the plans leave to strawberry.
    declined = {query for query, answered in twins.answered if not answered}
    assert declined == {EARN_MUTATION}  # the malformed variables, the mutation over GET
    assert {query for query, answered in twins.answered if answered} >= {
        DASHBOARD_QUERY,
        PUBLIC_QUERY,
        ADMIN_QUERY,
        EARN_MUTATION,
        REDEEM_MUTATION,
    }
