"""Compiled operations: a document's plan, kept by query text, run as the schema would run it.

For a query text and operation name seen before, `CompiledOperations.execute` does what
strawberry's `Schema.execute` does with Laurel's `OperationHooks` around graphql-core, minus
the per-request deciding: the document comes parsed and validated from the schema's
`DocumentCache` (the query limits are measured again only when they depend on the
variables), the variables are coerced by graphql-core's own `get_variable_values`, the plan
runs (`schema.compiled.executor`), the errors get their codes (internals masked in
production) and the metrics see the operation.

Whatever the plan does not answer for, it leaves to the schema (`execute` returns None,
having run nothing): a document without a plan (`schema.compiled.plan`), one that does not
parse or validate, is past the query limits, names no operation it can run or one of a
type the transport does not allow (a mutation over GET), or variables that do not coerce.
Strawberry then reports the error exactly as without plans.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Final, Protocol

from graphql import GraphQLError, GraphQLSchema, specified_rules
from graphql.execution.values import VariableValues, get_variable_values
from strawberry.types import ExecutionResult

from schema.compiled.executor import PlanExecutor
from schema.compiled.plan import OperationPlan, plan_operation, plan_subscription
from schema.documents import CACHE_SIZE, DocumentCache, KnownDocument
from schema.error_codes import code_errors

__all__ = ["CompiledOperation", "CompiledOperations", "OperationObserver", "ReadView"]

# Strawberry's default validation rules (its `ExecutionContext.validation_rules`).
_RULES: Final = tuple(specified_rules)
# graphql-core's default for `execute` (`Executor.build`'s `max_coercion_errors`).
_MAX_COERCION_ERRORS: Final = 50
# What an operation declaring no variables has, whatever the request sent.
_NO_VARIABLES: Final = VariableValues({}, {})


OperationObserver = Callable[[str | None, str, bool, float], None]
"""Called when an operation ends: its name, its type (``query``, ``mutation``,
``subscription``, or ``invalid`` when the request names none), whether it failed (any
error), and its duration in seconds."""


class ReadView(Protocol):
    """A query's plan answered another way (e.g. `schema.compiled.member_view`)."""

    async def answer(self, context: Any) -> dict[str, Any] | None:
        """The operation's data (no errors), or None, having written nothing, where the
        plan must answer."""


@dataclass(frozen=True, slots=True)
class CompiledOperation:
    known: KnownDocument
    plan: OperationPlan
    view: ReadView | None = None

    @property
    def name(self) -> str | None:
        name = self.plan.operation.name
        return name.value if name is not None else None

    @property
    def kind(self) -> str:
        return self.plan.operation.operation.value


