"""The ASGI view serving the schema on Starlette: ``POST/GET /graphql`` and WebSockets.

On top of strawberry's ``GraphQL`` view:

* JSON is encoded and decoded with orjson;
* the response's media type follows ``Accept`` (``api.http_media``): application/json as
  always, or application/graphql-response+json with the specification's status codes (400
  for a document that does not parse or variables that do not coerce, 422 for validation,
  no ``data`` entry for a request that never ran); neither accepted: 406;
* every request the view refuses (malformed body, invalid UTF-8, JSON nested too deeply,
  a body that is not a JSON object, batching, missing or non-string ``query``, a
  mutation over GET (405, ``Allow: POST``), an unsupported method (405) or content type
  (415)...) gets a GraphQL error response,
  ``{"data": null, "errors": [{"message", "extensions": {"code"}}]}``, with a
  4xx status (never strawberry's plain-text body, never a 500); a CodedGraphQLError
  raised outside execution (e.g. by the context getter) gets its code and a matching
  status (401, 403, 429, 400); anything else unexpected is a masked JSON 500, logged;
* errors that escaped the ``ErrorCodes`` extension still get a code (masked);
* persisted queries and trusted documents (``api.persisted``): a request may name its
  document by hash (``extensions.persistedQuery``, over POST or GET) or by ``documentId``
  instead of sending it; the text found runs as if sent (planned documents stay on the fast
  path), and in trusted mode restricted callers run registered documents only;
* WebSockets speak ``graphql-transport-ws`` only; each ``subscribe`` message passes
  ``on_ws_operation`` first (rate limits), and a ``connection_init`` refused for its rate
  closes with 4429 rather than 4403; a planned ``pointsUpdated`` is answered by
  ``api.live_operations`` (same messages, nothing kept running while it waits);
* with tracing on (``api.tracing``), each operation request runs in its span;
* GraphiQL (``GET /graphql`` from a browser) is Laurel's own page, see ``api.pages``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Final, Generic, TypeVar

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError, OperationType, get_operation_ast, parse
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.types import QueryParams
from strawberry.schema.base import BaseSchema
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    ErrorMessage,
    SubscribeMessage,
)
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from api import pages
from api.http_media import GRAPHQL_RESPONSE_JSON, JSON, MediaType, negotiate, request_error_status
from api.live_operations import LiveOperation, LiveOperations
from api.persisted import PERSISTED_QUERY_NOT_FOUND, PersistedDocuments
from api.tracing import Tracing
from models.engine import dropped
from schema.compiled import CompiledOperations
from schema.error_codes import (
    BAD_USER_INPUT,
    INTERNAL_SERVER_ERROR,
    MASKED_MESSAGE,
    code_errors,
)
from schema.exceptions import CodedGraphQLError, RateLimited

__all__ = ["CONNECTION_CLEANUPS", "ContextGetter", "LaurelGraphQL"]

logger: Final = logging.getLogger("laurel.graphql")

ContextT = TypeVar("ContextT")

ContextGetter = Callable[[Request | WebSocket, Response | None], Awaitable[ContextT]]
CachedExecution = Callable[
    [ContextT, GraphQLRequestData, Callable[[], Awaitable[ExecutionResult]]],
    Awaitable[ExecutionResult],
]
"""Builds the context of an operation: ``(request or websocket, sub-response or None)``."""

# The HTTP status of a CodedGraphQLError raised outside execution (e.g. by the context
# getter, while authenticating the request).
_STATUS_BY_CODE: Final[Mapping[str, int]] = {
    "BAD_USER_INPUT": 400,
    "QUERY_TOO_COMPLEX": 400,
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "RATE_LIMITED": 429,
    # Apollo Client and urql resend the query on this; a 400 would make Apollo's older
    # links give up persisted queries for good.
    PERSISTED_QUERY_NOT_FOUND: 200,
    "PERSISTED_QUERY_NOT_IN_LIST": 403,
}

_NOT_AN_OBJECT: Final = "Expected a JSON object (batched requests are not supported)."

# The operation types an HTTP request may run, by whether it is a GET (strawberry's
# `OperationType.from_http`: queries only over GET).
_ALLOWED_TYPES: Final = {True: frozenset({"query"}), False: frozenset({"query", "mutation"})}

# GET parameters that name a document without sending it (see `api.persisted`).
_PERSISTED_PARAMS: Final = ("extensions", "documentId")


@dataclasses.dataclass
class LaurelRequestData(GraphQLRequestData):
    """A request's data, with the document it names by id instead of sending it (the
    GraphQL-over-HTTP persisted documents convention; None: it sent `query`, or nothing)."""

    document_id: str | None = None


# The key, in a WebSocket's scope state, of callables run when the connection ends.
CONNECTION_CLEANUPS: Final = "laurel.connection_cleanups"
# The key, in a WebSocket's scope state, of the close code and reason that replace
# strawberry's 4403 Forbidden when a `connection_init` is refused for its rate.
_CLOSE_INSTEAD: Final = "laurel.close_instead"


class _WebSocketAdapter(ASGIWebSocketAdapter):
    """Strawberry's adapter, closing with the code `on_ws_connect` chose (4429 when rate
    limited) where strawberry's handler can only say 4403."""

    async def close(self, code: int, reason: str) -> None:
        instead = self.ws.scope.get("state", {}).pop(_CLOSE_INSTEAD, None)
        if instead is not None and code == 4403:
            code, reason = instead
        await super().close(code, reason)


