"""Running an operation's plan: graphql-core's execution algorithm, without re-deciding it.

`PlanExecutor` follows graphql-core's `Executor` step for step on the subset the plans cover
(`schema.compiled.plan`): the same resolvers called with the same arguments and resolve info,
root fields of a mutation one after the other and other sibling fields concurrently (so
DataLoaders batch as before), awaitables gathered with graphql-core's `gather_with_cancel`,
leaves coerced by their types, errors located on their path and nulls propagated to the
nearest nullable parent, with graphql-core's messages. What it skips is the deciding:
collecting fields, looking up definitions, type dispatch, and building a resolve info for
fields whose resolver never reads it. `tests/graphql/test_compiled_execution.py` runs
documents both ways and compares the results.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Awaitable, Iterable, Iterator, Sequence
from typing import Any, TypeGuard, cast

from graphql import GraphQLError, GraphQLResolveInfo, GraphQLSchema, Undefined, located_error
from graphql.execution.executor import CollectedErrors
from graphql.execution.values import VariableValues, get_argument_values
from graphql.pyutils import Path, async_reduce, gather_with_cancel, inspect, is_iterable
from graphql.pyutils.is_awaitable import is_async_iterable
from graphql.type.definition import GraphQLResolveInfoHelpers
from strawberry.execution.is_awaitable import optimized_is_awaitable as is_awaitable
from strawberry.schema.schema import _OperationContextAwareGraphQLResolveInfo as ResolveInfo

from schema.compiled.plan import (
    Completion,
    FieldPlan,
    LeafCompletion,
    ListCompletion,
    NonNullCompletion,
    ObjectCompletion,
    OperationPlan,
)

__all__ = ["PlanExecutor"]


class PlanExecutor:
    """One execution of one plan (graphql-core's `Executor`, for a planned operation)."""

    __slots__ = (
        "_background",
        "_helpers",
        "context",
        "errors",
        "operation_extensions",
        "plan",
        "root_value",
        "schema",
        "variables",
    )

    def __init__(
        self,
        schema: GraphQLSchema,
        plan: OperationPlan,
        variables: VariableValues,
        context: Any,
        operation_extensions: dict[str, Any] | None,
        root_value: Any = None,
    ) -> None:
        """`root_value`: the source of the root fields (a subscription's event)."""
        self.schema = schema
        self.root_value = root_value
        self.plan = plan
        self.variables = variables
        self.context = context
        self.operation_extensions = operation_extensions
        self.errors = CollectedErrors()
        self._background: set[asyncio.Future[Any]] = set()
        self._helpers: GraphQLResolveInfoHelpers | None = None

    # -- the operation -------------------------------------------------------------------

    async def execute(self) -> tuple[dict[str, Any] | None, list[GraphQLError]]:
        """(data, errors), as graphql-core's `execute_operation` builds its response."""
        plan = self.plan
        try:
            if plan.serial:
                result = self._execute_fields_serially(plan.fields, self.root_value)
            else:
                result = self._execute_fields(plan.fields, self.root_value, None)
            data = await result if is_awaitable(result) else result
        except GraphQLError as error:  # a non-null root field was null: no data at all
            self.errors.add(error, None)
            return None, self.errors.errors
        return data, self.errors.errors

    # -- selection sets ------------------------------------------------------------------

    def _execute_fields_serially(self, fields: tuple[FieldPlan, ...], source: Any) -> Any:
        def reducer(results: dict[str, Any], field: FieldPlan) -> Any:
            path = Path(None, field.response_name, field.parent_type.name)
            result = self._execute_field(field, source, path)
            if is_awaitable(result):

                async def set_result() -> dict[str, Any]:
                    results[field.response_name] = await result
                    return results

                return set_result()
            results[field.response_name] = result
            return results

        return async_reduce(reducer, fields, {}, _is_awaitable)

    def _execute_fields(
        self, fields: tuple[FieldPlan, ...], source: Any, path: Path | None
    ) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        results: dict[str, Any] = {}
        pending: list[str] = []
        try:
            for field in fields:
                name = field.response_name
                result = self._execute_field(
                    field, source, Path(path, name, field.parent_type.name)
                )
                results[name] = result
                if is_awaitable(result):
                    pending.append(name)
        except Exception:
            if pending:  # let siblings already started settle, as graphql-core does
                self._settle_in_background([results[name] for name in pending])
            raise
        if not pending:
            return results

        async def gathered() -> dict[str, Any]:
            if len(pending) == 1:
                results[pending[0]] = await results[pending[0]]
            else:
                values = await gather_with_cancel(*(results[name] for name in pending))
                results.update(zip(pending, values, strict=True))
            return results

        return gathered()

    # -- fields --------------------------------------------------------------------------

    def _execute_field(self, field: FieldPlan, source: Any, path: Path) -> Any:
        info: ResolveInfo | None = None
        try:
            if field.basic:
                if field.checks_types:
                    info = self._info(field, path)
                result = field.resolve(source, info)
            else:
                info = self._info(field, path)
                arguments = (
                    get_argument_values(field.definition, field.nodes[0], self.variables)
                    if field.has_arguments
                    else {}
                )
                result = field.resolve(source, info, **arguments)
            if is_awaitable(result):
                return self._complete_awaitable(field, info, path, result)
            completed = self._complete(field.completion, field, info, path, result)
            if is_awaitable(completed):
                return self._await_completed(field, path, completed)
        except Exception as raw_error:
            self._field_error(raw_error, field, field.completion, path)
            return None
        return completed

    async def _complete_awaitable(
        self, field: FieldPlan, info: ResolveInfo | None, path: Path, result: Any
    ) -> Any:
        try:
            completed = self._complete(field.completion, field, info, path, await result)
            if is_awaitable(completed):
                completed = await completed
        except Exception as raw_error:
            self._field_error(raw_error, field, field.completion, path)
            return None
        return completed

    async def _await_completed(self, field: FieldPlan, path: Path, completed: Any) -> Any:
        try:
            return await completed
        except Exception as raw_error:
            self._field_error(raw_error, field, field.completion, path)
            return None

    def _field_error(
        self, raw_error: Exception, field: FieldPlan, completion: Completion, path: Path
    ) -> None:
        """Locate the error; a non-null position passes it up to its parent, any other
        is nulled and the error kept (graphql-core's `handle_field_error`)."""
        error = located_error(raw_error, field.nodes, path.as_list())
        if isinstance(completion, NonNullCompletion):
            raise error
        self.errors.add(error, path)

    def _info(self, field: FieldPlan, path: Path) -> ResolveInfo:
        """The resolve info strawberry's execution context gives a resolver."""
        plan = self.plan
        return ResolveInfo(
            field.field_name,
            field.nodes,
            field.definition.type,
            field.parent_type,
            path,
            self.schema,
            plan.fragments,
            self.root_value,
            plan.operation,
            self.variables.coerced,
            self.context,
            is_awaitable,
            None,  # abort signal
            self._async_helpers(),
            self.operation_extensions,  # type: ignore[arg-type]  # None as strawberry passes it
        )

    def _async_helpers(self) -> GraphQLResolveInfoHelpers:
        if self._helpers is None:
            self._helpers = GraphQLResolveInfoHelpers(_gather, self._track)
        return self._helpers

    # -- values --------------------------------------------------------------------------

    def _complete(
        self,
        completion: Completion,
        field: FieldPlan,
        info: ResolveInfo | None,
        path: Path,
        result: Any,
    ) -> Any:
        if isinstance(result, Exception):
            raise result
        if isinstance(completion, NonNullCompletion):
            completed = self._complete(completion.inner, field, info, path, result)
            if completed is None:
                raise TypeError(
                    "Cannot return null for non-nullable field"
                    f" {field.parent_type}.{field.field_name}."
                )
            return completed
        if result is None or result is Undefined:
            return None
        if isinstance(completion, LeafCompletion):
            coerced = completion.type.coerce_output_value(result)
            if coerced is Undefined or coerced is None:
                raise TypeError(
                    f"Expected `{inspect(completion.type)}.coerce_output_value("
                    f"{inspect(result)})` to return non-nullable value, returned:"
                    f" {inspect(coerced)}"
                )
            return coerced
        if completion.flat is not None:
            try:
                return completion.flat(result)
            except Exception:  # noqa: S110  # completed field by field below, which says why
                pass
        if isinstance(completion, ObjectCompletion):
            is_type_of = completion.type.is_type_of
            if is_type_of is not None:
                assert info is not None, "built for every field whose completion checks types"
                verdict = is_type_of(result, cast("GraphQLResolveInfo[Any]", info))
                if _is_awaitable(verdict):
                    return self._complete_object_after_check(
                        completion, field, path, result, verdict
                    )
                if not verdict:
                    raise _invalid_return_type(completion, field, result)
            return self._execute_fields(completion.fields, result, path)
        return self._complete_list(completion, field, info, path, result)

    async def _complete_object_after_check(
        self,
        completion: ObjectCompletion,
        field: FieldPlan,
        path: Path,
        result: Any,
        verdict: Awaitable[bool],
    ) -> Any:
        if not await verdict:
            raise _invalid_return_type(completion, field, result)
        fields = self._execute_fields(completion.fields, result, path)
        return await fields if isinstance(fields, Awaitable) else fields

    def _complete_list(
        self,
        completion: ListCompletion,
        field: FieldPlan,
        info: ResolveInfo | None,
        path: Path,
        result: Any,
    ) -> Any:
        if is_async_iterable(result):
            return self._complete_async_items(completion, field, info, path, result)
        if not is_iterable(result):
            raise GraphQLError(
                "Expected Iterable, but did not find one for field"
                f" '{field.parent_type}.{field.field_name}'."
            )
        completed: list[Any] = []
        pending: list[int] = []
        iterator = iter(result)
        try:
            for index, item in enumerate(iterator):
                self._complete_item(completion.item, field, info, path, index, item, completed)
                if is_awaitable(completed[index]):
                    pending.append(index)
        except Exception:
            left = [completed[index] for index in pending]
            left.extend(item for item in _drain(iterator) if is_awaitable(item))
            if left:
                self._settle_in_background(left)
            raise
        if not pending:
            return completed
        return self._gather_items(completed, pending)

    async def _complete_async_items(
        self,
        completion: ListCompletion,
        field: FieldPlan,
        info: ResolveInfo | None,
        path: Path,
        result: AsyncIterable[Any],
    ) -> list[Any]:
        """A list field's async iterable: items taken one after the other, each completed
        as a list's (graphql-core's `complete_async_iterator_value`, without streaming)."""
        iterator = result.__aiter__()
        completed: list[Any] = []
        pending: list[int] = []
        try:
            while True:
                try:
                    item = await anext(iterator)
                except StopAsyncIteration:
                    break
                except Exception as raw_error:
                    raise located_error(raw_error, field.nodes, path.as_list()) from raw_error
                index = len(completed)
                self._complete_item(completion.item, field, info, path, index, item, completed)
                if is_awaitable(completed[index]):
                    pending.append(index)
        except Exception:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
            if pending:
                self._settle_in_background([completed[index] for index in pending])
            raise
        if not pending:
            return completed
        return await self._gather_items(completed, pending)

    def _complete_item(
        self,
        completion: Completion,
        field: FieldPlan,
        info: ResolveInfo | None,
        path: Path,
        index: int,
        item: Any,
        completed: list[Any],
    ) -> None:
        """Append the list item's completed value, or an awaitable of it (graphql-core's
        `complete_list_item_value` and `complete_awaitable_list_item_value`)."""
        item_path = path.add_key(index, None)
        if is_awaitable(item):
            awaited = self._complete_awaitable_item(completion, field, info, item_path, item)
            completed.append(awaited)
            return
        try:
            value = self._complete(completion, field, info, item_path, item)
        except Exception as raw_error:
            self._field_error(raw_error, field, completion, item_path)
            completed.append(None)
            return
        if is_awaitable(value):
            completed.append(self._await_item(completion, field, item_path, value))
        else:
            completed.append(value)

    async def _gather_items(self, completed: list[Any], pending: list[int]) -> list[Any]:
        if len(pending) == 1:
            completed[pending[0]] = await completed[pending[0]]
        else:
            values = await gather_with_cancel(*(completed[index] for index in pending))
            for index, value in zip(pending, values, strict=True):
                completed[index] = value
        return completed

    async def _complete_awaitable_item(
        self,
        completion: Completion,
        field: FieldPlan,
        info: ResolveInfo | None,
        path: Path,
        item: Awaitable[Any],
    ) -> Any:
        try:
            value = self._complete(completion, field, info, path, await item)
            if is_awaitable(value):
                value = await value
        except Exception as raw_error:
            self._field_error(raw_error, field, completion, path)
            return None
        return value

    async def _await_item(
        self, completion: Completion, field: FieldPlan, path: Path, value: Awaitable[Any]
    ) -> Any:
        try:
            return await value
        except Exception as raw_error:
            self._field_error(raw_error, field, completion, path)
            return None

    # -- asynchronous work left behind ------------------------------------------------

    def _settle_in_background(self, awaitables: list[Awaitable[Any]]) -> None:
        """Awaitables a propagating error leaves behind still run to their end (their errors
        observed, no coroutine left unawaited), as graphql-core settles them."""
        future = asyncio.gather(*awaitables, return_exceptions=True)
        self._background.add(future)
        future.add_done_callback(self._background.discard)

    def _track(self, values: Iterable[Any]) -> None:
        """`info.async_helpers.track`: settle a resolver's side work in the background."""
        awaitables = [value for value in values if is_awaitable(value)]
        if awaitables:
            self._settle_in_background(awaitables)


def _invalid_return_type(
    completion: ObjectCompletion, field: FieldPlan, result: Any
) -> GraphQLError:
    return GraphQLError(
        f"Expected value of type '{completion.type}' but got: {inspect(result)}.", field.nodes
    )


def _drain(iterator: Iterator[Any]) -> list[Any]:
    """What an iterator still holds after an error (graphql-core's
    `collect_iterator_awaitables`), up to any error it raises itself."""
    items: list[Any] = []
    with contextlib.suppress(Exception):
        items.extend(iterator)
    return items


def _is_awaitable(value: Any) -> TypeGuard[Awaitable[Any]]:
    return is_awaitable(value)


def _gather(values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
    """`info.async_helpers.gather` (graphql-core's `gather_async_work`)."""
    return gather_with_cancel(*values)
