"""Parsed documents by query text, with their verdicts (query limits, validation).

Mobile apps send the same few documents over and over: each is parsed once, measured against
the query limits once (when the verdict cannot depend on the variables) and validated once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, parse
from strawberry.schema.schema import validate_document

from schema.limits import QueryLimits, limit_verdict

# Documents kept at most (each with its verdicts).
CACHE_SIZE = 512


@dataclass(slots=True)
class KnownDocument:
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
        self._documents: dict[tuple[str, tuple[tuple[str, Any], ...]], KnownDocument] = {}

    def __len__(self) -> int:
        return len(self._documents)

    def parse(self, query: str, options: Mapping[str, Any]) -> KnownDocument | None:
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
        found = self._documents[key] = KnownDocument(document)
        return found

    def check(
        self,
        known: KnownDocument,
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
        return self.validation_errors(known, schema, rules)

    def validation_errors(
        self,
        known: KnownDocument,
        schema: GraphQLSchema,
        rules: tuple[type[ASTValidationRule], ...],
    ) -> list[GraphQLError]:
        """The document's errors by the validation rules alone (no query limits)."""
        validation = known.validation
        if validation is None or validation[0] != rules:
            validation = (rules, validate_document(schema, known.document, rules))
            known.validation = validation
        return list(validation[1])
