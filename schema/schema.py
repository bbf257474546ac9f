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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import strawberry
from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, parse
from strawberry.extensions import SchemaExtension
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.name_converter import NameConverter
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext, StreamExecutionResult

from schema.error_codes import ErrorCoder
from schema.extension_runner import LeanExtensionsRunner
from schema.limits import QueryLimits, code_parser_limits, limit_verdict
from schema.mutation import Mutation
from schema.query import Query
from schema.scalars import DateTime
from schema.subscription import Subscription
from schema.types.ledger import PointsTransaction
from schema.types.member import Member
from schema.types.program import Promotion, Tier

# Mobile apps send the same few documents over and over: parse and validate each once.
CACHE_SIZE = 512

OperationObserver = Callable[[ExecutionContext, float], None]
"""Called when an operation ends, with its context and its duration in seconds."""


class LaurelSchema(strawberry.Schema):
    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        return LeanExtensionsRunner(execution_context, extensions)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # ErrorCodes logs the unexpected errors, once; client errors are not worth a traceback.
        return None


@dataclass(slots=True)
class _Document:
    """A parsed document and what is known of it."""

    document: DocumentNode
    # The standard rules' errors, and the rules they came from.
    validation: tuple[tuple[type[ASTValidationRule], ...], list[GraphQLError]] | None = None
    # Measured within the query limits, whatever the variables.
    within_limits: bool = False


class DocumentCache:
    """Parsed documents by query text (and parse options), with their verdicts.

    Bounded: past ``maxsize`` documents, the oldest is dropped (a client sending endless
    distinct documents only makes each of them cost what it would without a cache).
    Documents that do not parse are not kept. One cache serves one schema (``build_schema``
    makes one per schema) and one set of limits: its verdicts hold for those.
    """

    def __init__(self, limits: QueryLimits, maxsize: int = CACHE_SIZE) -> None:
        self.limits = limits
        self._maxsize = maxsize
        self._documents: dict[tuple[str, tuple[tuple[str, Any], ...]], _Document] = {}

    def __len__(self) -> int:
        return len(self._documents)

    def parse(self, query: str, options: Mapping[str, Any]) -> _Document | None:
        """The document of ``query``, or None when it does not parse."""
        key = (query, tuple(options.items()))
        found = self._documents.get(key)
        if found is not None:
            return found
        try:
            document = parse(query, **options)
        except Exception:  # strawberry parses it again, and reports the error
            return None
        if len(self._documents) >= self._maxsize:
            self._documents.pop(next(iter(self._documents)), None)
        found = self._documents[key] = _Document(document)
        return found

    def check(
        self,
        known: _Document,
        schema: GraphQLSchema,
        variables: Mapping[str, Any] | None,
        rules: tuple[type[ASTValidationRule], ...],
    ) -> list[GraphQLError]:
        """The document's errors: past the limits (then no other rule runs), else invalid."""
        if not known.within_limits:
            errors, any_variables = limit_verdict(schema, known.document, self.limits, variables)
            if errors:
                return errors
            known.within_limits = any_variables
        validation = known.validation
        if validation is None or validation[0] != rules:
            validation = (rules, validate_document(schema, known.document, rules))
            known.validation = validation
        return list(validation[1])


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
        self.known: _Document | None = None

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.parse_options["max_tokens"] = self.documents.limits.max_tokens
        started = time.perf_counter()
        self.coder.start()
        yield
        self.coder.finish(context)
        if self.observe is not None:
            self.observe(context, time.perf_counter() - started)

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
                known = _Document(document)  # not from the cache: checked, not kept
            # Strawberry skips its own validation when this is set (even to no errors).
            context.pre_execution_errors = self.documents.check(
                known, context.schema._schema, context.variables, context.validation_rules
            )
        yield
        self.coder.remember_client_errors(context)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        self.coder.stream_result(self.execution_context, result)
        yield


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


def build_schema(
    *,
    limits: QueryLimits | None = None,
    mask_internal_errors: bool = True,
    extra_extensions: Sequence[type[SchemaExtension]] = (),
    observe: OperationObserver | None = None,
) -> strawberry.Schema:
    """The schema, with :class:`OperationHooks` first and then ``extra_extensions`` (whose
    ``on_operation`` thus ends before errors get their codes); ``observe`` is called as
    each operation ends (``api.metrics.Metrics.observe``)."""
    # Strawberry builds extensions per request; the cache lives as long as the schema.
    documents = DocumentCache(limits or QueryLimits())

    def hooks() -> SchemaExtension:
        return OperationHooks(documents, mask_internal=mask_internal_errors, observe=observe)

    return LaurelSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[Member, PointsTransaction, Tier, Promotion],
        config=StrawberryConfig(
            auto_camel_case=True, name_converter=CachedNames(), scalar_map={datetime: DateTime}
        ),
        extensions=[hooks, *extra_extensions],
    )
