"""Building the executable schema: roots, scalars, limits, error codes and caches.

Everything Laurel does around an operation is one extension, :class:`OperationHooks`:
strawberry builds every extension anew for each request, and wraps each of its hooks in
a context manager for each step (operation, parsing, validation), so five extensions
cost five objects and nine context managers a request. In order:

* **operation starts**: the ``max_tokens`` parse option (the query limits), the clock
  for the metrics, and the error codes' per-operation state;
* **parsing**: the document from the :class:`DocumentCache` (parsed once per query text);
  a document that does not parse is left to strawberry, which parses it again and reports
  the error; then the parser's size errors get ``QUERY_TOO_COMPLEX``, and whatever errors
  there are count as the client's (see ``schema.error_codes``);
* **validation**: the query limits first (depth, aliases, cost), and the standard rules
  only for a document within them; both verdicts are kept per document, the limits'
  only when the document has no ``first: $variable`` (its verdict then holds for any
  variables); the errors count as the client's;
* **operation ends**: every error gets its code (``schema.error_codes``), then the
  ``observe`` callback (the Prometheus metrics) sees the operation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.name_converter import NameConverter
from strawberry.types import ExecutionContext, StreamExecutionResult

from schema.compiled import CompiledOperations, OperationObserver, ReadView
from schema.compiled.leaderboard_view import plan_leaderboard_view
from schema.compiled.member_view import plan_member_view
from schema.compiled.plan import OperationPlan
from schema.documents import DocumentCache, KnownDocument
from schema.error_codes import ErrorCoder
from schema.extension_runner import LeanExtensionsRunner
from schema.inputs import FloatRangeInput
from schema.limits import QueryLimits, code_parser_limits
from schema.mutation import Mutation
from schema.query import Query
from schema.resolver_timing import ResolverObserver, time_resolvers
from schema.scalars import DateTime, guard_text_inputs
from schema.subscription import Subscription
from schema.types.ledger import PointsTransaction
from schema.types.member import Member
from schema.types.program import Promotion, Tier
from schema.types.segments import FloatRange


class LaurelSchema(strawberry.Schema):
    # Plans of the documents clients send again and again (`schema.compiled`); None where
    # extensions beyond OperationHooks would have to see each operation.
    compiled: CompiledOperations | None = None

    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        return LeanExtensionsRunner(execution_context, extensions)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # ErrorCodes logs the unexpected errors, once; client errors are not worth a traceback.
        return None


class OperationHooks(SchemaExtension):
    """Laurel's one extension: query limits, caches, error codes, metrics (module doc)."""

    def __init__(
        self,
        documents: DocumentCache,
        *,
        mask_internal: bool,
        observe: OperationObserver | None,
    ) -> None:
        self.documents = documents
        self.observe = observe
        self.coder = ErrorCoder(mask_internal)
        self.known: KnownDocument | None = None

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.parse_options["max_tokens"] = self.documents.limits.max_tokens
        started = time.perf_counter()
        self.coder.start()
        yield
        self.coder.finish(context)
        if self.observe is not None:
            result = context.result
            failed = bool(context.pre_execution_errors or (result is not None and result.errors))
            seconds = time.perf_counter() - started
            self.observe(context.operation_name, _operation_type(context), failed, seconds)

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        query = context.query
        if context.graphql_document is None and isinstance(query, str):
            self.known = self.documents.parse(query, context.parse_options)
            if self.known is not None:
                context.graphql_document = self.known.document
        yield
        code_parser_limits(context.pre_execution_errors)
        self.coder.remember_client_errors(context)

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and not context.pre_execution_errors:
            known = self.known
            if known is None or known.document is not document:
                known = KnownDocument(document)  # not from the cache: checked, not kept
            # Strawberry skips its own validation when this is set (even to no errors).
            context.pre_execution_errors = self.documents.check(
                known, context.schema._schema, context.variables, context.validation_rules
            )
        yield
        self.coder.remember_client_errors(context)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        self.coder.stream_result(self.execution_context, result)
        yield


def _operation_type(context: ExecutionContext) -> str:
    try:
        return context.operation_type.value
    except (RuntimeError, AttributeError, ValueError):
        return "invalid"  # no document, or no operation it could run


class CachedNames(NameConverter):
    """Strawberry camel-cases field and argument names again for every argument it converts
    on every request; the names are few and never change."""

    def __init__(self) -> None:
        super().__init__(auto_camel_case=True)
        self._names: dict[str, str] = {}

    def apply_naming_config(self, name: str) -> str:
        converted = self._names.get(name)
        if converted is None:
            converted = self._names[name] = super().apply_naming_config(name)
        return converted


def _read_view(plan: OperationPlan) -> ReadView | None:
    """Another way to answer a planned query, where there is one (`CompiledOperations`)."""
    return plan_member_view(plan) or plan_leaderboard_view(plan)


def build_schema(
    *,
    limits: QueryLimits | None = None,
    mask_internal_errors: bool = True,
    extra_extensions: Sequence[type[SchemaExtension]] = (),
    observe: OperationObserver | None = None,
    resolvers_observed: ResolverObserver | None = None,
) -> strawberry.Schema:
    """The schema, with :class:`OperationHooks` first and then ``extra_extensions`` (whose
    ``on_operation`` thus ends before errors get their codes); ``observe`` is called as
    each operation ends (``api.metrics.Metrics.observe``); ``resolvers_observed`` after
    each call of a resolver function (``schema.resolver_timing``, for traces)."""
    # Strawberry builds extensions per request; the cache lives as long as the schema.
    documents = DocumentCache(limits or QueryLimits())

    def hooks() -> SchemaExtension:
        return OperationHooks(documents, mask_internal=mask_internal_errors, observe=observe)

    schema = LaurelSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # Types no field returns yet, but the contract names (and node(id) may return).
        types=[Member, PointsTransaction, Tier, Promotion, FloatRange, FloatRangeInput],
        config=StrawberryConfig(
            auto_camel_case=True, name_converter=CachedNames(), scalar_map={datetime: DateTime}
        ),
        extensions=[hooks, *extra_extensions],
    )
    guard_text_inputs(schema._schema)
    if resolvers_observed is not None:  # tracing: slow resolvers get spans (api.tracing)
        time_resolvers(schema._schema, resolvers_observed)
    if not extra_extensions:
        schema.compiled = CompiledOperations(
            schema._schema,
            documents,
            mask_internal=mask_internal_errors,
            observe=observe,
            # Read views answer without calling the resolvers: where each resolver call is to
            # be timed (tracing's slow-resolver spans), every document runs them.
            plan_view=_read_view if resolvers_observed is None else None,
        )
    return schema