def _as_graphql_response(response: Response) -> Response:
    """A response in application/graphql-response+json: its media type, and for a request
    that never ran, a 4xx status and no `data` entry (see `api.http_media`)."""
    response.headers["content-type"] = MediaType.GRAPHQL_RESPONSE.content_type
    if response.status_code != 200 or b'"errors"' not in response.body:
        return response
    body = orjson.loads(response.body)
    status = request_error_status(body)
    if status is None:
        return response
    body.pop("data", None)
    return Response(
        orjson.dumps(body),
        status_code=status,
        headers={k: v for k, v in response.headers.items() if k != "content-length"},
    )


def _read_on_a_dropped_connection(
    errors: Sequence[GraphQLError], request_data: GraphQLRequestData
) -> bool:
    """Whether a query failed because the server dropped a connection under it (a
    failover): mutations are not run twice here (their units of work repeat what is safe)."""
    if not any(dropped(error.original_error) for error in errors):
        return False
    if not isinstance(request_data.query, str):
        return False
    try:
        document = parse(request_data.query)
    except GraphQLError:
        return False
    operation = get_operation_ast(document, request_data.operation_name)
    return operation is not None and operation.operation is OperationType.QUERY


def _has_code(extensions: object) -> bool:
    return isinstance(extensions, dict) and isinstance(extensions.get("code"), str)


