"""Configuration from LAUREL_* environment variables (and an optional .env file)."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.rate_limits import parse_limit
from models.engine import DEFAULT_SQLITE_URL


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAUREL_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = "development"
    database_url: str = DEFAULT_SQLITE_URL
    redis_url: str | None = None
    # Prefix of every Redis key and channel: processes sharing a prefix share boards and hints.
    redis_prefix: str = "laurel:"
    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None  # PEM, for RS256 member tokens signed elsewhere
    # Rotation: a JSON list of HS256 secrets; the first signs new tokens, every one (and
    # LAUREL_JWT_SECRET, if set too) verifies.
    jwt_secrets: list[SecretStr] = []
    # An identity provider's tokens: its key set (JWKS) URL, the `iss` and `aud` they must
    # carry, and the claim whose value is the member's externalId.
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_member_claim: str = "sub"
    # The key set is fetched again in the background after this; an unknown `kid` fetches
    # it at once, but at most once per jwks_min_refresh_seconds (bogus kids cannot hammer
    # the provider); a fetch gives up after jwks_timeout_seconds.
    jwks_cache_seconds: float = 600.0
    jwks_min_refresh_seconds: float = 30.0
    jwks_timeout_seconds: float = 3.0
    member_token_ttl_seconds: int = 7 * 24 * 3600
    graphiql: bool | None = None  # default: on in development, off in production
    # With tracing on (api.tracing): a resolver that takes this long gets a span of its own.
    trace_slow_resolver_ms: float = 10.0
    # The reference member page (/member) and the admin charts (/admin); same default.
    member_page: bool | None = None
    admin_page: bool | None = None
    db_pool_size: int = 16
    sweep_interval_seconds: float = 60.0
    api_key_cache_seconds: float = 10.0
    # WebSockets: other browser origins allowed to connect (same-origin pages, and clients
    # that send no Origin such as mobile apps, always may), how long a client has to send
    # connection_init, and live operations per connection.
    allowed_origins: list[str] = []
    ws_init_timeout_seconds: float = 5.0
    max_subscriptions_per_connection: int = 20
    # `pointsUpdated` subscriptions answered by Laurel's own handler (`api.live_operations`,
    # ~10 KiB less a subscriber); off: strawberry runs every subscription. Same messages.
    live_plans: bool = True
    # Request bodies (and WebSocket messages) larger than this are refused with 413.
    max_body_bytes: int = 100 * 1024
    # HTTP requests one process serves at once; more are answered 503 with Retry-After.
    max_in_flight: int = 128
    # Rate limits per role in the `limits` notation ("600/minute", "100/second"; "unlimited"
    # for none): per member (all its tokens), per API key, and per client address for calls
    # without a usable credential; counted in Redis when configured (shared by every
    # process), else in each process.
    # Service and admin keys are the operator's own integrations: unlimited by default.
    rate_limits: bool = True
    # Minute windows: with Redis a process leases a tenth of a caller's window at a time, so
    # the longer the window, the fewer round trips (api/rate_limits.py).
    rate_limit_member: str = "12000/minute"
    rate_limit_partner: str = "12000/minute"
    rate_limit_service: str = "unlimited"
    rate_limit_admin: str = "unlimited"
    rate_limit_anonymous: str = "600/minute"
    # Webhooks: endpoints on private, loopback or link-local addresses (and plain http in
    # production) are refused unless allowed (tests, local development); deliveries run in
    # every `laurel serve` process unless turned off (then `laurel worker` delivers).
    webhooks_allow_private: bool = False
    webhooks_in_process: bool = True
    # An attempt that has no answer within this is a timeout (and retried).
    webhooks_timeout_seconds: float = 10.0
    # Persisted queries (README "Persisted queries and trusted documents"): texts sent with
    # their hash are kept this long in Redis (with LAUREL_REDIS_URL; else in this process,
    # the least recently used past apq_cache_size); and in trusted mode, member tokens and
    # anonymous callers run only documents registered with `laurel documents add`.
    apq_ttl_seconds: int = 7 * 24 * 3600
    apq_cache_size: int = 1_000
    trusted_documents: bool = False
    # One JSON log line per HTTP request (method, path, status, duration, request id), at
    # INFO on the `laurel.access` logger. Traces are configured by the OpenTelemetry
    # variables (OTEL_EXPORTER_OTLP_ENDPOINT...), see api/tracing.py.
    # One JSON line per request; off by default (a proxy or load balancer usually logs access,
    # and the line costs ~23 µs of CPU a request).
    access_log: bool = False

    @field_validator(
        "rate_limit_member",
        "rate_limit_partner",
        "rate_limit_service",
        "rate_limit_admin",
        "rate_limit_anonymous",
    )
    @classmethod
    def _valid_rate_limit(cls, value: str) -> str:
        parse_limit(value)  # ValueError: the server does not start with a typo
        return value

    @model_validator(mode="after")
    def _identity_provider(self) -> Settings:
        if self.jwks_url is None:
            return self
        # Without both checks, any token the provider signs for any other application (or
        # another tenant sharing its keys) would sign a member in here.
        if not self.jwt_issuer or not self.jwt_audience:
            raise ValueError("LAUREL_JWKS_URL needs LAUREL_JWT_ISSUER and LAUREL_JWT_AUDIENCE")
        if self.is_production and not self.jwks_url.startswith("https://"):
            raise ValueError("LAUREL_JWKS_URL must be an https:// URL in production")
        if not self.jwt_member_claim:
            raise ValueError("LAUREL_JWT_MEMBER_CLAIM must name a claim")
        return self

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def graphiql_enabled(self) -> bool:
        return self.graphiql if self.graphiql is not None else not self.is_production

    @property
    def member_page_enabled(self) -> bool:
        return self.member_page if self.member_page is not None else not self.is_production

    @property
    def admin_page_enabled(self) -> bool:
        return self.admin_page if self.admin_page is not None else not self.is_production

    @property
    def jwt_secret_value(self) -> str | None:
        """The secret that signs new member tokens: the first of LAUREL_JWT_SECRETS, else
        LAUREL_JWT_SECRET."""
        secrets = self.jwt_verifying_secrets
        return secrets[0] if secrets else None

    @property
    def jwt_verifying_secrets(self) -> list[str]:
        """Every HS256 secret a member token may be signed with, the signing one first."""
        found = [secret.get_secret_value() for secret in self.jwt_secrets]
        if self.jwt_secret is not None:
            found.append(self.jwt_secret.get_secret_value())
        return list(dict.fromkeys(secret for secret in found if secret))
