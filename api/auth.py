"""From the `Authorization` header (or `connection_init` payload) to a `Viewer`."""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import KeyRole
from schema.context import ANONYMOUS, Role, Viewer
from schema.ids import decode_id
from services import access
from services.clock import Clock
from services.revocations import Revocations

# Verified member tokens are kept by token string: a verification (signature, claims, and
# PyJWT's checks that an HMAC secret is not a public key) costs ~50 µs, a dictionary lookup
# nothing, and a member's app sends the same token with every request. Only tokens that
# passed are kept, and only `exp` depends on when they are used (PyJWT's `nbf`/`iat` checks,
# once passed, stay passed): it is compared with the clock on every use. The keys never
# change while the process runs. Bounded: the oldest entry goes past the size, and an entry
# is verified again after TOKEN_CACHE_SECONDS.
TOKEN_CACHE_SIZE = 10_000
TOKEN_CACHE_SECONDS = 60.0

_KEY_ROLES = {
    KeyRole.SERVICE: Role.SERVICE,
    KeyRole.PARTNER: Role.PARTNER,
    KeyRole.ADMIN: Role.ADMIN,
}


class Authenticator:
    """Resolves credentials; API keys are cached briefly so a request costs no key lookup."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        jwt_secret: str | None,
        jwt_public_key: str | None,
        key_cache_seconds: float,
        revocations: Revocations | None = None,
        write_sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self._sessions = sessions
        self._write_sessions = write_sessions  # to note when a key was last used
        self._revocations = revocations or Revocations()
        self._revocations.on_keys_changed(self.forget_keys)
        self._revocations.on_member_erased(self._forget_member)
        self._clock = clock
        self._jwt_secret = jwt_secret
        self._jwt_public_key = jwt_public_key
        self._cache_seconds = key_cache_seconds
        self._keys: dict[str, tuple[float, Viewer | None]] = {}
        # token -> (verified until, monotonic; `exp`, POSIX seconds; the member's viewer)
        self._tokens: dict[str, tuple[float, float, Viewer]] = {}

    async def viewer(self, authorization: str | None) -> Viewer:
        if not authorization:
            return ANONYMOUS
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            return _refused("the Authorization header must be `Bearer <credential>`")
        if credential.startswith(f"{access.KEY_PREFIX}_"):
            viewer = await self._api_key(credential)
            return viewer or _refused("unknown or revoked API key")
        return self._member(credential)

    def forget_keys(self) -> None:
        """Look every API key up again (one was revoked, or its partner changed)."""
        self._keys.clear()

    def _forget_member(self, member_id: int) -> None:
        for token, (_, _, viewer) in list(self._tokens.items()):
            if viewer.member_id == member_id:
                del self._tokens[token]

    def _member(self, token: str) -> Viewer:
        now = self._clock.now()
        cached = self._tokens.get(token)
        if cached is not None:
            verified_until, expires, viewer = cached
            if time.monotonic() < verified_until and now.timestamp() < expires:
                return viewer
            # Expired (refused below, with the usual message) or due for a new verification.
            self._tokens.pop(token, None)
        try:
            subject, expires_at = access.verify_member_token(
                token,
                secret=self._jwt_secret,
                public_key=self._jwt_public_key,
                now=now,
            )
        except access.InvalidToken as exc:
            return _refused(f"member token refused: {exc}")
        decoded = decode_id(subject)
        if decoded is None or decoded[0] != "Member":
            return _refused("member token refused: `sub` is not a member ID")
        if self._revocations.is_erased(decoded[1]):
            # Checked before caching: once erased, `_forget_member` drops cached tokens.
            return _refused("member token refused: this member's data was erased")
        viewer = Viewer(
            role=Role.MEMBER,
            member_id=decoded[1],
            actor=f"member:{decoded[1]}",
            expires_at=expires_at,
        )
        if len(self._tokens) >= TOKEN_CACHE_SIZE:
            self._tokens.pop(next(iter(self._tokens)), None)
        self._tokens[token] = (
            time.monotonic() + TOKEN_CACHE_SECONDS,
            expires_at.timestamp(),
            viewer,
        )
        return viewer

    async def _api_key(self, secret: str) -> Viewer | None:
        digest = access.hash_key(secret)
        cached = self._keys.get(digest)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self._sessions() as session:
            key = await access.find_api_key(session, secret)
        if key is not None and self._write_sessions is not None:
            async with self._write_sessions.begin() as session:
                await access.note_use(session, key.id, self._clock.now())
        viewer = (
            Viewer(
                role=_KEY_ROLES[key.role],
                partner_slug=key.partner_slug,
                actor=f"key:{key.id}",
                key_id=key.id,
                key_name=key.name,
            )
            if key is not None
            else None
        )
        if len(self._keys) > 10_000:  # bounded: a flood of random keys cannot grow it forever
            self._keys.clear()
        self._keys[digest] = (now + self._cache_seconds, viewer)
        return viewer


def _refused(problem: str) -> Viewer:
    return Viewer(role=Role.ANONYMOUS, credential_problem=problem)
