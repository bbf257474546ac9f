"""Trusted documents: registering the GraphQL documents member apps ship, and finding them.

A document is known by the SHA-256 of its exact text (the hash graphql-codegen's
`persisted-documents.json` and Apollo's persisted-query link compute), so the text a client
sends, or the hash it sends instead, names exactly one registered document.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    OperationDefinitionNode,
    Visitor,
    parse,
    print_ast,
    visit,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import TrustedDocument
from services.errors import Invalid

HEX_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_LOOKUP_BATCH: Final = 500


class InvalidDocuments(Invalid):
    """A file of documents that cannot be registered (nothing of it is)."""


def document_hash(text: str) -> str:
    """The lowercase hex SHA-256 of a document's UTF-8 text."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewDocument:
    sha256: str
    body: str
    operation_name: str | None


@dataclass(frozen=True, slots=True)
class Added:
    added: int
    already: int


def _operation_name(document: DocumentNode) -> str | None:
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            return definition.name.value if definition.name is not None else None
    return None


def _parse(text: str, where: str) -> DocumentNode:
    try:
        return parse(text)
    except GraphQLError as exc:
        raise InvalidDocuments(f"{where}: not a GraphQL document ({exc.message})") from exc


def from_persisted_documents(raw: str, where: str) -> list[NewDocument]:
    """graphql-codegen's `persisted-documents.json`: a JSON object, SHA-256 -> document text.
    Each hash is checked against its text (a file made with another hash is refused)."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidDocuments(f"{where}: not JSON ({exc})") from exc
    if not isinstance(data, dict) or not data:
        raise InvalidDocuments(f"{where}: expected a JSON object of SHA-256 hash -> document")
    documents = []
    for key, text in data.items():
        if not isinstance(text, str):
            raise InvalidDocuments(f"{where}: the document of {key!r} is not a string")
        digest = key.removeprefix("sha256:").lower()
        if digest != document_hash(text):
            raise InvalidDocuments(
                f"{where}: {key!r} is not the SHA-256 of its document (generate the file "
                "with the sha256 hash algorithm)"
            )
        documents.append(NewDocument(digest, text, _operation_name(_parse(text, f"{where} {key}"))))
    return documents


def from_graphql(raw: str, where: str) -> list[NewDocument]:
    """A .graphql file: one document per operation, printed by graphql-core with the fragments
    it uses (in the order the file defines them), hashed as printed."""
    document = _parse(raw, where)
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if not operations:
        raise InvalidDocuments(f"{where}: no operation in the file")
    documents = []
    for operation in operations:
        used = _fragments_used(operation, fragments, where)
        parts = [operation, *(f for name, f in fragments.items() if name in used)]
        text = "\n\n".join(print_ast(part) for part in parts)
        name = operation.name.value if operation.name is not None else None
        documents.append(NewDocument(document_hash(text), text, name))
    return documents


def _fragments_used(
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDefinitionNode],
    where: str,
) -> set[str]:
    used: set[str] = set()
    pending: list[OperationDefinitionNode | FragmentDefinitionNode] = [operation]

    class Spreads(Visitor):
        def __init__(self) -> None:
            super().__init__()
            self.names: list[str] = []

        def enter_fragment_spread(self, node: FragmentSpreadNode, *_: object) -> None:
            self.names.append(node.name.value)

    while pending:
        spreads = Spreads()
        visit(pending.pop(), spreads)
        for name in spreads.names:
            if name in used:
                continue
            if name not in fragments:
                raise InvalidDocuments(f"{where}: fragment {name!r} is not defined in the file")
            used.add(name)
            pending.append(fragments[name])
    return used


def read_documents(paths: Iterable[Path]) -> list[NewDocument]:
    """Documents from files: `.json` as graphql-codegen's persisted documents, else GraphQL."""
    documents: list[NewDocument] = []
    for path in paths:
        try:
            raw = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidDocuments(f"{path}: cannot read it ({exc})") from exc
        reader = from_persisted_documents if path.suffix.lower() == ".json" else from_graphql
        documents.extend(reader(raw, str(path)))
    return documents


async def add_documents(
    session: AsyncSession, documents: Sequence[NewDocument], now: datetime
) -> Added:
    """Register documents; those already registered (same hash, so same text) are kept as
    they are, so adding a file again changes nothing."""
    unique = {d.sha256: d for d in documents}
    hashes = list(unique)
    existing: set[str] = set()
    for start in range(0, len(hashes), _LOOKUP_BATCH):  # within every backend's bind limit
        batch = hashes[start : start + _LOOKUP_BATCH]
        existing.update(
            await session.scalars(
                select(TrustedDocument.sha256).where(TrustedDocument.sha256.in_(batch))
            )
        )
    for digest, document in unique.items():
        if digest not in existing:
            session.add(
                TrustedDocument(
                    sha256=digest,
                    body=document.body,
                    operation_name=document.operation_name,
                    created_at=now,
                )
            )
    await session.flush()
    return Added(added=len(unique) - len(existing), already=len(existing))


async def find_document(session: AsyncSession, sha256: str) -> str | None:
    """The text of the registered document with this hash, if any."""
    found: str | None = await session.scalar(
        select(TrustedDocument.body).where(TrustedDocument.sha256 == sha256)
    )
    return found


async def list_documents(session: AsyncSession) -> list[TrustedDocument]:
    """Every registered document, oldest first."""
    return list(
        await session.scalars(
            select(TrustedDocument).order_by(TrustedDocument.created_at, TrustedDocument.sha256)
        )
    )
