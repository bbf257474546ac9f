"""Persisted queries and trusted documents, at the HTTP edge.

* Automatic persisted queries (Apollo's protocol, which urql's persisted exchange speaks too):
  a request may carry ``extensions.persistedQuery {version: 1, sha256Hash}`` instead of its
  ``query``. Unknown hash: ``PersistedQueryNotFound`` (code ``PERSISTED_QUERY_NOT_FOUND``,
  status 200), and the client sends hash and query together, the hash is checked (a mismatch
  is ``BAD_USER_INPUT``) and the text kept: in Redis when configured (every process sees it,
  each entry for ``apq_ttl_seconds``), with a bounded in-process LRU in front (a text never
  changes under its hash, so the copy is never stale).
* Trusted documents (registered with ``laurel documents add``, in the database): sent as
  ``documentId: "sha256:<hex>"`` (the GraphQL-over-HTTP persisted documents convention) or by
  their hash as above. With ``LAUREL_TRUSTED_DOCUMENTS=true``, member tokens and anonymous
  callers run only those (``PERSISTED_QUERY_NOT_IN_LIST``, status 403, for anything else);
  API keys (server-side credentials) may still send any document.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final, Protocol

from graphql import GraphQLError, parse
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.exceptions import BadUserInput, CodedGraphQLError
from services.breaker import SKIPPED, RedisBreaker
from services.trusted_documents import HEX_SHA256, document_hash, find_document

__all__ = [
    "PERSISTED_QUERY_NOT_FOUND",
    "PERSISTED_QUERY_NOT_IN_LIST",
    "ApqStore",
    "DocumentNotTrusted",
    "MemoryApqStore",
    "PersistedDocuments",
    "PersistedQueryNotFound",
    "RedisApqStore",
    "TrustedDocuments",
]

log: Final = logging.getLogger("laurel.persisted")

PERSISTED_QUERY_NOT_FOUND: Final = "PERSISTED_QUERY_NOT_FOUND"
PERSISTED_QUERY_NOT_IN_LIST: Final = "PERSISTED_QUERY_NOT_IN_LIST"
_DOCUMENT_ID_PREFIX: Final = "sha256:"
# Texts kept for automatic persisted queries: at most this long, and only if they parse, so
# anyone's junk cannot fill Redis (a longer document still runs; it is sent in full).
MAX_PERSISTED_BYTES: Final = 32 * 1024


class PersistedQueryNotFound(CodedGraphQLError):
    """The hash names no document this server knows: the client sends the text with it.
    The message is the one Apollo Client and urql compare with."""

    code = PERSISTED_QUERY_NOT_FOUND

    def __init__(self, message: str = "PersistedQueryNotFound") -> None:
        super().__init__(message)


class DocumentNotTrusted(CodedGraphQLError):
    """Trusted mode: this caller may run registered documents only."""

    code = PERSISTED_QUERY_NOT_IN_LIST

    def __init__(self) -> None:
        super().__init__(
            "Only registered documents may be run with this credential: send a registered "
            "document's `documentId` (sha256:<hex>) or its persisted-query hash."
        )


class ApqStore(Protocol):
    async def get(self, sha256: str) -> str | None: ...
    async def put(self, sha256: str, text: str) -> None: ...


class MemoryApqStore:
    """Document texts by hash in this process: the least recently used goes past
    ``max_entries`` or ``max_bytes`` (of text), so a client registering endless documents
    only evicts others."""

    def __init__(self, *, max_entries: int = 1_000, max_bytes: int = 8 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._texts: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._texts)

    async def get(self, sha256: str) -> str | None:
        return self.peek(sha256)

    def peek(self, sha256: str) -> str | None:
        text = self._texts.get(sha256)
        if text is not None:
            self._texts.move_to_end(sha256)
        return text

    async def put(self, sha256: str, text: str) -> None:
        self.keep(sha256, text)

    def keep(self, sha256: str, text: str) -> None:
        size = len(text)
        if size > self.max_bytes or sha256 in self._texts:
            return
        self._texts[sha256] = text
        self._bytes += size
        while len(self._texts) > self.max_entries or self._bytes > self.max_bytes:
            _, dropped = self._texts.popitem(last=False)
            self._bytes -= len(dropped)


class RedisApqStore:
    """Document texts by hash in Redis, shared by every process, each kept ``ttl_seconds``
    after it was last registered; this process's LRU answers the ones it has seen. A Redis
    failure is a miss (the client sends the text again), never a failed request."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        ttl_seconds: int,
        local: MemoryApqStore | None = None,
        retry_seconds: float = 5.0,
    ) -> None:
        self._redis = redis
        self._prefix = f"{prefix}apq:"
        self._ttl = ttl_seconds
        self.local = local or MemoryApqStore()
        # A frozen Redis costs one call a timeout, then calls do without it at once.
        self.breaker = RedisBreaker(
            "persisted queries",
            open_seconds=retry_seconds,
            fallback="this process keeps and finds documents alone",
            log=log,
        )

    async def get(self, sha256: str) -> str | None:
        text = self.local.peek(sha256)
        if text is not None:
            return text
        found = await self.breaker.call(lambda: self._redis.get(self._prefix + sha256))
        if found is None or found is SKIPPED:
            return None  # a Redis failure is a miss
        text = found.decode() if isinstance(found, bytes) else str(found)
        if document_hash(text) != sha256:  # someone else's key: never run it
            return None
        self.local.keep(sha256, text)
        return text

    async def put(self, sha256: str, text: str) -> None:
        self.local.keep(sha256, text)  # and in this process only if Redis fails
        await self.breaker.call(lambda: self._redis.set(self._prefix + sha256, text, ex=self._ttl))


