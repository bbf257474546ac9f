"""Who is calling: API keys (stored only as SHA-256 hashes) and member JWTs."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import ApiKey, KeyRole, Partner
from services.errors import Invalid, NotFound
from services.program import clean_text

KEY_PREFIX = "lrl"
MAX_TOKEN_TTL = timedelta(days=30)
LAST_USED_RESOLUTION = timedelta(minutes=1)
# A key's fields as the audit trail records them (GraphQL name -> attribute).
AUDITED_FIELDS = {
    "name": "name",
    "role": "role",
    "partner": "partner_slug",
    "revokedAt": "revoked_at",
}


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
    name = clean_text(name, ["input", "name"], max_length=200)
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
    """The key `secret` is, if it may be used: not revoked, and (partner keys) its partner
    not deactivated."""
    if not secret.startswith(f"{KEY_PREFIX}_") or len(secret) > 200:
        return None
    key = await session.scalar(
        select(ApiKey)
        .outerjoin(Partner, Partner.slug == ApiKey.partner_slug)
        .where(ApiKey.key_hash == hash_key(secret))
        .where(ApiKey.revoked_at.is_(None))
        .where(or_(ApiKey.partner_slug.is_(None), Partner.deactivated_at.is_(None)))
    )
    return key


async def note_use(session: AsyncSession, key_id: int, now: datetime) -> None:
    """Record that the key was used now, at most once per LAST_USED_RESOLUTION: `lastUsedAt`
    says roughly when, and a busy key costs no write per request."""
    await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .where(
            or_(
                ApiKey.last_used_at.is_(None),
                ApiKey.last_used_at < now - LAST_USED_RESOLUTION,
            )
        )
        .values(last_used_at=now)
    )


async def list_api_keys(
    session: AsyncSession, *, first: int, before_id: int | None
) -> list[ApiKey]:
    """Newest first, revoked ones included; `first + 1` rows tell whether more follow."""
    stmt = select(ApiKey).order_by(ApiKey.id.desc()).limit(first + 1)
    if before_id is not None:
        stmt = stmt.where(ApiKey.id < before_id)
    return list(await session.scalars(stmt))


async def count_api_keys(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(ApiKey)) or 0)


async def revoke_api_key(session: AsyncSession, key_id: int, now: datetime) -> ApiKey:
    """Revoke the key (revoking it again changes nothing); NOT_FOUND for an unknown id."""
    key = await session.get(ApiKey, key_id, with_for_update=True)
    if key is None:
        raise NotFound("no such API key", field=["input", "id"])
    if key.revoked_at is None:
        key.revoked_at = now
        await session.flush()
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
