"""Plans of validated operations: what to resolve and how to complete it, worked out once.

graphql-core works out, for every field of every request, which fields a selection set
groups together, which definition and resolver each has and how its type completes (with a
chain of `isinstance` checks). For a document sent again and again, all of that is the same
each time: a plan records it once, and `schema.compiled.executor` follows it.

Only what the plan can mirror exactly is planned. `plan_operation` returns None for anything
else, and such a document runs through graphql-core as before:

* subscriptions (they stream over a WebSocket), except by `plan_subscription`: the selection
  run on each event of a stream (`api.live_operations`);
* abstract types (interfaces and unions) anywhere in the selection: the runtime type, and so
  the fields to collect, depends on each value (`node`, live events);
* introspection (`__schema`, `__type`; `__typename` is planned: the parent type's name);
* `@skip`/`@include` with a variable argument (which fields exist then depends on the
  variables), `@defer`/`@stream`, and fragments with variables.

Fields are collected with graphql-core's own `collect_fields`/`collect_subfields`, so merging
of fields and fragments is exactly graphql-core's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final

from graphql import (
    GRAPHQL_MAX_INT,
    GRAPHQL_MIN_INT,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLField,
    GraphQLID,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    OperationDefinitionNode,
    OperationType,
    Undefined,
    VariableNode,
    Visitor,
    visit,
)
from graphql.execution.collect_fields import (
    FieldDetailsList,
    FragmentDetails,
    GroupedFieldSet,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues
from graphql.type.introspection import TypeNameMetaFieldDef
from strawberry.types.field import StrawberryField

__all__ = [
    "Completion",
    "FieldPlan",
    "Flat",
    "LeafCompletion",
    "ListCompletion",
    "NonNullCompletion",
    "NotFlat",
    "ObjectCompletion",
    "OperationPlan",
    "attribute_reader",
    "field_permissions",
    "flat_of",
    "plan_operation",
    "plan_subscription",
]

# Nothing in a planned selection depends on variables (see `_variable_free`).
_NO_VARIABLES = VariableValues({}, {})


@dataclass(frozen=True, slots=True)
class LeafCompletion:
    """A scalar or an enum: the type's output coercion."""

    type: GraphQLScalarType | GraphQLEnumType


@dataclass(frozen=True, slots=True)
class NonNullCompletion:
    inner: Completion


@dataclass(frozen=True, slots=True)
class ListCompletion:
    item: Completion
    flat: Flat | None = None  # see `Flat`


@dataclass(frozen=True, slots=True)
class ObjectCompletion:
    type: GraphQLObjectType
    fields: tuple[FieldPlan, ...]
    flat: Flat | None = None  # see `Flat`


Completion = LeafCompletion | NonNullCompletion | ListCompletion | ObjectCompletion

Flat = Callable[[Any], Any]
"""A whole object (or list) completed in one synchronous pass, where every field below it
reads an attribute and every type check is strawberry's own `isinstance`: no resolver to
call, no info to build, no path to record. It raises on anything unusual (a null where none
may be, a leaf that does not coerce, a value of another type); the executor then completes
the same value field by field, which reads the same attributes again (nothing has side
effects) and reports the error exactly as graphql-core would."""


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """One response key of a selection set: the field, its resolver, its completion."""

    response_name: str
    parent_type: GraphQLObjectType
    definition: GraphQLField
    nodes: list[FieldNode]  # every node merged into this response key
    resolve: Callable[..., Any]
    # Strawberry's resolver of a field with no resolver function and no extension: it reads
    # an attribute and never looks at `info`, so none is built for it...
    basic: bool
    has_arguments: bool
    completion: Completion
    # ...unless an object type's `is_type_of`, which gets the field's info, checks its value.
    checks_types: bool

    @property
    def field_name(self) -> str:
        return self.nodes[0].name.value


@dataclass(frozen=True, slots=True)
class OperationPlan:
    operation: OperationDefinitionNode
    fields: tuple[FieldPlan, ...]
    fragments: dict[str, FragmentDefinitionNode]

    @property
    def serial(self) -> bool:
        """Mutations' root fields run one after the other (the spec's "serially")."""
        return self.operation.operation is OperationType.MUTATION


class _Unplannable(Exception):
    """The document uses something the plans do not mirror (module doc)."""


