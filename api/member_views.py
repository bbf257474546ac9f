"""Answers to a member's own dashboard queries, kept until that member's events say otherwise.

A member's app asks for the same view (`me { balance tier tierProgress transactions }`) on
every open, and that view changes only when the member's own events commit. So the answer is
kept per member and document, and dropped when the bus rings for the member (its own commit
in this process, or a hint from another process), when its next settlement (pending points
activating, lots expiring) falls due, or after `ttl` (what a catalog edit made elsewhere may
lag by, like the catalog cache). Rules that keep it exact:

* only queries whose root is `me` alone and that read only fields fed by the member's own
  events are kept (not `rank`, `recommendedRewards`, `redemptions`: other members' and the
  catalog's changes move those);
* an answer computed while the member's events committed is not kept (a generation per
  member, bumped by every ring, is compared before storing);
* with Redis configured but the bus not subscribed, nothing is kept (hints from other
  processes could be missed);
* answers with errors are never kept.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    parse,
    visit,
)
from graphql.language import Visitor
from strawberry.http import GraphQLRequestData
from strawberry.types import ExecutionResult

from schema.compiled import OperationObserver
from schema.context import Context, Role
from services.bus import LocalBus, RedisBus
from services.clock import Clock

# Fields whose values change only through the member's own committed events (or, for tier
# names and thresholds, through rare admin edits bounded by the ttl).
MEMBER_FIELDS = frozenset(
    {
        "__typename",
        # Member
        "me", "id", "externalId", "email", "displayName", "birthday", "joinedAt",
        "referralCode", "tier", "tierProgress", "balance", "transactions",
        # Tier, TierProgress
        "name", "rank", "threshold", "multiplier", "benefits", "current", "next",
        "qualifyingPoints", "pointsToNext",
        # PointsBalance, PointsExpiry
        "available", "pending", "lifetimeEarned", "redeemed", "expired", "expiringSoon",
        "points", "expiresAt",
        # PointsTransactionConnection, edges, PageInfo, PointsTransaction, PointsComponent
        "edges", "pageInfo", "totalCount", "cursor", "node", "hasNextPage", "hasPreviousPage",
        "startCursor", "endCursor", "kind", "status", "description", "reference", "createdAt",
        "availableAt", "breakdown", "label",
    }
)  # fmt: skip
# `rank` is both Tier.rank (allowed) and Member.rank (not): a member's `rank(period:)` takes
# an argument or sits directly under `me`, which `_member_view` refuses.
_NOT_UNDER_ME = frozenset({"rank"})
MAX_DOCUMENTS = 256
# Kept answers are bounded by their size (as JSON; the objects held take a few times more),
# not only by time: most members of a large program are not asked for again within the ttl,
# and a cache filled with their answers only grows the process. A dashboard is 1-3 KiB; an
# answer over MAX_ANSWER_BYTES is not kept at all.
MAX_BYTES = 4 * 1024 * 1024
MAX_ANSWER_BYTES = 64 * 1024
# A generation is kept per member whose events rang; past this many, all are forgotten at
# once (with every kept answer): a large program's members would otherwise add up forever.
MAX_GENERATIONS = 100_000


@dataclass(slots=True)
class _Entry:
    result: ExecutionResult
    size: int  # of the answer as JSON
    generation: int
    until_monotonic: float
    until_clock: datetime | None  # the member's next settlement


class MemberViews:
    def __init__(
        self,
        bus: LocalBus,
        clock: Clock,
        *,
        ttl: float = 10.0,
        observe: OperationObserver | None = None,
    ) -> None:
        self._bus = bus
        self._clock = clock
        self._ttl = ttl
        # Told of every answer reused, as the schema tells it of every operation it runs.
        self._observe = observe
        # Oldest first (an OrderedDict, since a plain dict's first key costs a skip over
        # every slot deleted before it, and the oldest is dropped for each new answer).
        self._entries: OrderedDict[tuple[int, str], _Entry] = OrderedDict()
        self.bytes = 0  # the kept answers' sizes, at most MAX_BYTES
        self._generations: dict[int, int] = {}
        self._epoch = 0  # bumped when everyone may have news
        # Per query text: the name of its one operation ("" when anonymous) when its answers
        # may be kept, else None.
        self._documents: dict[str, str | None] = {}
        self.hits = 0
        self.misses = 0
        bus.on_ring(self._rung)

    def counters(self) -> tuple[int, int, int]:
        """(hits, misses, answers kept), for the metrics."""
        return self.hits, self.misses, len(self._entries)

    def _rung(self, member_ids: Iterable[int] | None) -> None:
        if member_ids is None or len(self._generations) >= MAX_GENERATIONS:
            # Everyone may have news (or too many members rang to remember each: start
            # again, every answer computed before now unusable, as the epoch says).
            self._epoch += 1
            self._entries.clear()
            self._generations.clear()
            self.bytes = 0
            if member_ids is None:
                return
        for member_id in member_ids:
            self._generations[member_id] = self._generations.get(member_id, 0) + 1

    def _generation(self, member_id: int) -> int:
        return self._generations.get(member_id, 0) + (self._epoch << 32)

    def _usable(self) -> bool:
        bus = self._bus
        return not isinstance(bus, RedisBus) or bus.connected.is_set()

    async def execute(
        self,
        context: Context,
        request_data: GraphQLRequestData,
        run: Callable[[], Awaitable[ExecutionResult]],
    ) -> ExecutionResult:
        started = time.perf_counter()
        viewer = context.viewer
        member_id = viewer.member_id
        query = request_data.query
        if (
            viewer.role is not Role.MEMBER
            or member_id is None
            or not isinstance(query, str)
            or (operation := self._operation(query)) is None
            or not self._usable()
        ):
            return await run()
        key = (member_id, _key(query, request_data.variables, request_data.operation_name))
        generation = self._generation(member_id)
        entry = self._entries.get(key)
        if entry is not None:
            if (
                entry.generation == generation
                and time.monotonic() < entry.until_monotonic
                and (entry.until_clock is None or self._clock.now() < entry.until_clock)
            ):
                self.hits += 1
                if self._observe is not None:
                    given = request_data.operation_name
                    name = given if given is not None else operation or None
                    self._observe(name, "query", False, time.perf_counter() - started)
                return entry.result
            self._drop(key)
        self.misses += 1
        result = await run()
        if not result.errors and self._generation(member_id) == generation:
            return self._keep(key, result, generation, context.member_settles_at)
        return result

    def _keep(
        self,
        key: tuple[int, str],
        result: ExecutionResult,
        generation: int,
        settles_at: datetime | None,
    ) -> ExecutionResult:
        """Keep the answer as its JSON, encoded once: the response embeds those bytes as they
        are (`orjson.Fragment`), now and on every reuse. (Kept as objects, an answer took
        several times its JSON's size, and was encoded again for each response.)"""
        try:
            encoded = orjson.dumps(result.data)
        except TypeError:  # what orjson cannot write (the view falls back for it): not kept
            return result
        size = len(encoded)
        if size > MAX_ANSWER_BYTES:
            return result
        # The view encodes `data` with orjson, which writes a Fragment's bytes as they are.
        data = cast(dict[str, Any], orjson.Fragment(encoded))
        kept = ExecutionResult(data=data, errors=None, extensions=result.extensions)
        self._drop(key)
        while self._entries and self.bytes + size > MAX_BYTES:
            self._drop(next(iter(self._entries)))  # the oldest kept
        self._entries[key] = _Entry(
            kept, size, generation, time.monotonic() + self._ttl, settles_at
        )
        self.bytes += size
        return kept

    def _drop(self, key: tuple[int, str]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size

    def _operation(self, query: str) -> str | None:
        """The name of the query's operation ("" when anonymous) if its answers may be kept."""
        try:
            return self._documents[query]
        except KeyError:
            pass
        verdict = _member_view(query)
        if len(self._documents) >= MAX_DOCUMENTS:
            self._documents.pop(next(iter(self._documents)))
        self._documents[query] = verdict
        return verdict


def _key(query: str, variables: dict[str, Any] | None, operation: str | None) -> str:
    if not variables:
        return f"{operation}\0{query}"
    return f"{operation}\0{query}\0{orjson.dumps(variables, option=orjson.OPT_SORT_KEYS).decode()}"


def _member_view(query: str) -> str | None:
    """For a single query operation, `me` its only root field, reading only MEMBER_FIELDS:
    the operation's name ("" when anonymous). None for any other document."""
    try:
        document = parse(query)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation is not OperationType.QUERY:
        return None
    roots = operations[0].selection_set.selections
    if not roots or not all(isinstance(s, FieldNode) and s.name.value == "me" for s in roots):
        return None
    if any(isinstance(d, FragmentDefinitionNode) for d in document.definitions):
        return None  # fragments could sit anywhere: not worth following for a cache
    for root in roots:
        assert isinstance(root, FieldNode)
        if root.selection_set is None:
            return None
        for field in root.selection_set.selections:
            if not isinstance(field, FieldNode) or field.name.value in _NOT_UNDER_ME:
                return None
    names: list[str] = []

    class _Names(Visitor):
        def enter_field(self, node: FieldNode, *_: object) -> None:
            names.append(node.name.value)

    visit(document, _Names())
    if not all(name in MEMBER_FIELDS for name in names):
        return None
    name = operations[0].name
    return name.value if name is not None else ""
