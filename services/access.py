"""Who is calling: API keys (stored only as SHA-256 hashes) and member JWTs."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import ApiKey, KeyRole
from services.errors import Invalid

KEY_PREFIX = "lrl"
MAX_TOKEN_TTL = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    secret: str  # shown once, never stored


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_api_key(
    session: AsyncSession,
    *,
    role: KeyRole,
    name: str,
    now: datetime,
    partner_slug: str | None = None,
) -> IssuedKey:
    if role is KeyRole.PARTNER and not partner_slug:
        raise Invalid("a partner key needs the partner's slug", field=["partner"])
    if role is not KeyRole.PARTNER and partner_slug:
        raise Invalid("only partner keys are bound to a partner", field=["partner"])
    public = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}_{role.value}_{public}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        name=name,
        role=role,
        key_hash=hash_key(secret),
        prefix=public,
        partner_slug=partner_slug,
        created_at=now,
    )
    session.add(key)
    await session.flush()
    return IssuedKey(key=key, secret=secret)


async def find_api_key(session: AsyncSession, secret: str) -> ApiKey | None:
    if not secret.startswith(f"{KEY_PREFIX}_") or len(secret) > 200:
        return None
    key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))
    if key is None or key.revoked_at is not None:
        return None
    return key


def issue_member_token(
    *, subject: str, secret: str, now: datetime, ttl: timedelta = timedelta(hours=1)
) -> str:
    """A member JWT (HS256): `sub` is the member's global id, `exp` always set."""
    if not timedelta(0) < ttl <= MAX_TOKEN_TTL:
        raise Invalid("ttl must be between 1 second and 30 days", field=["ttl"])
    claims = {"sub": subject, "iat": int(now.timestamp()), "exp": int((now + ttl).timestamp())}
    return jwt.encode(claims, secret, algorithm="HS256")


class InvalidToken(Exception):
    pass


def verify_member_token(
    token: str, *, secret: str | None, public_key: str | None, now: datetime
) -> tuple[str, datetime]:
    """The token's subject and expiry; raises InvalidToken for anything not acceptable."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken("malformed token") from exc
    algorithm = header.get("alg")
    if algorithm == "HS256" and secret:
        verification_key = secret
    elif algorithm == "RS256" and public_key:
        verification_key = public_key
    else:
        raise InvalidToken("unsupported token algorithm")
    try:
        claims = jwt.decode(
            token,
            verification_key,
            algorithms=[algorithm],
            options={"require": ["exp", "sub"], "verify_exp": False},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken("invalid token") from exc
    expires = claims["exp"]
    if not isinstance(expires, int | float) or expires <= now.timestamp():
        raise InvalidToken("token expired")
    subject = claims["sub"]
    if not isinstance(subject, str):
        raise InvalidToken("invalid subject")
    return subject, datetime.fromtimestamp(expires, tz=now.tzinfo)