class TrustedDocuments:
    """Registered documents by hash, read from the database once and kept in this process
    (bounded LRU: a registered text never changes). A hash found missing is not looked up
    again for ``miss_seconds`` (a document registered meanwhile is seen after that)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        miss_seconds: float = 10.0,
        max_entries: int = 5_000,
        max_misses: int = 10_000,
    ) -> None:
        self._sessions = sessions
        self._miss_seconds = miss_seconds
        self._max_misses = max_misses
        self._known = MemoryApqStore(max_entries=max_entries, max_bytes=32 * 1024 * 1024)
        self._misses: dict[str, float] = {}

    async def get(self, sha256: str) -> str | None:
        text = self._known.peek(sha256)
        if text is not None:
            return text
        missed_until = self._misses.get(sha256)
        if missed_until is not None:
            if time.monotonic() < missed_until:
                return None
            del self._misses[sha256]
        async with self._sessions() as session:
            text = await find_document(session, sha256)
        if text is None:
            if len(self._misses) >= self._max_misses:  # a flood of random hashes
                self._misses.clear()
            self._misses[sha256] = time.monotonic() + self._miss_seconds
            return None
        self._known.keep(sha256, text)
        return text


def _hash_of(persisted: object) -> str:
    """The hash of a well-formed ``extensions.persistedQuery`` (version 1, SHA-256)."""
    if not isinstance(persisted, Mapping) or persisted.get("version") != 1:
        raise BadUserInput("Unsupported persisted query version: only version 1 is supported.")
    sha256 = persisted.get("sha256Hash")
    if not isinstance(sha256, str) or HEX_SHA256.fullmatch(sha256.lower()) is None:
        raise BadUserInput("`persistedQuery.sha256Hash` must be a hex SHA-256.")
    return sha256.lower()


def _worth_keeping(query: str) -> bool:
    if len(query) > MAX_PERSISTED_BYTES:
        return False
    try:
        parse(query, no_location=True)
    except GraphQLError:
        return False
    return True


def _document_id_hash(document_id: str) -> str:
    sha256 = document_id.removeprefix(_DOCUMENT_ID_PREFIX).lower()
    if not document_id.startswith(_DOCUMENT_ID_PREFIX) or not HEX_SHA256.fullmatch(sha256):
        raise BadUserInput("`documentId` must be `sha256:` followed by a hex SHA-256.")
    return sha256


class PersistedDocuments:
    """Turns a request's ``query`` / ``persistedQuery`` / ``documentId`` into the text to run,
    and enforces trusted mode (``trusted_only``) for restricted callers."""

    def __init__(self, apq: ApqStore, trusted: TrustedDocuments, *, trusted_only: bool) -> None:
        self.apq = apq
        self.trusted = trusted
        self.trusted_only = trusted_only

    async def resolve(
        self,
        query: str | None,
        extensions: Mapping[str, Any] | None,
        document_id: str | None,
        *,
        restricted: bool,
    ) -> str | None:
        """The document text to run (None: the request names none, which the view reports).

        `restricted`: the caller may run only registered documents if trusted mode is on."""
        must_trust = self.trusted_only and restricted
        persisted = extensions.get("persistedQuery") if extensions else None
        if document_id is not None:
            if persisted is not None:
                raise BadUserInput("Send `documentId` or `extensions.persistedQuery`, not both.")
            text = await self.trusted.get(_document_id_hash(document_id))
            if text is None:
                raise PersistedQueryNotFound(f"No registered document has id {document_id}.")
            return text
        if persisted is not None:
            sha256 = _hash_of(persisted)
            if query is None:
                if must_trust:
                    text = await self.trusted.get(sha256)
                    if text is None:
                        raise DocumentNotTrusted()
                    return text
                text = await self.apq.get(sha256) or await self.trusted.get(sha256)
                if text is None:
                    raise PersistedQueryNotFound()
                return text
            if document_hash(query) != sha256:
                raise BadUserInput("provided sha does not match query")
            if must_trust:
                if await self.trusted.get(sha256) is None:
                    raise DocumentNotTrusted()
            elif _worth_keeping(query):
                await self.apq.put(sha256, query)
            return query
        if (
            query is not None
            and must_trust
            and await self.trusted.get(document_hash(query)) is None
        ):
            raise DocumentNotTrusted()
        return query
