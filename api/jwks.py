"""An identity provider's signing keys (its JWKS URL), fetched asynchronously and cached.

A token names its key by `kid`. A known kid costs a dictionary lookup; an unknown one fetches
the set again (the provider rotated its keys), at most once per `min_refresh_seconds` so a
flood of tokens with made-up kids costs the provider one request per interval, not one per
token. The set is also fetched again in the background after `max_age_seconds`, so a key the
provider withdrew stops being trusted. A failed fetch keeps the keys already known: tokens
signed with them still work while the provider is down. Bounded: a fetch gives up after
`timeout` seconds (whatever the server trickles), a body larger than MAX_BYTES is refused,
and at most MAX_KEYS keys are kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import jwt
import orjson
from jwt import PyJWK

from services.access import PROVIDER_ALGORITHMS

log = logging.getLogger("laurel.jwks")

MAX_KEYS = 32
MAX_BYTES = 256 * 1024
MAX_KID = 256  # longer `kid`s are not looked up (nor do they trigger a fetch)
# Key types a provider's set may hold for us: never "oct" (a shared secret published on a URL).
_KEY_TYPES = {"RSA", "EC", "OKP"}
_PRIVATE_PARTS = {"d", "p", "q", "dp", "dq", "qi", "oth"}


class KeySetError(Exception):
    pass


class KeySet:
    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        min_refresh_seconds: float,
        max_age_seconds: float,
    ) -> None:
        self.url = url
        self._timeout = timeout
        self._min_refresh = min_refresh_seconds
        self._max_age = max_age_seconds
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None  # monotonic, last successful fetch
        self._attempted_at: float | None = None  # monotonic, last fetch started
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self.fetches = 0  # attempts so far (for tests and logs)

    async def key(self, kid: str) -> PyJWK | None:
        """The provider's key `kid`, or None if the provider does not have it (now)."""
        if len(kid) > MAX_KID:
            return None
        found = self._keys.get(kid)
        now = time.monotonic()
        if found is not None:
            if self._stale(now) and self._may_fetch(now) and not self._lock.locked():
                # Known keys keep working while the set is read again.
                task = asyncio.create_task(self.refresh(), name="laurel-jwks-refresh")
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            return found
        if self._may_fetch(now) or self._lock.locked():
            await self.refresh()
        return self._keys.get(kid)

    async def refresh(self) -> None:
        """Fetch the set, unless another fetch is under way (then wait for it) or one was
        started less than `min_refresh_seconds` ago."""
        async with self._lock:
            if not self._may_fetch(time.monotonic()):
                return
            self._attempted_at = time.monotonic()
            self.fetches += 1
            try:
                keys = await self._fetch()
            except KeySetError as exc:
                log.warning("JWKS %s not refreshed: %s", self.url, exc)
                return
            self._keys = keys
            self._fetched_at = time.monotonic()

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._min_refresh

    def _stale(self, now: float) -> bool:
        return self._fetched_at is None or now - self._fetched_at >= self._max_age

    async def _fetch(self) -> dict[str, PyJWK]:
        try:
            # The total bound: httpx's own timeouts are per read, which a slow trickle evades.
            async with asyncio.timeout(self._timeout):
                body = await self._download()
        except TimeoutError as exc:
            raise KeySetError(f"no answer within {self._timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise KeySetError(f"{type(exc).__name__}") from exc
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise KeySetError("the answer is not JSON") from exc
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise KeySetError("the answer has no `keys` list")
        return _usable(entries)

    async def _download(self) -> bytes:
        # A client per fetch: fetches are rare, and nothing is left open between them.
        async with (
            httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client,
            client.stream("GET", self.url, headers={"accept": "application/json"}) as response,
        ):
            if response.status_code != 200:
                raise KeySetError(f"answered {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_BYTES:
                raise KeySetError(f"larger than {MAX_BYTES} bytes")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise KeySetError(f"larger than {MAX_BYTES} bytes")
            return bytes(body)


def _usable(entries: list[Any]) -> dict[str, PyJWK]:
    """The public signing keys among `entries`, by kid (the first MAX_KEYS of them)."""
    keys: dict[str, PyJWK] = {}
    for entry in entries:
        if len(keys) >= MAX_KEYS:
            log.warning("JWKS: more than %d keys, the rest ignored", MAX_KEYS)
            break
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID or kid in keys:
            continue
        if entry.get("kty") not in _KEY_TYPES or entry.get("use", "sig") != "sig":
            continue
        if _PRIVATE_PARTS & entry.keys():
            continue  # a private key published by mistake is not one to verify with
        try:
            key = PyJWK(entry)
        except (jwt.PyJWTError, ValueError, TypeError):
            continue  # malformed, or of an algorithm this build does not know
        if key.algorithm_name in PROVIDER_ALGORITHMS:
            keys[kid] = key
    return keys
