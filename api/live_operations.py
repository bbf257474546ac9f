"""`pointsUpdated` answered by Laurel's graphql-transport-ws handler: nothing runs for a
subscriber while it waits.

Strawberry runs each subscription as a task that drives a chain of async generators (its
operation, its stream, graphql-core's map over the source, the resolver's stream), with an
execution context and an extension runner: about 10 KiB a subscriber, kept as long as the
subscriber waits, and 20,000 of them wait on one process. For a subscription to
`pointsUpdated` whose document has a plan (`CompiledOperations.find_subscription`) and whose
caller is a member, the handler registers a `LiveOperation` instead. The bus rings it as the
member's bell (`services.bus`); when rung, it starts one task that reads the member's events
after its cursor with the resolver's own functions (`resolvers.live`), runs the plan on each
(`CompiledOperations.execute_event`) and sends it, then ends. A waiting subscriber costs this
object and its entry in the bus.

What a client sees is what strawberry's path sends (both run the same documents in
`tests/live/test_live_operations.py`):

* every balance change committed after the subscription began, once, in commit order (the
  cursor is read after the bell is registered, as `resolvers.live` does);
* each `next` as strawberry's `Operation.send_next` writes it, its errors coded and masked;
* the member's erasure ends the stream with `complete`; a failure (the database down) sends
  the error as a last `next`, then `complete`, as strawberry's stream does with an exception;
* a client's `complete`, or the socket closing, ends it at once.

Anything else (another subscription, a document that declares variables, a caller who is not
a member, which strawberry then refuses with its own error) runs through strawberry as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Final

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage

import models
from resolvers.live import PAGE, last_event_id, live_member, points_update_of, read_after
from schema.compiled import CompiledOperations
from schema.compiled.operations import CompiledOperation
from schema.compiled.plan import OperationPlan
from schema.context import Context
from schema.exceptions import Unauthenticated

if TYPE_CHECKING:
    from strawberry.types import ExecutionResult

    from schema.context import Runtime

__all__ = ["LiveOperation", "LiveOperations"]

# The one subscription answered here: `Subscription.pointsUpdated`.
_ROOT: Final = ("Subscription", "pointsUpdated")


class LiveOperation(Operation[Context, None]):
    """One `pointsUpdated` subscription: strawberry's operation (so the handler's checks,
    `complete` and shutdown treat it as theirs), rung by the bus, with a task only while it
    delivers."""

    __slots__ = ("compiled", "cursor", "live", "member_id", "rung", "started")

    def __init__(
        self,
        handler: BaseGraphQLTransportWSHandler[Context, None],
        operation_id: str,
        live: LiveOperations,
        compiled: CompiledOperation,
        member_id: int,
    ) -> None:
        # No query text kept (strawberry's operation task is the only reader of it).
        super().__init__(handler, operation_id, "", None, compiled.name)
        self.live = live
        self.compiled = compiled
        self.member_id = member_id
        self.cursor: int | None = None  # the last event seen; None until first read
        self.rung = False
        self.started = time.perf_counter()

    def ring(self) -> None:
        """The member has new events (or may have): deliver them, unless already at it."""
        self.rung = True
        if self.task is None and not self.completed:
            self.task = self.live.deliver_soon(self)


class LiveOperations:
    """The process's `LiveOperation`s: opened by the handler, rung by the bus."""

    def __init__(self, compiled: CompiledOperations, runtime: Runtime) -> None:
        self._compiled = compiled
        self._runtime = runtime
        # Deliveries under way (the event loop keeps only weak references to tasks).
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = 0

    def __len__(self) -> int:
        """Operations open: registered and not ended (a metric)."""
        return self._open

    def open(
        self, handler: BaseGraphQLTransportWSHandler[Context, None], message: SubscribeMessage
    ) -> LiveOperation | None:
        """The operation of this `subscribe` message, registered with the bus and reading its
        cursor; None (nothing done) where strawberry must run it. The handler has checked the
        message's shape, its id, and the connection's count of operations."""
        payload = message["payload"]
        query = payload.get("query")
        if not isinstance(query, str):
            return None
        compiled = self._compiled.find_subscription(
            query, payload.get("operationName"), payload.get("variables")
        )
        if compiled is None or not _answers(compiled.plan):
            return None
        try:
            member_id = live_member(handler.context)
        except Unauthenticated:
            return None  # strawberry's stream sends the error
        operation = LiveOperation(handler, message["id"], self, compiled, member_id)
        # First: whatever commits from now on rings it. Then its first delivery reads the
        # cursor (the member's last event), so nothing committed in between is missed.
        self._runtime.bus.attach(member_id, operation)
        self._open += 1
        operation.ring()
        return operation

    def close(self, operation: LiveOperation) -> None:
        """The client completed it, or its socket closed: it ends now, sending nothing."""
        operation.completed = True
        self._detach(operation)
        if operation.task is not None:
            operation.task.cancel()

    def deliver_soon(self, operation: LiveOperation) -> asyncio.Task[None]:
        task = asyncio.create_task(self._deliver(operation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(self, operation: LiveOperation) -> None:
        try:
            while operation.rung and not operation.completed:
                operation.rung = False  # rings from now on mean another read
                await self._read_and_send(operation)
        except Exception as error:  # what strawberry's stream does with an exception
            with contextlib.suppress(Exception):  # e.g. the socket closed meanwhile
                await self._end(operation, self._compiled.failed_event(error))
        finally:
            operation.task = None

    async def _read_and_send(self, operation: LiveOperation) -> None:
        runtime = self._runtime
        member_id = operation.member_id
        if runtime.revocations.is_erased(member_id):
            await self._end(operation, None)  # erasure ends the stream
            return
        engine = runtime.read_engine
        if operation.cursor is None:
            operation.cursor = await last_event_id(engine, member_id)
            return  # what commits from now on rings again
        rows, entries, member = await read_after(engine, member_id, operation.cursor)
        if member is None:
            return
        context = operation.handler.context
        # Each delivery reads afresh: no answer cached for an earlier event.
        context.renew_loaders()
        for row in rows:
            if row.kind is models.EventKind.POINTS_UPDATED:
                event = points_update_of(row, entries, member)
                result = await self._compiled.execute_event(operation.compiled, event, context)
                await operation.send_next(result)
            operation.cursor = row.id
        if len(rows) == PAGE:
            operation.rung = True  # catching up: read on without waiting

    async def _end(self, operation: LiveOperation, last: ExecutionResult | None) -> None:
        """The stream ended by itself: its last result (a failure), then `complete`."""
        self._detach(operation)
        if operation.completed:
            return
        if last is not None:
            await operation.send_next(last)
        seconds = time.perf_counter() - operation.started
        self._compiled.observed(operation.compiled.name, "subscription", last is not None, seconds)
        await operation.send_operation_message({"id": operation.id, "type": "complete"})

    def _detach(self, operation: LiveOperation) -> None:
        if self._runtime.bus.unsubscribe(operation.member_id, operation):
            self._open -= 1


def _answers(plan: OperationPlan) -> bool:
    """Whether the plan is a subscription to `pointsUpdated` (validation allows one root
    field; its alias is the client's)."""
    if len(plan.fields) != 1:
        return False
    field = plan.fields[0]
    return (field.parent_type.name, field.field_name) == _ROOT
