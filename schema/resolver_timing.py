"""Resolvers timed, for traces that show a slow resolver (`api.tracing`, when tracing is on).

Every field that runs a resolver function (not an attribute read: those take no time worth
a span) gets its `GraphQLField.resolve` wrapped once, when the schema is built, so the planned
executor and graphql-core's time the same functions. Each call costs two clock reads and the
observer is told of it; the observer keeps only what was slow. Built only when tracing is
on: with tracing off the schema is untouched and a resolver costs what it did.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from graphql import GraphQLObjectType, GraphQLResolveInfo, GraphQLSchema
from strawberry.execution.is_awaitable import optimized_is_awaitable as is_awaitable

__all__ = ["ResolverObserver", "time_resolvers"]

ResolverObserver = Callable[[str, GraphQLResolveInfo[Any], int, int], None]
"""Told of each timed call: the field's coordinate (``Member.transactions``), its resolve
info, and when it started and ended (``time.time_ns()``, as OpenTelemetry takes them)."""


def time_resolvers(schema: GraphQLSchema, observe: ResolverObserver) -> None:
    """Wrap the resolver of every field of the query and mutation types (and every object
    type below them) that calls a function; subscriptions stream and are left alone."""
    subscription = schema.subscription_type
    for named in schema.type_map.values():
        if not isinstance(named, GraphQLObjectType) or named is subscription:
            continue
        if named.name.startswith("__"):
            continue
        for name, field in named.fields.items():
            resolve = field.resolve
            if resolve is None or getattr(resolve, "__name__", "") == "_get_basic_result":
                continue  # an attribute read (the plans recognise it by this name)
            if getattr(resolve, "laurel_timed", False):
                continue
            field.resolve = _timed(resolve, f"{named.name}.{name}", observe)


def _timed(resolve: Callable[..., Any], coordinate: str, observe: ResolverObserver) -> Any:
    def timed(source: Any, info: GraphQLResolveInfo[Any], **arguments: Any) -> Any:
        started = time.time_ns()
        result = resolve(source, info, **arguments)
        if is_awaitable(result):
            return _awaited(result, coordinate, info, started, observe)
        observe(coordinate, info, started, time.time_ns())
        return result

    timed.laurel_timed = True  # type: ignore[attr-defined]
    return timed


async def _awaited(
    result: Awaitable[Any],
    coordinate: str,
    info: GraphQLResolveInfo[Any],
    started: int,
    observe: ResolverObserver,
) -> Any:
    try:
        return await result
    finally:
        observe(coordinate, info, started, time.time_ns())
