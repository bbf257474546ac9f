"""Building the executable schema: roots, scalars, limits, error codes and caches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import strawberry
from graphql import GraphQLError
from strawberry.extensions import ParserCache, SchemaExtension, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from schema.error_codes import ErrorCodes
from schema.limits import QueryLimits, limit_extensions
from schema.mutation import Mutation
from schema.query import Query
from schema.scalars import DateTime
from schema.types.ledger import PointsTransaction
from schema.types.member import Member
from schema.types.program import Promotion, Tier

# Mobile apps send the same few documents over and over: parse and validate each once.
CACHE_SIZE = 512


class LaurelSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # ErrorCodes logs the unexpected errors, once; client errors are not worth a traceback.
        return None


def build_schema(
    *,
    limits: QueryLimits | None = None,
    mask_internal_errors: bool = True,
    extra_extensions: Sequence[type[SchemaExtension]] = (),
) -> strawberry.Schema:
    # Factories: strawberry builds extensions per request (the caches live at module level).
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        *limit_extensions(limits or QueryLimits()),
        lambda: ParserCache(maxsize=CACHE_SIZE),
        lambda: ValidationCache(maxsize=CACHE_SIZE),
        *extra_extensions,
        lambda: ErrorCodes(mask_internal=mask_internal_errors),
    ]
    return LaurelSchema(
        query=Query,
        mutation=Mutation,
        types=[Member, PointsTransaction, Tier, Promotion],
        config=StrawberryConfig(auto_camel_case=True, scalar_map={datetime: DateTime}),
        extensions=extensions,
    )
