"""From the `Authorization` header (or `connection_init` payload) to a `Viewer`."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.jwks import KeySet
from models import ApiKey, KeyRole, Member
from models.engine import once_more_if_dropped
from schema.context import ANONYMOUS, Role, Viewer
from schema.ids import decode_id
from services import access
from services.clock import Clock
from services.errors import NotFound
from services.members import find_member
from services.revocations import Revocations

# Verified member tokens are kept by token string: a verification (signature, claims, and
# PyJWT's checks that an HMAC secret is not a public key) costs ~50 µs, a dictionary lookup
# nothing, and a member's app sends the same token with every request. Only tokens that
# passed are kept, and only `exp` depends on when they are used (PyJWT's `nbf`/`iat` checks,
# once passed, stay passed): it is compared with the clock on every use. The keys never
# change while the process runs (an identity provider's may: a token is verified again, with
# the keys then published, after TOKEN_CACHE_SECONDS). Bounded: the oldest entry goes past the
# size.
TOKEN_CACHE_SIZE = 10_000
TOKEN_CACHE_SECONDS = 60.0

_KEY_ROLES = {
    KeyRole.SERVICE: Role.SERVICE,
    KeyRole.PARTNER: Role.PARTNER,
    KeyRole.ADMIN: Role.ADMIN,
}


@dataclass(frozen=True, slots=True)
class IdentityProvider:
    """Member tokens an external identity provider signs: its key set, the `iss` and `aud`
    they must carry, and the claim whose value is the member's externalId."""

    keys: KeySet
    issuer: str
    audience: str
    member_claim: str = "sub"


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
        jwt_secrets: Sequence[str] = (),
        identity_provider: IdentityProvider | None = None,
        revocations: Revocations | None = None,
        write_sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self._sessions = sessions
        self._write_sessions = write_sessions  # to note when a key was last used
        self._revocations = revocations or Revocations()
        self._revocations.on_keys_changed(self.forget_keys)
        self._revocations.on_member_erased(self._forget_member)
        self._clock = clock
        # Every HS256 secret that verifies (rotation), the one that signs first.
        self._jwt_secrets = list(
            dict.fromkeys([*jwt_secrets, *([jwt_secret] if jwt_secret else [])])
        )
        self._jwt_public_key = jwt_public_key
        self._provider = identity_provider
        self._cache_seconds = key_cache_seconds
        self._keys: dict[str, tuple[float, Viewer | None]] = {}
        # token -> (verified until, monotonic; `exp`, POSIX seconds; the member's viewer)
        # (An OrderedDict: the oldest is dropped for each new token, and a plain dict finds
        # its first key by skipping every slot deleted before it.)
        self._tokens: OrderedDict[str, tuple[float, float, Viewer]] = OrderedDict()

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
        return await self._member(credential)

    async def close(self) -> None:
        if self._provider is not None:
            await self._provider.keys.close()

    def forget_keys(self) -> None:
        """Look every API key up again (one was revoked, or its partner changed)."""
        self._keys.clear()

    def _forget_member(self, member_id: int) -> None:
        for token, (_, _, viewer) in list(self._tokens.items()):
            if viewer.member_id == member_id:
                del self._tokens[token]

    async def _member(self, token: str) -> Viewer:
        now = self._clock.now()
        cached = self._tokens.get(token)
        if cached is not None:
            verified_until, expires, viewer = cached
            if time.monotonic() < verified_until and now.timestamp() < expires:
                return viewer
            # Expired (refused below, with the usual message) or due for a new verification.
            self._tokens.pop(token, None)
        try:
            header = access.token_header(token)
            kid, algorithm = header.get("kid"), header.get("alg")
            if (
                self._provider is not None
                and isinstance(kid, str)
                and not str(algorithm).startswith("HS")
            ):
                # The provider's: its keys, its claims, its member mapping. (An HS token is
                # never checked against a provider's key: only against Laurel's secrets.)
                if algorithm not in access.PROVIDER_ALGORITHMS:
                    # `none` and the like, refused before they can cost a key set fetch.
                    raise access.InvalidToken("unsupported token algorithm")
                member_id, expires_at = await self._provider_member(token, self._provider, kid, now)
            else:
                member_id, expires_at = self._laurel_member(token, header, now)
        except access.InvalidToken as exc:
            return _refused(f"member token refused: {exc}")
        if self._revocations.is_erased(member_id):
            # Checked before caching: once erased, `_forget_member` drops cached tokens.
            return _refused("member token refused: this member's data was erased")
        viewer = Viewer(
            role=Role.MEMBER,
            member_id=member_id,
            actor=f"member:{member_id}",
            expires_at=expires_at,
        )
        if len(self._tokens) >= TOKEN_CACHE_SIZE:
            self._tokens.popitem(last=False)
        self._tokens[token] = (
            time.monotonic() + TOKEN_CACHE_SECONDS,
            expires_at.timestamp(),
            viewer,
        )
        return viewer

    def _laurel_member(
        self, token: str, header: dict[str, Any], now: datetime
    ) -> tuple[int, datetime]:
        """A token Laurel signed (or the PEM key's system): `sub` is the member's global ID."""
        subject, expires_at = access.verify_member_token(
            token,
            hmac_secrets=self._jwt_secrets,
            public_key=self._jwt_public_key,
            now=now,
            header=header,
        )
        decoded = decode_id(subject)
        if decoded is None or decoded[0] != "Member":
            raise access.InvalidToken("`sub` is not a member ID")
        return decoded[1], expires_at

    async def _provider_member(
        self, token: str, provider: IdentityProvider, kid: str, now: datetime
    ) -> tuple[int, datetime]:
        """An identity provider's token: the mapped claim is the member's externalId."""
        key = await provider.keys.key(kid)
        if key is None:
            raise access.InvalidToken("unknown signing key")
        external_id, expires_at = access.verify_provider_token(
            token,
            key,
            issuer=provider.issuer,
            audience=provider.audience,
            member_claim=provider.member_claim,
            now=now,
        )

        async def find() -> Member:
            async with self._sessions() as session:
                return await find_member(session, external_id=external_id)

        try:
            member = await once_more_if_dropped(find)
        except NotFound:
            raise access.InvalidToken("no member has this externalId") from None
        return member.id, expires_at

    async def _api_key(self, secret: str) -> Viewer | None:
        digest = access.hash_key(secret)
        cached = self._keys.get(digest)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]

        async def find() -> ApiKey | None:
            async with self._sessions() as session:
                return await access.find_api_key(session, secret)

        key = await once_more_if_dropped(find)  # a failover must not refuse a valid key
        if key is not None and self._write_sessions is not None:
            write_sessions = self._write_sessions

            async def note() -> None:  # the same time noted twice is noted once
                async with write_sessions.begin() as session:
                    await access.note_use(session, key.id, self._clock.now())

            await once_more_if_dropped(note)
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
