"""Give every GraphQL error an ``extensions.code`` and hide internal errors.

Clients switch on ``extensions.code`` (see the contract, "Errors"). The rules, first match:

1. the error comes from a :class:`~schema.exceptions.CodedGraphQLError` (directly, or
   through graphql-core's wrapping): its message and extensions;
2. the error already carries ``extensions.code`` (e.g. the query limits): kept as is;
3. a client error: syntax and validation errors, variable coercion errors (no original
   error, or a GraphQLError as original error) and anything raised while parsing or
   validating, and strawberry's own request errors (no query, unknown ``operationName``,
   operation type not allowed, malformed global ID): ``BAD_USER_INPUT``, message kept;
4. anything else is unexpected: ``INTERNAL_SERVER_ERROR``, logged with its traceback on the
   ``laurel.graphql`` logger; when masking, the client gets "Unexpected error." and
   nothing of the original (no message, no original error, no extensions).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Final

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.relay.types import GlobalIDValueError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import ExecutionResult as StrawberryExecutionResult
from strawberry.types.execution import StreamExecutionResult

from schema.exceptions import CodedGraphQLError

if TYPE_CHECKING:
    from strawberry.types import ExecutionContext

__all__ = [
    "BAD_USER_INPUT",
    "INTERNAL_SERVER_ERROR",
    "MASKED_MESSAGE",
    "ErrorCoder",
    "ErrorCodes",
    "code_error",
    "code_errors",
    "logger",
]

logger: Final = logging.getLogger("laurel.graphql")

BAD_USER_INPUT: Final = "BAD_USER_INPUT"
INTERNAL_SERVER_ERROR: Final = "INTERNAL_SERVER_ERROR"
MASKED_MESSAGE: Final = "Unexpected error."

# Original errors that mean the client got the request wrong: GraphQL errors (variable
# coercion wraps them) and strawberry's exceptions for no operation, an unknown
# operationName, an operation type not allowed on this transport, a malformed global ID.
_CLIENT_EXCEPTIONS: Final = (
    GraphQLError,
    MissingQueryError,
    CannotGetOperationTypeError,
    InvalidOperationTypeError,
    GlobalIDValueError,
)

# graphql-core's suggestions: " Did you mean 'name'?", " Did you mean 'Query' or 'Tier'?",
# " Did you mean the enum value 'GOLD'?" (names never contain a question mark).
_SUGGESTION: Final = re.compile(r"\s*Did you mean [^?]*\?")

# How far to follow GraphQLError.original_error chains (coercion wraps errors in errors).
_MAX_CHAIN: Final = 16


def _coded_cause(error: GraphQLError) -> CodedGraphQLError | None:
    cause: Exception | None = error.original_error
    for _ in range(_MAX_CHAIN):
        if isinstance(cause, CodedGraphQLError):
            return cause
        if not isinstance(cause, GraphQLError):
            return None
        cause = cause.original_error
    return None


def _has_code(error: GraphQLError) -> bool:
    extensions = error.extensions
    return isinstance(extensions, dict) and isinstance(extensions.get("code"), str)


def _describe_path(error: GraphQLError) -> str:
    if error.path:
        return ".".join(str(segment) for segment in error.path)
    return "<operation>"


def code_error(
    error: GraphQLError, *, mask_internal: bool, client_error: bool = False
) -> GraphQLError:
    """The error as clients get it: with ``extensions.code``, internal details masked.

    Coded errors are updated in place and returned (so transports that look at the
    error's class, such as the WebSocket handler for syntax errors, keep working); a
    masked error is a new error that holds nothing of the original but its location.
    ``client_error`` marks an error raised while parsing or validating the request.
    Logs unexpected errors, once: the result has a code, so coding it again is a no-op.
    """
    coded = _coded_cause(error)
    if coded is not None:
        error.message = coded.message
        error.extensions = dict(coded.extensions)
        return error

    if _has_code(error):
        return error

    original = error.original_error
    # A bare or wrapped GraphQL error with a path was raised while executing (serializing
    # a resolver's result, say): the server's fault. Without a path it is about the request.
    if original is None or isinstance(original, GraphQLError):
        about_request = not error.path
    else:
        about_request = isinstance(original, _CLIENT_EXCEPTIONS)
    if client_error or about_request:
        error.extensions = {**(error.extensions or {}), "code": BAD_USER_INPUT}
        if mask_internal:
            # "Did you mean 'name'?" would map a schema whose introspection is off.
            error.message = _SUGGESTION.sub("", error.message)
        return error

    logger.error(
        "Unexpected error while resolving %s: %s",
        _describe_path(error),
        error.message,
        exc_info=original,
    )
    if not mask_internal:
        error.extensions = {**(error.extensions or {}), "code": INTERNAL_SERVER_ERROR}
        return error
    return GraphQLError(
        MASKED_MESSAGE,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions={"code": INTERNAL_SERVER_ERROR},
    )


def code_errors(
    errors: Iterable[GraphQLError], *, mask_internal: bool, client_error: bool = False
) -> list[GraphQLError]:
    """:func:`code_error` applied to each error."""
    return [
        code_error(error, mask_internal=mask_internal, client_error=client_error)
        for error in errors
    ]


class ErrorCoder:
    """What :class:`ErrorCodes` does, as a plain object another extension can drive.

    The live schema folds it into its one extension (``schema.schema.OperationHooks``);
    :class:`ErrorCodes` wraps it as an extension of its own. Per operation: :meth:`start`
    when it starts, :meth:`remember_client_errors` when parsing and when validation end,
    :meth:`finish` when it ends, :meth:`stream_result` before each streamed result is sent.
    """

    __slots__ = ("_client_errors", "_coded", "_stream_result_processed", "mask_internal")

    def __init__(self, mask_internal: bool = True) -> None:
        self.mask_internal = mask_internal
        self._client_errors: dict[int, GraphQLError] = {}
        self._coded: dict[int, GraphQLError] = {}
        self._stream_result_processed = False

    def start(self) -> None:
        self._stream_result_processed = False
        self._client_errors.clear()
        self._coded.clear()

    def finish(self, context: ExecutionContext) -> None:
        if context.pre_execution_errors:
            context.pre_execution_errors = self._code_all(context.pre_execution_errors)
        # Streamed results were rewritten one by one, before being sent.
        if not self._stream_result_processed:
            result = context.result
            if isinstance(result, GraphQLExecutionResult | StrawberryExecutionResult):
                self._process(result)
            elif (initial_result := getattr(result, "initial_result", None)) is not None:
                self._process(initial_result)
        self._client_errors.clear()
        self._coded.clear()

    def remember_client_errors(self, context: ExecutionContext) -> None:
        for error in context.pre_execution_errors or ():
            self._client_errors[id(error)] = error

    def stream_result(self, context: ExecutionContext, result: StreamExecutionResult) -> None:
        self._stream_result_processed = True
        self._process(result)
        for incremental in getattr(result, "incremental", None) or ():
            self._process(incremental)
        for completed in getattr(result, "completed", None) or ():
            self._process(completed)
        if context.pre_execution_errors:
            # Strawberry stores each result's raw errors there too.
            context.pre_execution_errors = self._code_all(context.pre_execution_errors)
        # Everything seen so far is coded (so coding it again is a no-op): forget it,
        # lest a long subscription hold on to every error it ever produced.
        self._coded.clear()

    def _code(self, error: GraphQLError) -> GraphQLError:
        # Memoized by identity: the same error may be reached through the result and
        # through pre_execution_errors; it must map to one coded error, logged once.
        done = self._coded.get(id(error))
        if done is not None:
            return done
        coded = code_error(
            error,
            mask_internal=self.mask_internal,
            client_error=id(error) in self._client_errors,
        )
        self._coded[id(error)] = coded
        self._coded[id(coded)] = coded
        return coded

    def _code_all(self, errors: Iterable[GraphQLError]) -> list[GraphQLError]:
        return [self._code(error) for error in errors]

    def _process(self, result: object) -> None:
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._code_all(errors)  # type: ignore[attr-defined]


class ErrorCodes(SchemaExtension):
    """Strawberry extension applying :func:`code_error` to every error of an operation.

    Covers ``Schema.execute`` (queries and mutations over HTTP: the result is rewritten
    when the operation ends) and ``Schema.stream`` / ``Schema.subscribe`` (WebSocket
    operations, subscriptions included: each result is rewritten in ``on_stream_result``,
    before it is sent). Errors present when parsing or validation ends are client errors.

    It keeps per-operation state: pass a factory, ``lambda: ErrorCodes(mask_internal=...)``,
    to ``strawberry.Schema(extensions=...)``, never a shared instance (strawberry 0.341
    deprecates instances, with a DeprecationWarning, and sets each request's
    ``execution_context`` on the extension object).
    """

    def __init__(self, mask_internal: bool = True) -> None:
        self.mask_internal = mask_internal
        self.coder = ErrorCoder(mask_internal)

    def on_operation(self) -> Iterator[None]:
        self.coder.start()
        yield
        self.coder.finish(self.execution_context)

    def on_parse(self) -> Iterator[None]:
        yield
        self.coder.remember_client_errors(self.execution_context)

    def on_validate(self) -> Iterator[None]:
        yield
        self.coder.remember_client_errors(self.execution_context)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        self.coder.stream_result(self.execution_context, result)
        yield