def plan_operation(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> OperationPlan | None:
    """The plan of `document`'s operation `operation_name`, or None where it has none.

    `document` must have passed validation (and the query limits) against `schema`."""
    operation = _operation(document, operation_name)
    if operation is None or operation.operation is OperationType.SUBSCRIPTION:
        return None
    return _plan(schema, document, operation)


def plan_subscription(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> OperationPlan | None:
    """The plan of a subscription's selection, as graphql-core runs it for each event: the
    root field resolved on the event (`execute_subscription_event`). None where it has none,
    or where the operation is not a subscription. Same conditions as `plan_operation`."""
    operation = _operation(document, operation_name)
    if operation is None or operation.operation is not OperationType.SUBSCRIPTION:
        return None
    return _plan(schema, document, operation)


def _plan(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> OperationPlan | None:
    root_type = schema.get_root_type(operation.operation)
    if root_type is None:
        return None
    definitions: dict[str, FragmentDefinitionNode] = {}
    fragments: dict[str, FragmentDetails] = {}
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            if definition.variable_definitions:
                return None
            definitions[definition.name.value] = definition
            fragments[definition.name.value] = FragmentDetails(definition)
    if not _variable_free(document):
        return None
    planner = _Planner(schema, fragments, operation)
    try:
        grouped = collect_fields(schema, fragments, _NO_VARIABLES, root_type, operation)
        fields = planner.fields(root_type, grouped.grouped_field_set)
    except (_Unplannable, RecursionError):
        return None
    if grouped.new_defer_usages:
        return None
    return OperationPlan(operation, fields, definitions)


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    """The operation graphql-core would run (`Executor.build`'s rules), or None for a
    request it would refuse (which then gets graphql-core's own error)."""
    found: OperationDefinitionNode | None = None
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        if name is None:
            if found is not None:
                return None  # several operations and no name
            found = definition
        elif definition.name is not None and definition.name.value == name:
            found = definition
    return found


def _variable_free(document: DocumentNode) -> bool:
    """No directive takes a variable (so the collected fields never depend on variables),
    and none is `@defer` or `@stream`."""
    problems: list[DirectiveNode] = []

    class _Directives(Visitor):
        def enter_directive(self, node: DirectiveNode, *_: object) -> None:
            takes_variable = any(
                isinstance(arg.value, VariableNode) for arg in node.arguments or ()
            )
            if takes_variable or node.name.value in ("defer", "stream"):
                problems.append(node)

    visit(document, _Directives())
    return not problems


class _Planner:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDetails],
        operation: OperationDefinitionNode,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.operation = operation

    def fields(
        self, parent_type: GraphQLObjectType, grouped: GroupedFieldSet
    ) -> tuple[FieldPlan, ...]:
        return tuple(
            self.field(parent_type, response_name, details)
            for response_name, details in grouped.items()
        )

    def field(
        self, parent_type: GraphQLObjectType, response_name: str, details: FieldDetailsList
    ) -> FieldPlan:
        if any(detail.defer_usage or detail.fragment_variable_values for detail in details):
            raise _Unplannable(response_name)
        nodes = [detail.node for detail in details]
        name = nodes[0].name.value
        if name == "__typename":  # a String: no type to check
            return FieldPlan(
                response_name=response_name,
                parent_type=parent_type,
                definition=TypeNameMetaFieldDef,
                nodes=nodes,
                resolve=_constant(parent_type.name),
                basic=True,
                has_arguments=False,
                completion=self.completion(TypeNameMetaFieldDef.type, details),
                checks_types=False,
            )
        if name.startswith("__"):
            raise _Unplannable(name)  # __schema, __type
        definition = parent_type.fields.get(name)
        if definition is None or definition.resolve is None:
            raise _Unplannable(name)  # validation passed: only a schema without resolvers
        basic = getattr(definition.resolve, "__name__", "") == "_get_basic_result"
        has_arguments = bool(definition.args or nodes[0].arguments)
        if basic and has_arguments:
            raise _Unplannable(name)
        completion = self.completion(definition.type, details)
        return FieldPlan(
            response_name=response_name,
            parent_type=parent_type,
            definition=definition,
            nodes=nodes,
            resolve=definition.resolve,
            basic=basic,
            has_arguments=has_arguments,
            completion=completion,
            checks_types=_checks_types(completion),
        )

    def completion(self, type_: GraphQLOutputType, details: FieldDetailsList) -> Completion:
        if isinstance(type_, GraphQLNonNull):
            return NonNullCompletion(self.completion(type_.of_type, details))
        if isinstance(type_, GraphQLList):
            item = self.completion(type_.of_type, details)
            item_flat = flat_of(item)
            return ListCompletion(item, _flat_list(item_flat) if item_flat else None)
        if isinstance(type_, GraphQLScalarType | GraphQLEnumType):
            return LeafCompletion(type_)
        if isinstance(type_, GraphQLObjectType):
            collected = collect_subfields(
                self.schema, self.fragments, _NO_VARIABLES, self.operation, type_, details
            )
            if collected.new_defer_usages:
                raise _Unplannable(type_.name)
            fields = self.fields(type_, collected.grouped_field_set)
            return ObjectCompletion(type_, fields, _flat_object(type_, fields))
        raise _Unplannable(str(type_))  # an interface or a union


def _checks_types(completion: Completion) -> bool:
    """Whether completing the field calls an object type's `is_type_of`."""
    while isinstance(completion, NonNullCompletion | ListCompletion):
        completion = (
            completion.inner if isinstance(completion, NonNullCompletion) else completion.item
        )
    return isinstance(completion, ObjectCompletion) and completion.type.is_type_of is not None


def _constant(value: str) -> Callable[..., str]:
    def resolve(_source: object, _info: object) -> str:
        return value

    return resolve


# -- flat completions ----------------------------------------------------------------------


class NotFlat(Exception):
    """Raised by a flat completion for whatever the executor must complete field by field."""


def flat_of(completion: Completion) -> Flat | None:
    """The flat completion of `completion`, or None where some part of it is not flat."""
    if isinstance(completion, NonNullCompletion):
        inner = flat_of(completion.inner)
        return None if inner is None else _flat_non_null(inner)
    if isinstance(completion, LeafCompletion):
        return _flat_leaf(completion.type)
    return completion.flat


def _flat_non_null(inner: Flat) -> Flat:
    def complete(value: Any) -> Any:
        if value is None:
            raise NotFlat
        return inner(value)

    return complete


_AS_IT_IS: Final = (
    (GraphQLInt, int),
    (GraphQLString, str),
    (GraphQLBoolean, bool),
    (GraphQLID, str),
)


def _flat_leaf(type_: GraphQLScalarType | GraphQLEnumType) -> Flat:
    coerce = type_.coerce_output_value
    # A value of exactly this type graphql-core's coercion returns as it is (a 32-bit int for
    # Int): returned without the call, whose chain of checks was most of a board's completion.
    exact = next((kind for scalar, kind in _AS_IT_IS if type_ is scalar), None)

    def complete(value: Any) -> Any:
        kind = type(value)
        if kind is exact and (kind is not int or GRAPHQL_MIN_INT <= value <= GRAPHQL_MAX_INT):
            return value
        if value is None:
            return None
        coerced = coerce(value)
        if coerced is None or coerced is Undefined:
            raise NotFlat
        return coerced

    return complete


def _flat_list(item: Flat) -> Flat:
    def complete(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list | tuple):
            raise NotFlat  # iterables of other kinds (async ones too) go field by field
        return [item(each) for each in value]

    return complete


def _flat_object(type_: GraphQLObjectType, fields: tuple[FieldPlan, ...]) -> Flat | None:
    """Flat when the type checks with strawberry's own `is_type_of` (or none) and every
    field reads an attribute (strawberry's default resolver) or is `__typename`."""
    check = type_.is_type_of
    if check is not None and not check.__qualname__.endswith("_get_is_type_of.<locals>.is_type_of"):
        return None  # a type's own check may read the info
    readers: list[tuple[str, Callable[[Any], Any], Flat]] = []
    for field in fields:
        completion = flat_of(field.completion)
        if completion is None:
            return None
        if field.definition is TypeNameMetaFieldDef:
            readers.append((field.response_name, _typename_reader(type_.name), completion))
            continue
        reader = attribute_reader(field)
        if reader is None:
            return None
        readers.append((field.response_name, reader, completion))
    entries = tuple(readers)

    def complete(value: Any) -> Any:
        if value is None:
            return None
        # strawberry's own check never reads the info
        if check is not None and not check(value, None):  # type: ignore[arg-type]
            raise NotFlat
        return {name: finish(read(value)) for name, read, finish in entries}

    return complete


def _typename_reader(name: str) -> Callable[[Any], str]:
    def read(_value: Any) -> str:
        return name

    return read


def attribute_reader(field: FieldPlan) -> Callable[[Any], Any] | None:
    """`operator.attrgetter` of the attribute a basic strawberry field returns."""
    if not field.basic:
        return None
    definition = field.definition.extensions.get("strawberry-definition")
    if not isinstance(definition, StrawberryField):
        return None
    if definition.base_resolver is not None or definition.extensions:
        return None
    if definition.default_resolver is not getattr:
        return None
    return attrgetter(definition.python_name)


def field_permissions(field: FieldPlan) -> list[type] | None:
    """The permission classes of a field strawberry defined (an empty list: none), or None
    where it has another extension (its resolver is then more than its function)."""
    definition = field.definition.extensions.get("strawberry-definition")
    if not isinstance(definition, StrawberryField):
        return None
    others = [
        extension
        for extension in definition.extensions
        if type(extension).__name__ != "PermissionExtension"
    ]
    return None if others else list(definition.permission_classes)
