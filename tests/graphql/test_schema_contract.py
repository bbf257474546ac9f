"""The live schema against the committed SDL and against the client contract (core.graphql).

The contract may only be missing pieces that a later issue brings: they are listed, with that
issue, in NOT_YET_BUILT. Everything else in the contract must be in the live schema with the
same kind, field types (nullability included), arguments, defaults, enum values, union members
and interfaces. The live schema may add anything around them.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    build_ast_schema,
    parse,
)
from graphql.utilities import get_default_value_ast, value_from_ast_untyped

from schema.export import schema_sdl
from schema.schema import build_schema as build_live_schema

REPO = Path(__file__).parents[2]
COMMITTED_SDL = REPO / "schema.graphql"
# CI clones the repository with the shared folder beside it. The contract is core.graphql
# followed by every other *.graphql there (they `extend` core's types), read as one document.
CONTRACT_DIR = Path(__file__).parents[3] / "shared" / "contract"
CONTRACT = CONTRACT_DIR / "core.graphql"


# The one place that says what of the contract is not built yet, and which issue brings it:
# a type name, "Type.field" (an input field or argument-holding field too), "Union.Member" (a
# member the union does not have yet) or "Enum.VALUE". Everything else in the contract is in
# scope now. An entry must go as soon as its piece lands
# (test_not_yet_built_lists_only_missing_pieces says so).
# What issue 14 adds that is not built yet (segments are).
NOT_YET_BUILT: dict[str, str] = {}  # everything in the contract is built


@cache
def contract_schema() -> GraphQLSchema:
    if not CONTRACT.is_file():
        pytest.fail(f"the client contract is missing: expected it at {CONTRACT}")
    extensions = sorted(p for p in CONTRACT_DIR.glob("*.graphql") if p != CONTRACT)
    text = "\n".join(path.read_text() for path in [CONTRACT, *extensions])
    return build_ast_schema(parse(text))


@cache
def live_schema() -> GraphQLSchema:
    return build_live_schema()._schema


def kind(named: GraphQLNamedType) -> str:
    for graphql_class, name in (
        (GraphQLScalarType, "scalar"),
        (GraphQLObjectType, "type"),
        (GraphQLInterfaceType, "interface"),
        (GraphQLUnionType, "union"),
        (GraphQLEnumType, "enum"),
        (GraphQLInputObjectType, "input"),
    ):
        if isinstance(named, graphql_class):
            return name
    raise AssertionError(f"unknown kind of type: {named!r}")


def default_of(value: GraphQLArgument | GraphQLInputField) -> object:
    """The default as a plain value (so `1.0` and `1` compare equal), or None when there is none.

    A default of `null` is returned as the string "null", to tell it from no default at all.
    """
    literal = get_default_value_ast(value)
    if literal is None:
        return None
    plain = value_from_ast_untyped(literal)
    return "null" if plain is None else plain


def contract_type_names() -> list[str]:
    return sorted(name for name in contract_schema().type_map if not name.startswith("__"))


def contract_problems() -> Iterator[str]:
    """Every difference between the contract and the live schema, skipping NOT_YET_BUILT."""
    contract, live = contract_schema(), live_schema()
    for name in contract_type_names():
        if name in NOT_YET_BUILT:
            continue
        expected = contract.type_map[name]
        actual = live.type_map.get(name)
        if actual is None:
            yield f"{name}: {kind(expected)} missing"
            continue
        if kind(actual) != kind(expected):
            yield f"{name}: expected a {kind(expected)}, found a {kind(actual)}"
            continue
        if isinstance(expected, GraphQLObjectType | GraphQLInterfaceType):
            assert isinstance(actual, GraphQLObjectType | GraphQLInterfaceType)
            yield from _output_field_problems(name, expected, actual)
            live_interfaces = {i.name for i in actual.interfaces}
            for interface in expected.interfaces:
                if interface.name not in live_interfaces:
                    yield f"{name}: does not implement {interface.name}"
        elif isinstance(expected, GraphQLInputObjectType):
            assert isinstance(actual, GraphQLInputObjectType)
            for field_name, field in expected.fields.items():
                path = f"{name}.{field_name}"
                if path in NOT_YET_BUILT:
                    continue
                yield from _input_value_problems(path, field, actual.fields.get(field_name))
        elif isinstance(expected, GraphQLEnumType):
            assert isinstance(actual, GraphQLEnumType)
            for value in expected.values:
                if value not in actual.values and f"{name}.{value}" not in NOT_YET_BUILT:
                    yield f"{name}: enum value {value} missing"
        elif isinstance(expected, GraphQLUnionType):
            assert isinstance(actual, GraphQLUnionType)
            members = {t.name for t in actual.types}
            for member in expected.types:
                if member.name not in members and f"{name}.{member.name}" not in NOT_YET_BUILT:
                    yield f"{name}: union member {member.name} missing"
    for root in ("query", "mutation", "subscription"):
        expected_root = getattr(contract, f"{root}_type")
        if expected_root is None or expected_root.name in NOT_YET_BUILT:
            continue
        actual_root = getattr(live, f"{root}_type")
        if actual_root is None or actual_root.name != expected_root.name:
            found = actual_root.name if actual_root else None
            yield f"schema {root} root: expected {expected_root.name}, found {found}"


def _output_field_problems(
    type_name: str,
    expected: GraphQLObjectType | GraphQLInterfaceType,
    actual: GraphQLObjectType | GraphQLInterfaceType,
) -> Iterator[str]:
    for field_name, field in expected.fields.items():
        path = f"{type_name}.{field_name}"
        if path in NOT_YET_BUILT:
            continue
        live_field = actual.fields.get(field_name)
        if live_field is None:
            yield f"{path}: field missing (expected {field.type})"
            continue
        if str(live_field.type) != str(field.type):
            yield f"{path}: expected type {field.type}, found {live_field.type}"
        for arg_name, arg in field.args.items():
            yield from _input_value_problems(
                f"{path}({arg_name})", arg, live_field.args.get(arg_name)
            )


def _input_value_problems(
    path: str,
    expected: GraphQLArgument | GraphQLInputField,
    actual: GraphQLArgument | GraphQLInputField | None,
) -> Iterator[str]:
    """An argument or input field: present, same type, same default where the contract has one."""
    if actual is None:
        yield f"{path}: missing (expected {expected.type})"
        return
    if str(actual.type) != str(expected.type):
        yield f"{path}: expected type {expected.type}, found {actual.type}"
    wanted = default_of(expected)
    if wanted is not None and default_of(actual) != wanted:
        yield f"{path}: expected default {wanted!r}, found {default_of(actual)!r}"


def is_present(entry: str) -> bool:
    """A NOT_YET_BUILT entry (a type, "Type.field" or "Union.Member") is in the live schema."""
    live = live_schema()
    type_name, _, field_name = entry.partition(".")
    named = live.type_map.get(type_name)
    if not field_name:
        return named is not None
    if isinstance(named, GraphQLUnionType):
        return field_name in {t.name for t in named.types}
    if isinstance(named, GraphQLEnumType):
        return field_name in named.values
    fields = getattr(named, "fields", None)
    return fields is not None and field_name in fields


def test_committed_sdl_is_current() -> None:
    committed = COMMITTED_SDL.read_text() if COMMITTED_SDL.is_file() else ""
    assert committed == schema_sdl(), (
        "schema.graphql differs from the live schema: run "
        "`python -m schema.export > schema.graphql` and review the diff"
    )


def test_sdl_export_is_stable() -> None:
    first = schema_sdl()
    assert first == schema_sdl()
    assert first.endswith("\n") and not first.endswith("\n\n")


def test_live_schema_has_everything_the_contract_promises_except_not_yet_built() -> None:
    problems = list(contract_problems())
    assert not problems, "the live schema breaks the client contract:\n" + "\n".join(problems)


def test_not_yet_built_lists_only_missing_pieces() -> None:
    landed = sorted(entry for entry in NOT_YET_BUILT if is_present(entry))
    assert not landed, (
        "these are in the live schema now: remove them from NOT_YET_BUILT, so the contract "
        "check covers them: " + ", ".join(landed)
    )


def test_not_yet_built_names_only_things_of_the_contract() -> None:
    contract = contract_schema()
    unknown = []
    for entry in NOT_YET_BUILT:
        type_name, _, field_name = entry.partition(".")
        named = contract.type_map.get(type_name)
        if isinstance(named, GraphQLUnionType):
            fields = {t.name: t for t in named.types}
        elif isinstance(named, GraphQLEnumType):
            fields = dict(named.values)
        else:
            fields = getattr(named, "fields", None) or {}
        if named is None or (field_name and field_name not in fields):
            unknown.append(entry)
    assert not unknown, f"NOT_YET_BUILT names what the contract does not have: {unknown}"


def test_not_yet_built_spares_the_types_in_scope_now() -> None:
    # The core of this issue must never be waved through by being listed.
    in_scope = {
        "Node",
        "PageInfo",
        "UserError",
        "UserErrorCode",
        "Program",
        "Promotion",
        "Member",
        "PointsBalance",
        "PointsExpiry",
        "TransactionKind",
        "TransactionStatus",
        "PointsTransaction",
        "PointsComponent",
        "PurchasePreview",
        "PointsTransactionEdge",
        "PointsTransactionConnection",
        "Tier",
        "TierProgress",
        "Query",
        "Mutation",
        "EnrollInput",
        "EnrollPayload",
        "RecordPurchaseInput",
        "RecordPurchasePayload",
        "RefundPurchaseInput",
        "RefundPurchasePayload",
        "ActivityKind",
        "RecordActivityInput",
        "RecordActivityPayload",
        "AdjustPointsInput",
        "AdjustPointsPayload",
        "UpdateProgramInput",
        "UpdateProgramPayload",
        "CreateTierInput",
        "CreateTierPayload",
        "CreatePromotionInput",
        "CreatePromotionPayload",
        "Query.node",
        "Query.me",
        "Query.member",
        "Query.tiers",
        "Query.previewPurchase",
        "Query.program",
        "Query.promotions",
    }
    listed = sorted(in_scope & NOT_YET_BUILT.keys())
    assert not listed, f"in scope now, must not be on NOT_YET_BUILT: {listed}"
