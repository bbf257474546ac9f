"""Member tokens from an external identity provider (its JWKS served over real HTTP by a small
Starlette app on a loopback port), and several HS256 secrets at once for rotation.

The provider signs its customers in; the storefront enrolled each of them with their provider
user id as `externalId`; the token's mapped claim (`sub` by default) names the member.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from pydantic import SecretStr, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.app import create_app
from api.jwks import MAX_KEYS, KeySet
from api.settings import Settings
from models import KeyRole, Member
from models.engine import session_factory
from schema.ids import encode_id
from services import access, members
from services.clock import ManualClock
from tests.graphql.test_limits_and_errors import WebSocketSession

ISSUER = "https://shop.eu.auth0.example/"
AUDIENCE = "https://loyalty.shop.example"
SECRET_A = "first-rotation-secret-long-enough-for-hs256"
SECRET_B = "second-rotation-secret-long-enough-for-hs256"
SECRET_C = "third-secret-nobody-configured-long-enough"
ME = "{ me { id } }"
OCT_SECRET = "c2VjcmV0LWxvbmctZW5vdWdoLWZvci1oczI1Ni1oZWxsbw"  # base64url, as a JWK holds it

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    private: PrivateKey

    @property
    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        jwk: dict[str, Any]
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        return jwk | {"kid": self.kid, "alg": self.algorithm, "use": "sig"}

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def rsa_key(kid: str) -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@dataclass
class IdentityProvider:
    """The provider's JWKS endpoint: what it publishes, how it answers, what it was asked."""

    keys: list[SigningKey]
    extra: list[dict[str, Any]] = field(default_factory=list)  # raw JWKs published too
    hang: bool = False  # accept the request and never answer
    padding: int = 0  # bytes of filler in the answer
    fetches: int = 0
    port: int = 0
    server: uvicorn.Server | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def token(self, key: SigningKey, clock: ManualClock, **claims: Any) -> str:
        now = clock.now()
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "auth0|ann",
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(hours=1)).timestamp()),
        } | claims
        return jwt.encode(body, key.private, algorithm=key.algorithm, headers={"kid": key.kid})

    async def jwks(self, _: Request) -> Response:
        self.fetches += 1
        if self.hang:
            await self.released.wait()
        document: dict[str, Any] = {"keys": [key.jwk for key in self.keys] + self.extra}
        if self.padding:
            document["padding"] = "x" * self.padding
        return JSONResponse(document)

    async def start(self) -> None:
        app = Starlette(routes=[Route("/.well-known/jwks.json", self.jwks)])
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self._task = asyncio.create_task(self.server.serve())
        async with asyncio.timeout(10):
            while not self.server.started:  # noqa: ASYNC110 (uvicorn offers no event)
                await asyncio.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """The provider goes down: nothing listens on its port any more."""
        if self.server is not None:
            self.released.set()
            self.server.should_exit = True
            await self._task
            self.server = None


@pytest.fixture
async def provider() -> AsyncIterator[IdentityProvider]:
    served = IdentityProvider(keys=[rsa_key("k1")])
    await served.start()
    yield served
    await served.stop()


@dataclass
class Laurel:
    client: httpx.AsyncClient
    clock: ManualClock
    app: Starlette

    async def me(self, token: str) -> dict[str, Any]:
        response = await self.client.post(
            "/graphql", json={"query": ME}, headers={"authorization": f"Bearer {token}"}
        )
        answer: dict[str, Any] = response.json()
        return answer

    async def refusal(self, token: str) -> str:
        """The refusal's message; fails unless the token was refused as UNAUTHENTICATED."""
        answer = await self.me(token)
        error = answer["errors"][0]
        assert error["extensions"]["code"] == "UNAUTHENTICATED", answer
        assert (answer.get("data") or {}).get("me") is None
        message: str = error["message"]
        return message


@pytest.fixture
async def laurel(
    engine: AsyncEngine, clock: ManualClock
) -> AsyncIterator[Any]:  # a factory of Laurel
    apps: list[Starlette] = []

    async def start(**overrides: Any) -> Laurel:
        settings = Settings(
            database_url=engine.url.render_as_string(hide_password=False),
            sweep_interval_seconds=0,
            _env_file=None,  # type: ignore[call-arg]
            **overrides,
        )
        app = create_app(settings, clock=clock)
        apps.append(app)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        return Laurel(client, clock, app)

    yield start
    for app in apps:
        await app.state.laurel.authenticator.close()
        await app.state.laurel.engine.dispose()


