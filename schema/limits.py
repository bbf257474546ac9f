"""Query limits: depth, aliases, tokens and cost, refused with ``QUERY_TOO_COMPLEX``.

Every bound is checked before anything executes:

* **tokens** are counted by graphql-core's parser (``parse(..., max_tokens=...)``, the
  mechanism of strawberry's ``MaxTokensLimiter``); the parser aborts as soon as the bound
  is passed, so an oversized document is never even fully parsed. Documents nested
  beyond graphql-core's own parser bound are refused the same way.
* **depth**, **aliases** and **cost** are measured by :func:`measure_document`, which is
  run both as a graphql-core validation rule (:class:`QueryLimitsRule`, for use with
  ``graphql.validate``) and, in the strawberry extension, as a pre-check that runs
  *before* the standard validation rules, so a document past the limits never reaches
  the (costlier) standard rules at all. The live schema runs the same pre-check from its
  own extension (``schema.schema.OperationHooks``), through :func:`limit_verdict`, and
  keeps the verdict of a document within the limits when it holds whatever the variables.

How the measures are defined (per operation; a document is refused when any of its
operations is past a bound):

* **depth**: the number of nested fields, following fragment spreads and inline
  fragments, which add no depth themselves (``{ a { ...F } } fragment F on A { b }``
  has depth 2). Inside introspection (fields of ``__Type``), the
  ``ofType`` link does not add depth: it is a chain of single objects (``NON_NULL`` of
  ``LIST`` of ...) that cannot widen the response, and counting it would refuse
  GraphiQL's own introspection query. Every other introspection field counts.
* **aliases**: every aliased field, with each fragment counted once per spread that
  uses it (a fragment holding 2 aliases spread 3 times counts 6).
* **cost**: each field costs 1; a field with a ``first`` argument multiplies the cost of
  its sub-selection by that number::

      cost(field) = 1 + first(field) * cost(sub-selection)

  ``first`` is read from the literal, or from the variable's value (else the variable's
  default in the operation), else from the argument's default in the schema; fields
  without a ``first`` argument multiply by 1. A negative ``first`` counts as 0.
  The cost of a fragment spread is the cost of the fragment, multiplied like any
  other selection at that place.

Linear time, however fragments are arranged: each fragment definition is walked once,
and its depth, alias count and cost are computed once (memoized per fragment name) in
dependency order, without recursion; a spread then costs O(1). A spread that would close
a cycle contributes nothing (graphql-core's ``NoFragmentCyclesRule`` reports the cycle),
and spreads of unknown fragments contribute nothing (``KnownFragmentNamesRule`` reports
them). Arithmetic saturates, so an exponential fragment arrangement produces small
numbers that are simply past the bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLArgument,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SchemaMetaFieldDef,
    SelectionSetNode,
    TypeMetaFieldDef,
    TypeNameMetaFieldDef,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
)
from graphql.language.visitor import BREAK, VisitorAction
from strawberry.extensions import SchemaExtension

__all__ = [
    "QUERY_TOO_COMPLEX",
    "QueryLimits",
    "QueryLimitsExtension",
    "QueryLimitsRule",
    "QueryMeasure",
    "check_document",
    "code_parser_limits",
    "is_parser_limit",
    "limit_extensions",
    "limit_verdict",
    "measure_document",
    "query_limits_rule",
]

QUERY_TOO_COMPLEX: Final = "QUERY_TOO_COMPLEX"

# Every measure saturates here: far above any sensible bound, small enough for cheap ints.
_SATURATED: Final = 1 << 62

# Messages of graphql-core's parser when it gives up on a document for its size.
_PARSER_LIMIT_PREFIXES: Final = (
    "Syntax Error: Document contains more than",
    "Document contains more than",
    "Syntax Error: Document is nested too deeply",
    "Document is nested too deeply",
)


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """Bounds past which a document is refused with ``QUERY_TOO_COMPLEX``."""

    max_depth: int = 12
    max_aliases: int = 50
    max_tokens: int = 10_000
    max_cost: int = 5_000


@dataclass(frozen=True, slots=True)
class QueryMeasure:
    """What :func:`measure_document` found for one operation.

    ``steps`` counts the work done for the whole document (selections walked plus
    spreads combined); it is at most proportional to the document's size.
    """

    operation: OperationDefinitionNode
    depth: int
    aliases: int
    cost: int
    steps: int


def _too_complex(message: str, nodes: Any = None) -> GraphQLError:
    return GraphQLError(message, nodes, extensions={"code": QUERY_TOO_COMPLEX})


def _sat(value: int) -> int:
    return value if value < _SATURATED else _SATURATED


@dataclass(slots=True)
class _Local:
    """A definition measured on its own, its fragment spreads left unresolved."""

    depth: int
    aliases: int
    cost: int
    # (fragment name, depth at the spread, cost multiplier at the spread)
    spreads: list[tuple[str, int, int]]


@dataclass(frozen=True, slots=True)
class _Total:
    depth: int
    aliases: int
    cost: int


_ZERO: Final = _Total(0, 0, 0)


def _int_default(argument: GraphQLArgument) -> int | None:
    default = argument.default
    if default is not None:
        value = default.value
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(default.literal, IntValueNode):
            return int(default.literal.value)
        return None
    legacy = argument.default_value
    if isinstance(legacy, int) and not isinstance(legacy, bool):
        return legacy
    return None


class _Measurer:
    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        variables: Mapping[str, Any] | None,
    ) -> None:
        self.schema = schema
        # Over a WebSocket, strawberry passes the client's `variables` through unchecked.
        self.variables: Mapping[str, Any] = variables if isinstance(variables, Mapping) else {}
        # Whether some `first` came from a variable: the measures then hold for these
        # variables only (see `limit_verdict`).
        self.reads_variables = False
        self.steps = 0
        self.operations: list[OperationDefinitionNode] = []
        self.fragments: dict[str, FragmentDefinitionNode] = {}
        self.variable_defaults: dict[str, int] = {}
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                self.operations.append(definition)
                for variable in definition.variable_definitions or ():
                    default = variable.default_value
                    if isinstance(default, IntValueNode):
                        name = variable.variable.name.value
                        value = int(default.value)
                        self.variable_defaults[name] = max(
                            value, self.variable_defaults.get(name, value)
                        )
            elif isinstance(definition, FragmentDefinitionNode):
                # A duplicate name is reported by UniqueFragmentNamesRule; keep the first.
                self.fragments.setdefault(definition.name.value, definition)
        self.type_map = schema.type_map
        self.introspection_type = schema.type_map.get("__Type")

    # -- one definition ------------------------------------------------------------

    def _field_def(self, parent: GraphQLNamedType | None, name: str) -> GraphQLField | None:
        if name == "__typename":
            return TypeNameMetaFieldDef
        if parent is not None and parent is self.schema.query_type:
            if name == "__schema":
                return SchemaMetaFieldDef
            if name == "__type":
                return TypeMetaFieldDef
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            field: GraphQLField | None = parent.fields.get(name)
            return field
        return None

    def _first(self, node: FieldNode, field_def: GraphQLField | None) -> int:
        argument = field_def.args.get("first") if field_def is not None else None
        schema_default = _int_default(argument) if argument is not None else None
        value: int | None = None
        for arg in node.arguments or ():
            if arg.name.value != "first":
                continue
            literal = arg.value
            if isinstance(literal, IntValueNode):
                value = int(literal.value)
            elif isinstance(literal, VariableNode):
                self.reads_variables = True
                name = literal.name.value
                provided = self.variables.get(name)
                if isinstance(provided, int) and not isinstance(provided, bool):
                    value = provided
                else:
                    value = self.variable_defaults.get(name)
            break
        if value is None:
            value = schema_default
        if value is None:
            return 1
        return _sat(max(value, 0))

    def measure_local(
        self, selection_set: SelectionSetNode, root_type: GraphQLNamedType | None
    ) -> _Local:
        depth = aliases = cost = 0
        spreads: list[tuple[str, int, int]] = []
        # (selection set, its parent type, depth of the field holding it, multiplier)
        stack: list[tuple[SelectionSetNode, GraphQLNamedType | None, int, int]] = [
            (selection_set, root_type, 0, 1)
        ]
        introspection_type = self.introspection_type
        while stack:
            current, parent, level, multiplier = stack.pop()
            for selection in current.selections:
                self.steps += 1
                if isinstance(selection, FieldNode):
                    name = selection.name.value
                    if selection.alias is not None:
                        aliases += 1
                    field_def = self._field_def(parent, name)
                    field_level = level
                    if not (
                        name == "ofType" and parent is not None and parent is introspection_type
                    ):
                        field_level += 1
                    depth = max(depth, field_level)
                    cost = _sat(cost + multiplier)
                    if selection.selection_set is not None:
                        child_type = (
                            get_named_type(field_def.type) if field_def is not None else None
                        )
                        child_multiplier = _sat(multiplier * self._first(selection, field_def))
                        stack.append(
                            (selection.selection_set, child_type, field_level, child_multiplier)
                        )
                elif isinstance(selection, InlineFragmentNode):
                    condition = selection.type_condition
                    inline_type = (
                        self.type_map.get(condition.name.value) if condition is not None else parent
                    )
                    stack.append((selection.selection_set, inline_type, level, multiplier))
                elif isinstance(selection, FragmentSpreadNode):
                    spreads.append((selection.name.value, level, multiplier))
        return _Local(depth, aliases, cost, spreads)

    @staticmethod
    def combine(local: _Local, totals: Mapping[str, _Total]) -> _Total:
        depth, aliases, cost = local.depth, local.aliases, local.cost
        for name, level, multiplier in local.spreads:
            total = totals.get(name, _ZERO)
            depth = max(depth, level + total.depth)
            aliases = _sat(aliases + total.aliases)
            cost = _sat(cost + _sat(multiplier * total.cost))
        return _Total(depth, aliases, cost)

    # -- the whole document --------------------------------------------------------

    def fragment_totals(self) -> dict[str, _Total]:
        locals_: dict[str, _Local] = {}
        for name, fragment in self.fragments.items():
            condition = self.type_map.get(fragment.type_condition.name.value)
            locals_[name] = self.measure_local(fragment.selection_set, condition)

        totals: dict[str, _Total] = {}
        # Depth-first, post-order, without recursion. A spread of a fragment still on
        # the path closes a cycle and counts as nothing (the cycle is reported by
        # NoFragmentCyclesRule); each fragment is finished exactly once.
        for root in locals_:
            if root in totals:
                continue
            path: list[tuple[str, Iterator[tuple[str, int, int]]]] = [
                (root, iter(locals_[root].spreads))
            ]
            on_path = {root}
            while path:
                name, spreads = path[-1]
                for spread, _level, _multiplier in spreads:
                    self.steps += 1
                    if spread in locals_ and spread not in totals and spread not in on_path:
                        path.append((spread, iter(locals_[spread].spreads)))
                        on_path.add(spread)
                        break
                else:
                    path.pop()
                    on_path.discard(name)
                    totals[name] = self.combine(locals_[name], totals)
        return totals

    def measure(self) -> list[QueryMeasure]:
        totals = self.fragment_totals()
        results: list[tuple[OperationDefinitionNode, _Total]] = []
        for operation in self.operations:
            root_type = self.schema.get_root_type(operation.operation)
            local = self.measure_local(operation.selection_set, root_type)
            results.append((operation, self.combine(local, totals)))
        return [
            QueryMeasure(operation, total.depth, total.aliases, total.cost, self.steps)
            for operation, total in results
        ]


def measure_document(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: Mapping[str, Any] | None = None,
) -> list[QueryMeasure]:
    """Measure depth, aliases and cost of each operation of ``document``.

    Takes time proportional to the size of the document, whatever its fragments.
    ``variables`` are the request's raw variable values (used for ``first: $n``).
    """
    return _Measurer(schema, document, variables).measure()


def _operation_label(operation: OperationDefinitionNode) -> str:
    if operation.name is not None:
        return f"Operation '{operation.name.value}'"
    return "The operation"


def check_document(
    schema: GraphQLSchema,
    document: DocumentNode,
    limits: QueryLimits,
    variables: Mapping[str, Any] | None = None,
) -> list[GraphQLError]:
    """The ``QUERY_TOO_COMPLEX`` errors of ``document`` (empty when within the limits)."""
    return _errors(measure_document(schema, document, variables), limits)


def limit_verdict(
    schema: GraphQLSchema,
    document: DocumentNode,
    limits: QueryLimits,
    variables: Mapping[str, Any] | None = None,
) -> tuple[list[GraphQLError], bool]:
    """:func:`check_document`'s errors, and whether they are the same for any variables.

    The measures read the request's variables only for a ``first: $n`` argument; a
    document without one has one verdict whatever the variables, which a caller may keep
    per document (see ``schema.documents.DocumentCache``).
    """
    measurer = _Measurer(schema, document, variables)
    return _errors(measurer.measure(), limits), not measurer.reads_variables


def _errors(measures: list[QueryMeasure], limits: QueryLimits) -> list[GraphQLError]:
    errors: list[GraphQLError] = []
    for measure in measures:
        label = _operation_label(measure.operation)
        node = measure.operation
        if measure.depth > limits.max_depth:
            errors.append(
                _too_complex(
                    f"{label} is nested {measure.depth} levels deep, "
                    f"more than the maximum of {limits.max_depth}.",
                    node,
                )
            )
        if measure.aliases > limits.max_aliases:
            count = "too many" if measure.aliases >= _SATURATED else str(measure.aliases)
            errors.append(
                _too_complex(
                    f"{label} uses {count} aliases, more than the maximum of {limits.max_aliases}.",
                    node,
                )
            )
        if measure.cost > limits.max_cost:
            cost = "too high a cost" if measure.cost >= _SATURATED else f"cost {measure.cost}"
            errors.append(
                _too_complex(
                    f"{label} has {cost}, more than the maximum of {limits.max_cost}. "
                    "Ask for fewer items (`first`) or fewer fields.",
                    node,
                )
            )
    return errors


class QueryLimitsRule(ValidationRule):
    """graphql-core validation rule reporting documents past ``limits``.

    Use :func:`query_limits_rule` to get a rule class bound to limits (and, optionally,
    to the request's variables); this base class checks the default limits.
    """

    limits: ClassVar[QueryLimits] = QueryLimits()
    variables: ClassVar[Mapping[str, Any] | None] = None

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self.validation_context = context

    def enter_document(self, node: DocumentNode, *_args: object) -> VisitorAction:
        for error in check_document(
            self.validation_context.schema, node, self.limits, self.variables
        ):
            self.report_error(error)
        # Everything is measured from the document node: nothing left to visit.
        return BREAK


def query_limits_rule(
    limits: QueryLimits, variables: Mapping[str, Any] | None = None
) -> type[QueryLimitsRule]:
    """A validation rule class checking ``limits`` (``first: $n`` read from ``variables``)."""
    return type(
        "BoundQueryLimitsRule",
        (QueryLimitsRule,),
        {"limits": limits, "variables": variables},
    )


def is_parser_limit(error: GraphQLError) -> bool:
    """Whether ``error`` is graphql-core's parser giving up on a document for its size."""
    return isinstance(error, GraphQLSyntaxError) and error.message.startswith(
        _PARSER_LIMIT_PREFIXES
    )


def code_parser_limits(errors: Iterable[GraphQLError] | None) -> None:
    """Give the parser's size errors (too many tokens, nested too deeply) their code."""
    for error in errors or ():
        if is_parser_limit(error):
            # Mutated in place: strawberry already holds this very error object.
            error.extensions = {**(error.extensions or {}), "code": QUERY_TOO_COMPLEX}


class QueryLimitsExtension(SchemaExtension):
    """Strawberry extension enforcing :class:`QueryLimits` before execution.

    * ``on_operation``: sets graphql-core's ``max_tokens`` parse option;
    * ``on_parse``: gives the parser's size errors (too many tokens, nested too deeply)
      the ``QUERY_TOO_COMPLEX`` code;
    * ``on_validate``: measures depth, aliases and cost (with the request's variables)
      before the standard rules run; past a bound, the errors become the validation
      result and the standard rules are skipped.
    """

    def __init__(self, limits: QueryLimits | None = None) -> None:
        self.limits = limits if limits is not None else QueryLimits()

    def on_operation(self) -> Iterator[None]:
        self.execution_context.parse_options["max_tokens"] = self.limits.max_tokens
        yield

    def on_parse(self) -> Iterator[None]:
        yield
        code_parser_limits(self.execution_context.pre_execution_errors)

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and not context.pre_execution_errors:
            errors = check_document(
                context.schema._schema, document, self.limits, context.variables
            )
            if errors:
                # Strawberry skips its own validation when errors are already present.
                context.pre_execution_errors = errors
        yield


def limit_extensions(
    limits: QueryLimits,
) -> list[type[SchemaExtension] | Callable[[], SchemaExtension]]:
    """What to pass to ``strawberry.Schema(extensions=...)`` to enforce ``limits``.

    Factories rather than instances: strawberry 0.341 deprecates extension instances
    (one instance would be shared by concurrent requests) and builds one per request.
    """

    def factory() -> SchemaExtension:
        return QueryLimitsExtension(limits)

    return [factory]
