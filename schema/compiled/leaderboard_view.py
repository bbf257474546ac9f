"""The leaderboard (`leaderboard(period:, first:) { ... }`) answered without strawberry's
resolver machinery: its arguments read once from the document, the board read by the
resolver's own function, and completed flat.

A member's app shows the board next to its dashboard, so it is read about as often, and it
is cheap to find (one Redis script call, or one indexed statement): the rest of a request was
strawberry's wrappers around one resolver (its extensions, the arguments converted from the
document on every request) and the executor's bookkeeping around one flat object. Here the
plan decides once: the arguments are the document's literals, coerced by graphql-core when
the plan is made; `resolvers.leaderboards.leaderboard_of` reads the board (the same function
the resolver calls); the field's flat completion (`schema.compiled.plan`) writes it.

Anything else is left to the plan: a variable, a `first` out of range (strawberry's error), a
selection that does not complete flat, another root field beside `leaderboard`, and any error
(the plan runs the resolver again and reports what it finds); with tracing's slow-resolver
spans on, no view is planned at all (every resolver then runs, to be timed).
`tests/graphql/test_leaderboard_view.py` holds the two ways to byte-for-byte agreement.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from graphql import GraphQLError, OperationType
from graphql.execution.values import get_argument_values
from graphql.type.introspection import TypeNameMetaFieldDef

from resolvers.leaderboards import leaderboard_of, size_of
from schema.compiled.plan import Flat, NotFlat, OperationPlan, field_permissions, flat_of
from schema.context import Context
from schema.exceptions import BadUserInput
from services.leaderboards import Period

__all__ = ["LeaderboardView", "plan_leaderboard_view"]

logger: Final = logging.getLogger("laurel.graphql")


@dataclass(frozen=True, slots=True)
class _Board:
    response_name: str
    period: Period
    size: int
    complete: Flat


@dataclass(frozen=True, slots=True)
class LeaderboardView:
    """The boards of a planned query (several under aliases), and its `__typename`s."""

    roots: tuple[_Board | str, ...]  # a response name alone: `__typename`

    async def answer(self, context: Context) -> dict[str, Any] | None:
        """The operation's `data` (it has no errors), or None where the plan must answer."""
        data: dict[str, Any] = {}
        try:
            for root in self.roots:
                if isinstance(root, str):
                    data[root] = "Query"
                    continue
                board = await leaderboard_of(context, root.period, root.size)
                data[root.response_name] = root.complete(board)
        except NotFlat:
            return None  # the plan completes it field by field, and reports what it finds
        except Exception:
            logger.debug("leaderboard view left to the plan", exc_info=True)
            return None
        return data


def plan_leaderboard_view(plan: OperationPlan) -> LeaderboardView | None:
    """The leaderboard view of `plan`, or None where this module does not answer for it."""
    operation = plan.operation
    if operation.operation is not OperationType.QUERY or operation.variable_definitions:
        return None
    roots: list[_Board | str] = []
    for root in plan.fields:
        if root.definition is TypeNameMetaFieldDef:
            roots.append(root.response_name)
            continue
        if root.parent_type.name != "Query" or root.field_name != "leaderboard":
            return None
        complete = flat_of(root.completion)
        if complete is None or field_permissions(root) != []:
            return None
        try:
            arguments = get_argument_values(root.definition, root.nodes[0])
            period, size = arguments["period"], size_of(arguments.get("first"))
        except (GraphQLError, BadUserInput, KeyError):
            return None
        if not isinstance(period, Period):
            return None
        roots.append(_Board(root.response_name, period, size, complete))
    if all(isinstance(root, str) for root in roots):
        return None
    return LeaderboardView(tuple(roots))