def provider_settings(provider: IdentityProvider, **overrides: Any) -> dict[str, Any]:
    return {
        "jwks_url": provider.url,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwks_min_refresh_seconds": 60.0,
        "jwks_timeout_seconds": 2.0,
    } | overrides


async def enroll(engine: AsyncEngine, clock: ManualClock, external_id: str) -> str:
    async with session_factory(engine).begin() as session:
        member = await members.enroll(
            session,
            email=f"{external_id.replace('|', '.')}@example.com",
            display_name="Ann",
            external_id=external_id,
            now=clock.now(),
        )
    return encode_id("Member", member.id)


async def test_a_token_signed_by_a_key_from_the_providers_jwks_signs_in_the_mapped_member(
    engine: AsyncEngine, clock: ManualClock, provider: IdentityProvider, laurel: Any
) -> None:
    # given the provider publishes an RSA, an EC and an Ed25519 key, and Ann enrolled with
    # her provider user id as externalId
    ec_key = SigningKey("k-ec", "ES256", ec.generate_private_key(ec.SECP256R1()))
    ed_key = SigningKey("k-ed", "EdDSA", ed25519.Ed25519PrivateKey.generate())
    provider.keys += [ec_key, ed_key]
    ann = await enroll(engine, clock, "auth0|ann")
    app = await laurel(**provider_settings(provider))

    # then a token signed by each key signs Ann in, the key set fetched once
    for key in provider.keys:
        assert await app.me(provider.token(key, clock)) == {"data": {"me": {"id": ann}}}
    assert provider.fetches == 1
    # and a valid token for someone the storefront never enrolled signs no one in
    stranger = provider.token(provider.keys[0], clock, sub="auth0|stranger")
    assert "no member has this externalId" in await app.refusal(stranger)


async def test_a_custom_claim_can_name_the_member(
    engine: AsyncEngine, clock: ManualClock, provider: IdentityProvider, laurel: Any
) -> None:
    # given tokens carrying the storefront's own customer number in a namespaced claim
    # (as an Auth0 action or a Clerk JWT template adds it)
    claim = "https://shop.example/customer_id"
    ann = await enroll(engine, clock, "C-1001")
    app = await laurel(**provider_settings(provider, jwt_member_claim=claim))
    key = provider.keys[0]

    # then that claim names the member, and a token without it is refused
    assert await app.me(provider.token(key, clock, **{claim: "C-1001"})) == {
        "data": {"me": {"id": ann}}
    }
    assert f"no usable `{claim}` claim" in await app.refusal(provider.token(key, clock))


async def test_a_rotated_key_is_picked_up_without_restart(
    engine: AsyncEngine, clock: ManualClock, provider: IdentityProvider, laurel: Any
) -> None:
    ann = await enroll(engine, clock, "auth0|ann")
    app = await laurel(**provider_settings(provider, jwks_min_refresh_seconds=0.2))
    assert await app.me(provider.token(provider.keys[0], clock)) == {"data": {"me": {"id": ann}}}

    # when the provider rotates to a new key (and withdraws the old one)
    new = rsa_key("k2")
    provider.keys = [new]
    await asyncio.sleep(0.25)

    # then a token with the new kid fetches the set again and is accepted
    assert await app.me(provider.token(new, clock)) == {"data": {"me": {"id": ann}}}
    assert provider.fetches == 2


async def test_a_websocket_signs_in_with_a_providers_token_in_connection_init(
    engine: AsyncEngine, clock: ManualClock, provider: IdentityProvider, laurel: Any
) -> None:
    await enroll(engine, clock, "auth0|ann")
    app = await laurel(**provider_settings(provider))
    key = provider.keys[0]

    async def connection(token: str) -> MutableMapping[str, Any]:
        async with WebSocketSession(app.app, ["graphql-transport-ws"]) as socket:
            assert (await socket.event())["type"] == "websocket.accept"
            init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
            await socket.send(init)
            return await socket.event()

    accepted = await connection(provider.token(key, clock))
    assert accepted["type"] == "websocket.send"
    assert json.loads(accepted["text"])["type"] == "connection_ack"
    refused = await connection(provider.token(key, clock, aud="https://another-app.example"))
    assert refused["type"] == "websocket.close" and refused["code"] == 4403, refused


