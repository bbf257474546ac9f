"""From the `Authorization` header (or `connection_init` payload) to a `Viewer`."""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import KeyRole
from schema.context import ANONYMOUS, Role, Viewer
from schema.ids import decode_id
from services import access
from services.clock import Clock

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
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._jwt_secret = jwt_secret
        self._jwt_public_key = jwt_public_key
        self._cache_seconds = key_cache_seconds
        self._keys: dict[str, tuple[float, Viewer | None]] = {}

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

    def _member(self, token: str) -> Viewer:
        try:
            subject, _ = access.verify_member_token(
                token,
                secret=self._jwt_secret,
                public_key=self._jwt_public_key,
                now=self._clock.now(),
            )
        except access.InvalidToken as exc:
            return _refused(f"member token refused: {exc}")
        decoded = decode_id(subject)
        if decoded is None or decoded[0] != "Member":
            return _refused("member token refused: `sub` is not a member ID")
        return Viewer(role=Role.MEMBER, member_id=decoded[1], actor=f"member:{decoded[1]}")

    async def _api_key(self, secret: str) -> Viewer | None:
        digest = access.hash_key(secret)
        cached = self._keys.get(digest)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self._sessions() as session:
            key = await access.find_api_key(session, secret)
        viewer = (
            Viewer(role=_KEY_ROLES[key.role], partner_slug=key.partner_slug, actor=f"key:{key.id}")
            if key is not None
            else None
        )
        if len(self._keys) > 10_000:  # bounded: a flood of random keys cannot grow it forever
            self._keys.clear()
        self._keys[digest] = (now + self._cache_seconds, viewer)
        return viewer


def _refused(problem: str) -> Viewer:
    return Viewer(role=Role.ANONYMOUS, credential_problem=problem)
