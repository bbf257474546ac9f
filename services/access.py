"""Who is calling: API keys (stored only as SHA-256 hashes) and member JWTs."""

from __future__ import annotations

import binascii
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
import orjson
from jwt import PyJWK
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import ApiKey, KeyRole, Partner
from services import hs256
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


# What an identity provider may sign with: asymmetric algorithms only (never `none`, never an
# HMAC, whose "secret" would be the provider's public key).
PROVIDER_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
PROVIDER_CLOCK_SKEW = timedelta(seconds=30)
# A member's externalId is at most this long (models.Member.external_id).
MAX_EXTERNAL_ID = 200


def token_header(token: str) -> dict[str, Any]:
    """The token's header, unverified (to choose the key); InvalidToken if malformed.

    Only the header is decoded (strict base64url, no stray characters, a JSON object): pyjwt
    checks the whole token when it verifies it. (`jwt.get_unverified_header` decodes and
    checks every segment, so a token was decoded twice.)"""
    head, dot, _ = token.partition(".")
    try:
        if not dot:
            raise ValueError("no payload")
        data = head.encode("ascii").translate(_URLSAFE_TO_STANDARD)
        if not data.endswith(b"="):  # unpadded, as JWTs are
            data += b"=" * (-len(data) % 4)
        elif len(data) % 4:  # some issuers pad: then exactly
            raise ValueError("bad padding")
        header = orjson.loads(binascii.a2b_base64(data, strict_mode=True))
    except (ValueError, binascii.Error) as exc:  # UnicodeError and JSONDecodeError included
        raise InvalidToken("malformed token") from exc
    if not isinstance(header, dict):
        raise InvalidToken("malformed token")
    return header


_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def verify_member_token(
    token: str,
    *,
    hmac_secrets: Sequence[str],
    public_key: str | None,
    now: datetime,
    header: dict[str, Any] | None = None,
) -> tuple[str, datetime]:
    """A token Laurel signed (HS256 with any of `hmac_secrets`, the signing one first) or another
    system signed with the PEM `public_key` (RS256): its subject (a member's global ID) and
    expiry; raises InvalidToken for anything not acceptable. `header`: the token's header if
    the caller has read it already (`token_header`)."""
    if header is None:
        header = token_header(token)
    algorithm = header.get("alg")
    if algorithm == "HS256" and hmac_secrets:
        keys: Sequence[str] = hmac_secrets
        # The shape Laurel issues, checked without PyJWT's general pipeline (`services.hs256`).
        fast = hs256.claims(token, header, keys)
        if fast is not None:
            return fast["sub"], _expiry(fast, now)
    elif algorithm == "RS256" and public_key:
        keys = [public_key]
    else:
        raise InvalidToken("unsupported token algorithm")
    claims = pyjwt_claims(token, algorithm, keys)
    expires = _expiry(claims, now)
    subject = claims["sub"]
    if not isinstance(subject, str):
        raise InvalidToken("invalid subject")
    return subject, expires


def pyjwt_claims(token: str, algorithm: str, keys: Sequence[str]) -> dict[str, Any]:
    """The claims of a member token as PyJWT verifies it with any of `keys` (`exp` and `sub`
    required, `exp` left to the caller's clock); InvalidToken if PyJWT refuses it."""
    for key in keys:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                options={"require": ["exp", "sub"], "verify_exp": False},
            )
            return claims
        except jwt.InvalidSignatureError:
            continue  # signed with another of the secrets, perhaps
        except jwt.PyJWTError as exc:
            raise InvalidToken("invalid token") from exc
    raise InvalidToken("invalid token")


def verify_provider_token(
    token: str,
    key: PyJWK,
    *,
    issuer: str,
    audience: str,
    member_claim: str,
    now: datetime,
) -> tuple[str, datetime]:
    """A token an identity provider signed with `key` (from its key set, chosen by `kid`):
    the value of `member_claim`, which is the member's externalId, and the expiry; raises
    InvalidToken for anything not acceptable."""
    algorithm = token_header(token).get("alg")
    # The key says which algorithm it is for (its `alg`, or what its type implies): a token
    # naming another is refused rather than checked with a key of the wrong kind.
    if algorithm not in PROVIDER_ALGORITHMS or algorithm != key.algorithm_name:
        raise InvalidToken("unsupported token algorithm")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=audience,
            issuer=issuer,
            leeway=PROVIDER_CLOCK_SKEW,  # for `nbf` and `iat`: another machine's clock
            options={"require": ["exp", "iss", "aud"], "verify_exp": False},
        )
    except jwt.InvalidAudienceError as exc:
        raise InvalidToken("wrong audience") from exc
    except jwt.InvalidIssuerError as exc:
        raise InvalidToken("wrong issuer") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken("invalid token") from exc
    expires = _expiry(claims, now)
    external_id = claims.get(member_claim)
    if (
        not isinstance(external_id, str)
        or not 0 < len(external_id) <= MAX_EXTERNAL_ID
        or "\x00" in external_id
    ):
        raise InvalidToken(f"no usable `{member_claim}` claim")
    return external_id, expires


def _expiry(claims: dict[str, Any], now: datetime) -> datetime:
    # Compared with the service's clock rather than PyJWT's (tests move the clock).
    expires = claims["exp"]
    if not isinstance(expires, int | float) or expires <= now.timestamp():
        raise InvalidToken("token expired")
    return datetime.fromtimestamp(expires, tz=now.tzinfo)