async def test_a_key_the_provider_withdrew_stops_working_after_the_cache_period(
    engine: AsyncEngine, clock: ManualClock, provider: IdentityProvider, laurel: Any
) -> None:
    ann = await enroll(engine, clock, "auth0|ann")
    app = await laurel(
        **provider_settings(provider, jwks_cache_seconds=0.2, jwks_min_refresh_seconds=0.1)
    )
    old = provider.keys[0]
    assert await app.me(provider.token(old, clock)) == {"data": {"me": {"id": ann}}}

    # when the provider withdraws the key and the cache period passes
    provider.keys = [rsa_key("k2")]
    await asyncio.sleep(0.25)

    # then the next token with it is still served (the set is read again meanwhile, in the
    # background) and the ones after are refused
    second = provider.token(old, clock, iat=int(clock.now().timestamp()) - 1)
    assert await app.me(second) == {"data": {"me": {"id": ann}}}
    async with asyncio.timeout(5):  # once the background fetch is in
        for age in itertools.count(2):
            answer = await app.me(
                provider.token(old, clock, iat=int(clock.now().timestamp()) - age)
            )
            if "errors" in answer:
                break
            await asyncio.sleep(0.02)
    assert "unknown signing key" in answer["errors"][0]["message"]


async def test_tokens_that_do_not_hold_up_are_refused(
    engine: AsyncEngine, clock: ManualClock, provider: IdentityProvider, laurel: Any
) -> None:
    await enroll(engine, clock, "auth0|ann")
    app = await laurel(**provider_settings(provider), jwt_secret=SecretStr(SECRET_A))
    key = provider.keys[0]
    claims = jwt.decode(
        provider.token(key, clock), options={"verify_signature": False}
    )  # the good token's claims, to forge from

    assert "wrong audience" in await app.refusal(
        provider.token(key, clock, aud="https://another-app.example")
    )
    assert "wrong issuer" in await app.refusal(
        provider.token(key, clock, iss="https://evil.example/")
    )
    expiring = provider.token(key, clock, exp=int((clock.now() + timedelta(minutes=5)).timestamp()))
    assert await app.me(expiring) == {"data": {"me": {"id": await ann_id(engine)}}}
    clock.advance(timedelta(minutes=6))
    assert "token expired" in await app.refusal(expiring)  # even once verified and cached
    assert "unknown signing key" in await app.refusal(
        provider.token(rsa_key("never-published"), clock)
    )
    # `alg: none`, with and without the provider's kid
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"kid": "k1"})
    assert "unsupported token algorithm" in await app.refusal(unsigned)
    assert "unsupported token algorithm" in await app.refusal(
        jwt.encode(claims, "", algorithm="none")
    )
    # HS256 with the provider's public key as the "secret" (the classic confusion): checked
    # only against Laurel's own secrets, so refused. (PyJWT will not even sign with a PEM
    # key; the signature is made by hand.)
    confused = _hs256(claims, key.public_pem, kid="k1")
    assert "invalid token" in await app.refusal(confused)
    # the provider's RSA key named for another algorithm
    assert "unsupported token algorithm" in await app.refusal(
        jwt.encode(claims, key.private, algorithm="PS256", headers={"kid": "k1"})
    )
    # a provider's token tampered with: the signature no longer holds
    header, payload, signature = provider.token(key, clock).split(".")
    tampered = provider.token(key, clock, sub="auth0|bob").split(".")[1]
    assert "invalid token" in await app.refusal(f"{header}.{tampered}.{signature}")
    assert payload != tampered
    # and none of it asked the provider again (`none` and made-up kids within the interval)
    assert provider.fetches == 1


async def ann_id(engine: AsyncEngine) -> str:
    async with session_factory(engine)() as session:
        pk = await session.scalar(select(Member.id).where(Member.external_id == "auth0|ann"))
    assert pk is not None
    return encode_id("Member", pk)


def _hs256(claims: dict[str, Any], secret: bytes, *, kid: str) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


async def test_a_flood_of_unknown_kids_asks_the_provider_once_per_interval(
    engine: AsyncEngine, clock: ManualClock, provider: IdentityProvider, laurel: Any
) -> None:
    ann = await enroll(engine, clock, "auth0|ann")
    app = await laurel(**provider_settings(provider, jwks_min_refresh_seconds=60.0))
    assert await app.me(provider.token(provider.keys[0], clock)) == {"data": {"me": {"id": ann}}}

    # when 50 tokens with made-up kids arrive at once
    bogus = [provider.token(rsa_key(f"bogus-{n}"), clock) for n in range(5)] * 10
    messages = await asyncio.gather(*(app.refusal(token) for token in bogus))

    # then all are refused and the provider was asked nothing more within the interval
    assert all("unknown signing key" in message for message in messages)
    assert provider.fetches == 1