def _malformed(message: object) -> bool:
    """Whether a graphql-transport-ws message has the wrong shape: not an object with a
    string `type`, or a `subscribe`/`complete` whose fields have the wrong types. Strawberry
    indexes into messages as they come, so a JSON list or a string payload raised inside
    its connection handler (the socket dropped with 1006, an error logged)."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return True
    kind = message["type"]
    if kind in ("subscribe", "complete") and not isinstance(message.get("id"), str):
        return True
    if kind != "subscribe":
        return False
    payload = message.get("payload")
    return not (
        isinstance(payload, dict)
        and isinstance(payload.get("query"), str | None)
        and isinstance(payload.get("variables"), dict | None)
        and isinstance(payload.get("operationName"), str | None)
        and isinstance(payload.get("extensions"), dict | None)
    )


class _TransportWSHandler(BaseGraphQLTransportWSHandler[Any, None]):
    """graphql-transport-ws with Laurel's checks of every message: its shape (a malformed
    one closes the connection with 4400, as the protocol says), then for `subscribe` the
    view's `on_ws_operation` (rate limits), its document found (by hash too) and, in
    trusted mode, registered for restricted callers. A refusal is the operation's `error`
    message; the connection stays open."""

    async def handle_message(self, message: Any) -> None:
        if _malformed(message):
            await self.handle_invalid_message("Invalid message")
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        # Cancelled by now, or the connection is closing: not kept as long as it is open.
        self.connection_init_timeout_task = None

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        view = self.view
        if not isinstance(view, LaurelGraphQL) or not self.connection_acknowledged:
            await super().handle_subscribe(message)
            return
        try:
            if view.on_ws_operation is not None:
                await view.on_ws_operation(self.context)
            message = await self._resolved(view, message)
        except CodedGraphQLError as error:
            refusal: ErrorMessage = {
                "id": message["id"],
                "type": "error",
                "payload": [GraphQLError(error.message, extensions=error.extensions).formatted],
            }
            await self.send_message(refusal)
            return
        if view.live is not None and self._may_open(message["id"]):
            operation = view.live.open(self, message)
            if operation is not None:
                self.operations[message["id"]] = operation
                return
        await super().handle_subscribe(message)

    def _may_open(self, operation_id: str) -> bool:
        """Whether strawberry would start this operation (else it closes the socket for a
        reused id, or refuses one past the connection's limit, with its own messages)."""
        limit = self.max_subscriptions_per_connection
        return operation_id not in self.operations and (
            limit is None or len(self.operations) < limit
        )

    async def cleanup_operation(self, operation_id: str) -> None:
        operation = self.operations.get(operation_id)
        if isinstance(operation, LiveOperation):
            del self.operations[operation_id]
            operation.live.close(operation)
            return
        await super().cleanup_operation(operation_id)

    async def _resolved(
        self, view: LaurelGraphQL[Any], message: SubscribeMessage
    ) -> SubscribeMessage:
        """The message with its document found when it names one by hash (CodedGraphQLError
        when it cannot be had, or trusted mode refuses it)."""
        payload: object = message.get("payload")
        if view.persisted is None or message.get("id") in self.operations:
            return message
        if not isinstance(payload, dict):
            return message
        query = payload.get("query")
        extensions = payload.get("extensions")
        found = await view.persisted.resolve(
            query if isinstance(query, str) else None,
            extensions if isinstance(extensions, dict) else None,
            None,
            restricted=view.restricted(self.context),
        )
        if found is not None and found is not query:
            return {**message, "payload": {**message["payload"], "query": found}}
        return message


class LaurelGraphQL(GraphQL[ContextT, None], Generic[ContextT]):
    """Strawberry's ASGI ``GraphQL`` view with Laurel's wire rules (see the module doc)."""

    websocket_adapter_class = _WebSocketAdapter
    graphql_transport_ws_handler_class = _TransportWSHandler

    def __init__(
        self,
        schema: BaseSchema,
        *,
        context_getter: ContextGetter[ContextT],
        graphiql: bool,
        allowed_origins: Sequence[str] = (),
        mask_internal: bool = True,
        connection_init_wait_timeout: timedelta = timedelta(seconds=30),
        max_subscriptions_per_connection: int | None = 100,
        on_connect: Callable[[ContextT], Awaitable[None]] | None = None,
        cached_execution: CachedExecution[ContextT] | None = None,
        on_ws_operation: Callable[[ContextT], Awaitable[None]] | None = None,
        persisted: PersistedDocuments | None = None,
        restricted: Callable[[ContextT], bool] = lambda _: False,
        tracing: Tracing | None = None,
        live: LiveOperations | None = None,
    ) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if graphiql else None,
            allow_queries_via_get=True,
            # Only strawberry's legacy graphql-ws handler sends keep-alives; with
            # graphql-transport-ws the client pings (the server answers pongs).
            keep_alive=True,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=connection_init_wait_timeout,
            max_subscriptions_per_connection=max_subscriptions_per_connection,
            allowed_origins=allowed_origins,
        )
        self.context_getter = context_getter
        self.mask_internal = mask_internal
        # Plans of documents sent again and again (see `schema.compiled`), when the schema
        # has them.
        self.compiled: CompiledOperations | None = getattr(schema, "compiled", None)
        self.on_connect = on_connect
        self.cached_execution = cached_execution
        # Called for each operation a WebSocket starts; raises a CodedGraphQLError to refuse it.
        self.on_ws_operation = on_ws_operation
        # Documents named by hash or id; `restricted(context)`: a caller that trusted mode
        # limits to registered documents.
        self.persisted = persisted
        self.restricted = restricted
        # Traces (`api.tracing`); None when off, and then nothing else is done.
        self.tracing = tracing
        # `pointsUpdated` subscriptions answered without strawberry's per-subscription
        # machinery (`api.live_operations`); None: strawberry runs them all.
        self.live = live

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: ContextT,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """An HTTP operation: its document found (`persisted`), then run."""
        if self.persisted is not None:
            document_id = getattr(request_data, "document_id", None)
            query = await self.persisted.resolve(
                request_data.query,
                request_data.extensions,
                document_id,
                restricted=self.restricted(context),
            )
            if query is not request_data.query:
                request_data = dataclasses.replace(request_data, query=query)
        return await self._execute(
            request, request_adapter, sub_response, context, root_value, request_data
        )

    async def _execute(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: ContextT,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """An operation whose document is known, through `cached_execution` when there is
        one (it decides whether an answer may be reused)."""

        async def run() -> ExecutionResult:
            compiled = self.compiled
            if compiled is not None and isinstance(request_data.query, str):
                result = await compiled.execute(
                    request_data.query,
                    operation_name=request_data.operation_name,
                    variables=request_data.variables,
                    context=context,
                    allowed_types=_ALLOWED_TYPES[request_adapter.method == "GET"],
                    operation_extensions=request_data.extensions,
                )
                if result is not None:
                    return result
            return await super(LaurelGraphQL, self).execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )

        async def answer() -> ExecutionResult:
            if self.cached_execution is None:
                return await run()
            return await self.cached_execution(context, request_data, run)

        result = await answer()
        if result.errors and _read_on_a_dropped_connection(result.errors, request_data):
            # A read is safe to run again: on a new connection (the pool replaces those as
            # old) and with new loaders (they remember the failure); the caller is not
            # authenticated or counted again.
            renew_loaders = getattr(context, "renew_loaders", None)
            if callable(renew_loaders):
                renew_loaders()
            result = await answer()
        return result

    async def run_planned(self, request: Request) -> Response | None:
        """A POST of one JSON operation whose document has a plan, answered without the
        rest of strawberry's view (its request adapter, content negotiation and body
        parsing, about a tenth of a small mutation's CPU): the same answer the full view
        gives. None, having answered nothing, for any other request (the full view takes
        it, and reports what is wrong with it)."""
        compiled = self.compiled
        if compiled is None or request.method != "POST":
            return None
        content_type = request.headers.get("content-type", "")
        if content_type.partition(";")[0].strip().lower() != "application/json":
            return None
        # A streamed answer (multipart, server-sent events, if a protocol enabled them) is
        # the full view's. Strawberry's rule reads only `accept`: given only that header, it
        # skips decoding every other.
        accept = {"accept": request.headers.get("accept", "")}
        if self._get_stream_transport_from_headers(accept) is not None:
            return None
        try:
            data = orjson.loads(await request.body())  # kept by the request for the full view
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        query = data.get("query")
        variables = data.get("variables")
        operation_name = data.get("operationName")
        extensions = data.get("extensions")
        document_id = data.get("documentId") if query is None else None
        if (
            not isinstance(query, str | None)
            or not isinstance(variables, dict | None)
            or not isinstance(operation_name, str | None)
            or not isinstance(extensions, dict | None)
            or not isinstance(document_id, str | None)
            or (query is None and self.persisted is None)
            or (query is not None and compiled.find(query, operation_name) is None)
        ):
            return None
        sub_response = await self.get_sub_response(request)
        context = await self.get_context(request, sub_response)
        if self.persisted is not None:
            # The hash lookup (and in trusted mode the check), then the same plan.
            query = await self.persisted.resolve(
                query, extensions, document_id, restricted=self.restricted(context)
            )
            if query is None or compiled.find(query, operation_name) is None:
                return None
        request_data = GraphQLRequestData(
            query=query,
            variables=variables,
            operation_name=operation_name,
            extensions=extensions,
            protocol="http",
        )
        result = await self._execute(
            request, self.request_adapter_class(request), sub_response, context, None, request_data
        )
        response_data = await self.process_result(request, result)
        if result.errors:
            self._handle_errors(result.errors, response_data)
        return self.create_response(response_data=response_data, sub_response=sub_response)

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET naming its document by hash or id is an operation, not the IDE.
        params = request.query_params
        return super().should_render_graphql_ide(request) and not any(
            name in params for name in _PERSISTED_PARAMS
        )

    async def on_ws_connect(self, context: ContextT) -> UnsetType | dict[str, object] | None:
        """`connection_init`: `on_connect` authenticates the connection from its payload, and
        raises ConnectionRejectionError to close it with 4403 Forbidden, or RateLimited to
        close it with 4429 (the reason says when to retry)."""
        if self.on_connect is not None:
            try:
                await self.on_connect(context)
            except RateLimited as error:
                request = getattr(context, "request", None)
                if isinstance(request, WebSocket):
                    state = request.scope.setdefault("state", {})
                    state[_CLOSE_INSTEAD] = (4429, error.message)
                raise ConnectionRejectionError({"message": error.message}) from error
        unset: UnsetType = UNSET
        return unset

    # -- GraphiQL ------------------------------------------------------------------

    @property
    def graphql_ide_html(self) -> str:
        """Laurel's own GraphiQL page (api/static/graphiql.html): its scripts are served by
        Laurel, and its Headers pane authenticates subscriptions too (in `connection_init`)."""
        return (pages.STATIC / "graphiql.html").read_text(encoding="utf-8")

    async def render_graphql_ide(self, request: Request) -> Response:
        return pages.page_response(request, "graphiql.html", graphiql=True)

    # -- context -------------------------------------------------------------------

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> ContextT:
        sub_response = response if isinstance(response, Response) else None
        return await self.context_getter(request, sub_response)

    # -- JSON ----------------------------------------------------------------------

    def encode_json(self, data: object) -> str:
        # A str, not bytes: strawberry sends bytes over a WebSocket as *binary* frames,
        # which graphql-transport-ws clients do not read.
        try:
            return orjson.dumps(data).decode()
        except TypeError:
            # orjson refuses what JSON allows but it does not (e.g. ints past 64 bits).
            return json.dumps(data, separators=(",", ":"))

    def decode_json(self, data: str | bytes) -> object:
        # orjson rejects invalid UTF-8 and absurd nesting with a JSONDecodeError (which
        # the WebSocket adapter handles too), where the json module would raise
        # UnicodeDecodeError or RecursionError.
        return orjson.loads(data)

    def parse_json(self, data: str | bytes) -> Any:
        """Decode a request body (or a GET ``variables``/``extensions``): a JSON object."""
        try:
            value = self.decode_json(data)
        except (ValueError, RecursionError) as error:
            raise HTTPException(400, "Unable to parse request body as JSON.") from error
        if not isinstance(value, dict):
            raise HTTPException(400, _NOT_AN_OBJECT)
        return value

    def parse_query_params(self, params: QueryParams) -> dict[str, Any]:
        # `variables=null` in a GET request means no variables, as in a JSON body.
        cleaned = {
            key: value
            for key, value in params.items()
            if not (
                key in ("variables", "extensions")
                and isinstance(value, str)
                and value.strip() == "null"
            )
        }
        return super().parse_query_params(cleaned)

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        data = await super().parse_http_body(request)
        if isinstance(data, list):  # unreachable while parse_json wants an object
            raise HTTPException(400, _NOT_AN_OBJECT)
        if not isinstance(data.operation_name, str | None):
            raise HTTPException(
                400,
                "The GraphQL operation's `operationName` must be a string or null, if provided.",
            )
        if data.query is not None or self.persisted is None:
            return data
        # No query: the document may be named by id (read again from the parameters or
        # the body, which the request keeps).
        if request.method == "GET":
            raw: Mapping[str, object] = request.query_params
        elif "json" in (request.content_type or ""):
            raw = self.parse_json(await request.get_body())
        else:
            return data
        document_id = raw.get("documentId")
        if not isinstance(document_id, str | None):
            raise HTTPException(400, "The GraphQL operation's `documentId` must be a string.")
        if document_id is None:
            return data
        return LaurelRequestData(**dataclasses.asdict(data), document_id=document_id)

    # -- responses -----------------------------------------------------------------

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        # Safety net: the ErrorCodes extension codes every error it sees, but strawberry
        # builds some results outside the operation's lifecycle (e.g. an exception from an
        # extension hook). Those still get a code, and unexpected ones are masked.
        if result.errors and not all(_has_code(error.extensions) for error in result.errors):
            result.errors = code_errors(result.errors, mask_internal=self.mask_internal)
        return await super().process_result(request, result)

    def error_response(
        self,
        status_code: int,
        message: str,
        *,
        code: str = BAD_USER_INPUT,
        extensions: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        media: MediaType = MediaType.JSON,
    ) -> Response:
        """A GraphQL response holding a single error and no data (`data: null` under
        application/json, as clients of the contract expect; no `data` entry under
        graphql-response+json, as its specification wants for a request error)."""
        error = {"message": message, "extensions": {**(extensions or {}), "code": code}}
        body: dict[str, object] = {"errors": [error]}
        if media is MediaType.JSON:
            body = {"data": None, **body}
        return Response(
            self.encode_json(body),
            status_code=status_code,
            media_type=media.value,
            headers=dict(headers) if headers else None,
        )

    def _http_error_response(self, error: HTTPException, media: MediaType) -> Response:
        status, headers = error.status_code, None
        if isinstance(error.__cause__, InvalidOperationTypeError):
            # A mutation over GET: the method is wrong for it, not the request.
            status, headers = 405, {"Allow": "POST"}
        elif status == 405:
            headers = {"Allow": "GET, POST"}
        elif status == 400 and error.reason.startswith("Unsupported content type"):
            status = 415
        return self.error_response(status, error.reason, headers=headers, media=media)

    def _coded_error_response(
        self, error: CodedGraphQLError, media: MediaType = MediaType.JSON
    ) -> Response:
        code = str(error.extensions.get("code", INTERNAL_SERVER_ERROR))
        headers: dict[str, str] = {}
        retry_after = error.extensions.get("retryAfter")
        if code == "RATE_LIMITED" and isinstance(retry_after, int | float):
            headers["Retry-After"] = str(max(0, round(retry_after)))
        return self.error_response(
            _STATUS_BY_CODE.get(code, 500),
            error.message,
            code=code,
            extensions=error.extensions,
            headers=headers,
            media=media,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            try:
                await super().__call__(scope, receive, send)
            finally:
                # Whatever lives as long as the connection (e.g. its token-expiry timer) ends
                # with it: a closed socket must not be kept alive by its own timer.
                for cleanup in scope.get("state", {}).pop(CONNECTION_CLEANUPS, []):
                    cleanup()
            return

        request = Request(scope=scope, receive=receive)
        response: Response | None
        media = MediaType.JSON
        if request.method != "GET" or any(
            name in request.query_params for name in ("query", *_PERSISTED_PARAMS)
        ):
            # (A GET without a query is GraphiQL's page, or its refusal.)
            negotiated = negotiate(request.headers.get("accept"))
            if negotiated is None:
                response = self.error_response(
                    406, f"Accept {GRAPHQL_RESPONSE_JSON} or {JSON}.", media=media
                )
                await response(scope, receive, send)
                return
            media = negotiated
            if self.tracing is not None:
                # The operation's span, on the planned path and strawberry's alike.
                with self.tracing.operation():
                    response = await self._respond(request, media)
                if response is not None:
                    await response(scope, receive, send)
                return
        response = await self._respond(request, media)
        if response is not None:
            await response(scope, receive, send)

    async def _respond(self, request: Request, media: MediaType) -> Response | None:
        """The answer to an HTTP request (None: the client went away)."""
        response: Response
        try:
            planned = await self.run_planned(request)
            response = planned if planned is not None else await self.run(request)
        except HTTPException as error:
            response = self._http_error_response(error, media)
        except ClientDisconnect:
            return None
        except CodedGraphQLError as error:
            response = self._coded_error_response(error, media)
            if error.extensions.get("code") == PERSISTED_QUERY_NOT_FOUND:
                # A 200 under either media type: clients resend the query on it.
                return response
        except Exception:
            logger.exception("Unexpected error while serving a GraphQL HTTP request")
            response = self.error_response(
                500, MASKED_MESSAGE, code=INTERNAL_SERVER_ERROR, media=media
            )
        if media is MediaType.GRAPHQL_RESPONSE:
            response = _as_graphql_response(response)
        return response