class CompiledOperations:
    """Plans by (query text, operation name); bounded like the document cache."""

    def __init__(
        self,
        schema: GraphQLSchema,
        documents: DocumentCache,
        *,
        mask_internal: bool,
        observe: OperationObserver | None = None,
        maxsize: int = CACHE_SIZE,
        plan_view: Callable[[OperationPlan], ReadView | None] | None = None,
    ) -> None:
        self._schema = schema
        # Plans of some queries as another way to answer them (`ReadView`), tried first.
        self._plan_view = plan_view
        self._documents = documents
        self._parse_options = {"max_tokens": documents.limits.max_tokens}
        self._mask_internal = mask_internal
        self._observe = observe
        self._maxsize = maxsize
        # None: the document has no plan (or does not parse or validate), for any variables.
        self._plans: dict[tuple[str, str | None], CompiledOperation | None] = {}
        # The same for subscriptions' per-event plans (`find_subscription`).
        self._subscriptions: dict[tuple[str, str | None], CompiledOperation | None] = {}

    def __len__(self) -> int:
        """How many query texts (and names) have a verdict: a plan, or none."""
        return len(self._plans)

    def find(self, query: str, operation_name: str | None) -> CompiledOperation | None:
        """The compiled operation for this text and name, planned on first sight."""
        key = (query, operation_name)
        try:
            return self._plans[key]
        except KeyError:
            pass
        compiled = self._compile(query, operation_name)
        if len(self._plans) >= self._maxsize:
            self._plans.pop(next(iter(self._plans)), None)
        self._plans[key] = compiled
        return compiled

    def _compile(self, query: str, operation_name: str | None) -> CompiledOperation | None:
        known = self._known(query)
        if known is None:
            return None
        plan = plan_operation(self._schema, known.document, operation_name)
        if plan is None:
            return None
        view = self._plan_view(plan) if self._plan_view is not None else None
        return CompiledOperation(known, plan, view)

    def _known(self, query: str) -> KnownDocument | None:
        """The document, parsed and valid (None: it does not parse, or does not validate)."""
        known = self._documents.parse(query, self._parse_options)
        if known is None or self._documents.validation_errors(known, self._schema, _RULES):
            return None
        return known

    def find_subscription(
        self, query: str, operation_name: str | None, variables: dict[str, Any] | None
    ) -> CompiledOperation | None:
        """The subscription whose events `execute_event` answers, or None where strawberry
        must run it (no plan, invalid, past the query limits for these variables, or
        declaring variables: its events are then run as before)."""
        key = (query, operation_name)
        try:
            compiled = self._subscriptions[key]
        except KeyError:
            known = self._known(query)
            plan = (
                plan_subscription(self._schema, known.document, operation_name)
                if known is not None
                else None
            )
            if plan is not None and plan.operation.variable_definitions:
                plan = None
            compiled = CompiledOperation(known, plan) if known and plan else None
            if len(self._subscriptions) >= self._maxsize:
                self._subscriptions.pop(next(iter(self._subscriptions)), None)
            self._subscriptions[key] = compiled
        if compiled is None or self._documents.check(
            compiled.known, self._schema, variables, _RULES
        ):
            return None
        return compiled

    async def execute_event(
        self, compiled: CompiledOperation, event: Any, context: Any
    ) -> ExecutionResult:
        """One event's result (graphql-core's `execute_subscription_event`, then the error
        codes strawberry's stream gives each result)."""
        executor = PlanExecutor(
            self._schema, compiled.plan, _NO_VARIABLES, context, None, root_value=event
        )
        try:
            data, errors = await executor.execute()
        except Exception as error:  # what strawberry's stream does with a crash
            return self.failed_event(error)
        return ExecutionResult(
            data=data,
            errors=code_errors(errors, mask_internal=self._mask_internal) if errors else None,
        )

    def failed_event(self, error: Exception) -> ExecutionResult:
        """The last result of a stream that raised `error` (strawberry's `_stream`)."""
        located = (
            error
            if isinstance(error, GraphQLError)
            else GraphQLError(str(error), original_error=error)
        )
        return ExecutionResult(
            data=None, errors=code_errors([located], mask_internal=self._mask_internal)
        )

    def observed(self, name: str | None, kind: str, failed: bool, seconds: float) -> None:
        """Tell the observer (the metrics) an operation ended."""
        if self._observe is not None:
            self._observe(name, kind, failed, seconds)

    async def execute(
        self,
        query: str,
        *,
        operation_name: str | None,
        variables: dict[str, Any] | None,
        context: Any,
        allowed_types: Collection[str],
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult | None:
        """The operation's result, or None (nothing run) where the schema must answer.

        `allowed_types`: the operation types the transport allows (`query`, `mutation`)."""
        started = time.perf_counter()
        compiled = self.find(query, operation_name)
        if compiled is None or compiled.kind not in allowed_types:
            return None
        if self._documents.check(compiled.known, self._schema, variables, _RULES):
            return None  # past the query limits for these variables
        plan = compiled.plan
        if compiled.view is not None:
            data = await compiled.view.answer(context)
            if data is not None:
                self._observed(compiled, False, started)
                return ExecutionResult(data=data, errors=None)
        coerced = get_variable_values(
            self._schema,
            plan.operation.variable_definitions or (),
            variables or {},
            max_errors=_MAX_COERCION_ERRORS,
        )
        if isinstance(coerced, list):
            return None
        executor = PlanExecutor(self._schema, plan, coerced, context, operation_extensions)
        try:
            data, errors = await executor.execute()
        except Exception as error:  # what strawberry's `execute` does with a crash
            data, errors = None, [GraphQLError(str(error), original_error=error)]
        result = ExecutionResult(
            data=data,
            errors=code_errors(errors, mask_internal=self._mask_internal) if errors else None,
        )
        self._observed(compiled, bool(errors), started)
        return result

    def _observed(self, compiled: CompiledOperation, failed: bool, started: float) -> None:
        if self._observe is not None:
            seconds = time.perf_counter() - started
            self._observe(compiled.name, compiled.kind, failed, seconds)