async def test_with_the_provider_down_cached_keys_still_work_and_others_are_refused_at_once(
    engine: AsyncEngine,
    clock: ManualClock,
    provider: IdentityProvider,
    laurel: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ann = await enroll(engine, clock, "auth0|ann")
    app = await laurel(**provider_settings(provider, jwks_min_refresh_seconds=0.1))
    key = provider.keys[0]
    assert await app.me(provider.token(key, clock)) == {"data": {"me": {"id": ann}}}

    # when the provider stops (nothing listens any more) and has rotated meanwhile
    await provider.stop()
    await asyncio.sleep(0.15)

    # then a new token signed with the cached key still signs in, and one with a kid never
    # seen is refused without waiting
    fresh = provider.token(key, clock, iat=int(clock.now().timestamp()) - 1)
    assert await app.me(fresh) == {"data": {"me": {"id": ann}}}
    started = time.monotonic()
    rotated = provider.token(rsa_key("k2"), clock)
    assert "unknown signing key" in await app.refusal(rotated)
    assert time.monotonic() - started < 1.0
    # the failed fetch is logged, the token is not
    assert "JWKS" in caplog.text and "not refreshed" in caplog.text
    assert rotated not in caplog.text and fresh not in caplog.text


async def test_a_provider_that_never_answers_costs_one_bounded_wait(
    engine: AsyncEngine, clock: ManualClock, provider: IdentityProvider, laurel: Any
) -> None:
    ann = await enroll(engine, clock, "auth0|ann")
    app = await laurel(
        **provider_settings(provider, jwks_min_refresh_seconds=1.0, jwks_timeout_seconds=0.5)
    )
    key = provider.keys[0]
    assert await app.me(provider.token(key, clock)) == {"data": {"me": {"id": ann}}}
    await asyncio.sleep(1.05)

    # when the provider accepts connections but never answers
    provider.hang = True
    unknown = provider.token(rsa_key("k2"), clock)

    # then a token with an unknown kid waits for the timeout once, then is refused ...
    started = time.monotonic()
    assert "unknown signing key" in await app.refusal(unknown)
    assert 0.4 < time.monotonic() - started < 1.5
    # ... the next within the interval is refused at once, without asking again ...
    started = time.monotonic()
    assert "unknown signing key" in await app.refusal(unknown)
    assert time.monotonic() - started < 0.3
    assert provider.fetches == 2
    # ... and tokens signed with the cached key do not wait at all
    started = time.monotonic()
    fresh = provider.token(key, clock, iat=int(clock.now().timestamp()) - 1)
    assert await app.me(fresh) == {"data": {"me": {"id": ann}}}
    assert time.monotonic() - started < 0.3


async def test_the_key_set_is_bounded_and_holds_only_public_signing_keys(
    engine: AsyncEngine, clock: ManualClock, provider: IdentityProvider, laurel: Any
) -> None:
    ann = await enroll(engine, clock, "auth0|ann")
    # given the provider also publishes a shared secret ("oct") and a private key by mistake
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaked = SigningKey("k-private", "RS256", private)
    private_jwk = RSAAlgorithm.to_jwk(private, as_dict=True) | {"kid": "k-private"}
    provider.extra = [
        {"kty": "oct", "kid": "k-oct", "k": OCT_SECRET},
        private_jwk,
    ]
    app = await laurel(**provider_settings(provider, jwks_min_refresh_seconds=0.1))
    claims = jwt.decode(
        provider.token(provider.keys[0], clock), options={"verify_signature": False}
    )

    # then neither is among the keys, and neither signs anyone in
    keys = KeySet(provider.url, timeout=2.0, min_refresh_seconds=60.0, max_age_seconds=600.0)
    assert await keys.key("k1") is not None
    assert await keys.key("k-oct") is None and await keys.key("k-private") is None
    assert await app.me(provider.token(provider.keys[0], clock)) == {"data": {"me": {"id": ann}}}
    oct_signed = jwt.encode(
        claims,
        base64.urlsafe_b64decode(OCT_SECRET + "=="),
        algorithm="HS256",
        headers={"kid": "k-oct"},
    )
    assert "unsupported token algorithm" in await app.refusal(oct_signed)
    assert "unknown signing key" in await app.refusal(provider.token(leaked, clock))

    # when the provider rotates but its answer grows past the bound
    new = rsa_key("k2")
    provider.keys.append(new)
    provider.padding = 300 * 1024
    await asyncio.sleep(0.15)

    # then the oversized set is refused, and the keys known before still work
    assert "unknown signing key" in await app.refusal(provider.token(new, clock))
    fresh = provider.token(provider.keys[0], clock, iat=int(clock.now().timestamp()) - 1)
    assert await app.me(fresh) == {"data": {"me": {"id": ann}}}


async def test_two_hs256_secrets_both_verify_and_a_third_does_not(
    engine: AsyncEngine, clock: ManualClock, laurel: Any
) -> None:
    ann = await enroll(engine, clock, "ann")
    app = await laurel(jwt_secrets=[SecretStr(SECRET_A), SecretStr(SECRET_B)])

    def signed(secret: str) -> str:
        return access.issue_member_token(subject=ann, secret=secret, now=clock.now())

    assert await app.me(signed(SECRET_A)) == {"data": {"me": {"id": ann}}}
    assert await app.me(signed(SECRET_B)) == {"data": {"me": {"id": ann}}}
    assert "invalid token" in await app.refusal(signed(SECRET_C))


async def test_the_first_secret_signs_new_tokens(
    engine: AsyncEngine, clock: ManualClock, laurel: Any
) -> None:
    # given a rotation under way: the new secret first, the old one still verifying
    app = await laurel(jwt_secrets=[SecretStr(SECRET_B)], jwt_secret=SecretStr(SECRET_A))
    async with session_factory(engine).begin() as session:
        service = await access.create_api_key(
            session, role=KeyRole.SERVICE, name="storefront", now=clock.now()
        )
    response = await app.client.post(
        "/graphql",
        json={
            "query": """mutation { enroll(input: {email: "cy@example.com", displayName: "Cy"})
                        { member { id } token } }"""
        },
        headers={"authorization": f"Bearer {service.secret}"},
    )
    enrolled = response.json()["data"]["enroll"]
    # then the token enroll returns is signed with the new secret, and signs Cy in
    claims = jwt.decode(
        enrolled["token"], SECRET_B, algorithms=["HS256"], options={"verify_exp": False}
    )
    assert claims["sub"] == enrolled["member"]["id"]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(enrolled["token"], SECRET_A, algorithms=["HS256"], options={"verify_exp": False})
    assert await app.me(enrolled["token"]) == {"data": {"me": {"id": enrolled["member"]["id"]}}}
    old = access.issue_member_token(
        subject=enrolled["member"]["id"], secret=SECRET_A, now=clock.now()
    )
    assert await app.me(old) == {"data": {"me": {"id": enrolled["member"]["id"]}}}


def test_the_secrets_are_read_as_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUREL_JWT_SECRETS", f'["{SECRET_B}", "{SECRET_A}"]')
    monkeypatch.setenv("LAUREL_JWT_SECRET", SECRET_A)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.jwt_verifying_secrets == [SECRET_B, SECRET_A]
    assert settings.jwt_secret_value == SECRET_B
    assert SECRET_B not in repr(settings) and SECRET_B not in str(settings.model_dump())


def test_a_jwks_url_needs_an_issuer_and_an_audience_and_https_in_production() -> None:
    base: dict[str, Any] = {"_env_file": None, "jwks_url": "https://idp.example/jwks.json"}
    with pytest.raises(ValidationError, match="LAUREL_JWT_ISSUER and LAUREL_JWT_AUDIENCE"):
        Settings(**base, jwt_issuer=ISSUER)
    with pytest.raises(ValidationError, match="LAUREL_JWT_ISSUER and LAUREL_JWT_AUDIENCE"):
        Settings(**base, jwt_audience=AUDIENCE)
    with pytest.raises(ValidationError, match="https"):
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            jwks_url="http://idp.example/jwks.json",
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            env="production",
        )
    Settings(**base, jwt_issuer=ISSUER, jwt_audience=AUDIENCE, env="production")


async def test_the_key_set_keeps_at_most_max_keys(provider: IdentityProvider) -> None:
    # given a set of 40 keys (k1, then 39 Ed25519 keys)
    provider.keys += [
        SigningKey(f"ed-{n}", "EdDSA", ed25519.Ed25519PrivateKey.generate()) for n in range(39)
    ]
    keys = KeySet(provider.url, timeout=2.0, min_refresh_seconds=60.0, max_age_seconds=600.0)

    # then the first MAX_KEYS are kept and the rest ignored (asking for them fetches nothing)
    assert await keys.key("k1") is not None
    assert await keys.key(f"ed-{MAX_KEYS - 2}") is not None
    assert await keys.key(f"ed-{MAX_KEYS - 1}") is None
    assert provider.fetches == 1
