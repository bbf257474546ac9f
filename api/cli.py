"""The `laurel` command: run the demo, migrate, serve, create API keys and member tokens."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from alembic.runtime.migration import MigrationContext
from pydantic import SecretStr, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.logs import logging_config
from api.settings import Settings
from models import ApiKey, KeyRole, Member
from models.engine import create_engine, is_sqlite, session_factory
from models.migrations import is_up_to_date
from schema.ids import decode_id, encode_id
from services import access, audit
from services.bus import broadcast_channel, hint_channel
from services.clock import SystemClock
from services.errors import DomainError
from services.partners import find_partner
from services.program import list_tiers
from services.revocations import KEYS_CHANGED

APP_FACTORY = "api.app:create_app"
DEMO_SECRET_FILE = ".laurel-demo-secret"  # noqa: S105 (a file name, not a secret)
UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    # uvicorn's sans-I/O WebSocket protocol, keeping less a connection (see api.ws_protocol).
    "ws": "api.ws_protocol:LaurelWebSocketProtocol",
    "ws_per_message_deflate": False,
    "proxy_headers": True,
    "lifespan": "on",
    "access_log": False,
}
FIRST_QUERY = """\
query FirstLook {
  me {
    displayName
    tier { name multiplier benefits }
    tierProgress { qualifyingPoints pointsToNext next { name } }
    balance { available pending lifetimeEarned expiringSoon { points expiresAt } }
    transactions(first: 5) {
      totalCount
      edges { node { kind points description createdAt breakdown { label points } } }
    }
    recommendedRewards(first: 3) { id name cost partner { name } }
    redemptions(first: 3) { edges { node { status code reward { name } } } }
  }
  promotions { name multiplier startsAt endsAt }
}"""

# What `laurel demo` prints for staff, with the admin key as the bearer (README: "Running
# the program").
ADMIN_QUERY = """\
query RunTheProgram {
  members(search: "ha", first: 5, orderBy: {field: LIFETIME_POINTS}) {
    totalCount
    edges { node { id displayName email status attributes tier { name } } }
  }
  suspended: members(status: SUSPENDED) { edges { node { displayName email } } }
  auditLog(first: 5) {
    edges { node { at operation targetId actor { name } before after } }
  }
  apiKeys(first: 5) { edges { node { name role lastUsedAt revokedAt } } }
}"""

T = TypeVar("T")


class CliError(Exception):
    """A clear, one-line failure: printed to stderr, no traceback."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# ---------------------------------------------------------------- plumbing


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"LAUREL_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise CliError(f"invalid configuration: {problems}") from exc


def _shown_url(url: str) -> str:
    """The database URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def _engine(url: str) -> AsyncEngine:
    try:
        return create_engine(url, pool_size=2)
    except (ArgumentError, ImportError, ValueError) as exc:
        raise CliError(f"LAUREL_DATABASE_URL is not a usable database URL ({exc})") from exc


def _reason(exc: BaseException) -> str:
    """The first line of the driver's complaint, without SQLAlchemy's boilerplate."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


@asynccontextmanager
async def _database(url: str, *, create: bool = False) -> AsyncIterator[AsyncEngine]:
    """An engine on `url`, disposed afterwards; connection failures become one-line errors.
    Unless `create`, a SQLite file must exist already (so a typo makes no empty database)."""
    if not create:
        _require_sqlite_file(url)
    engine = _engine(url)
    try:
        yield engine
    except Exception as exc:
        if not _is_database_failure(exc):
            raise
        raise CliError(f"cannot use the database at {_shown_url(url)}: {_reason(exc)}") from exc
    finally:
        await engine.dispose()


def _is_database_failure(exc: Exception) -> bool:
    # asyncpg raises its own errors (a missing database, a refused login) while connecting.
    return isinstance(exc, OSError | SQLAlchemyError) or type(exc).__module__.startswith("asyncpg.")


def _require_sqlite_file(url: str) -> None:
    if not is_sqlite(url):
        return
    database = make_url(url).database
    if database and database != ":memory:" and not Path(database).is_file():
        raise CliError(
            f"there is no database at {_shown_url(url)}: run `laurel migrate` first "
            "(or `laurel demo` for the demo)",
            code=2,
        )


async def _require_migrated(engine: AsyncEngine) -> None:
    if not await is_up_to_date(engine):
        raise CliError(
            f"the database at {engine.url.render_as_string(hide_password=True)} "
            "is not migrated to the latest schema: run `laurel migrate` first",
            code=2,
        )


async def _revision(engine: AsyncEngine) -> str | None:
    def current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(current)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def _serve(app: Any, **options: Any) -> None:
    # JSON lines with request ids, in every worker (uvicorn applies it in each).
    uvicorn.run(app, **options, **UVICORN_OPTIONS, log_config=logging_config())


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- commands


def cmd_migrate(args: argparse.Namespace) -> int:
    from api.database import prepare_database

    settings = _settings()

    async def migrate() -> tuple[str | None, str | None]:
        async with _database(settings.database_url, create=True) as engine:
            before = await _revision(engine)
            await prepare_database(engine)
            return before, await _revision(engine)

    before, after = _run(migrate())
    where = _shown_url(settings.database_url)
    if before == after:
        print(f"{where}: already at the latest schema (revision {after}); program defaults checked")
    else:
        print(
            f"{where}: migrated from revision {before or '(empty database)'} to {after} (latest);"
            " program defaults ensured"
        )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.workers < 1:
        raise CliError("--workers must be at least 1", code=2)

    async def check() -> None:
        async with _database(settings.database_url) as engine:
            await _require_migrated(engine)

    _run(check())
    if (
        settings.jwt_secret_value is None
        and settings.jwt_public_key is None
        and settings.jwks_url is None
    ):
        _err("laurel: note: LAUREL_JWT_SECRET is not set: member tokens will be refused")
    _serve(
        APP_FACTORY,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        ws_max_size=settings.max_body_bytes,
    )
    return 0


def _parse_member_id(value: str) -> int:
    raw = value.strip()
    if raw.isdigit():
        return int(raw)
    decoded = decode_id(raw)
    if decoded is None or decoded[0] != "Member":
        raise CliError(f"{value!r} is neither a Member ID nor a numeric member id", code=2)
    return decoded[1]


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings()
    secret = settings.jwt_secret_value
    if not secret:
        hint = ""
        if Path(DEMO_SECRET_FILE).is_file():
            hint = f" (for the demo: LAUREL_JWT_SECRET=$(cat {DEMO_SECRET_FILE}) laurel token ...)"
        raise CliError(
            f"LAUREL_JWT_SECRET (or LAUREL_JWT_SECRETS) is not set: it signs member tokens{hint}"
        )
    member_pk = _parse_member_id(args.member_id)
    ttl = timedelta(seconds=args.ttl if args.ttl is not None else settings.member_token_ttl_seconds)

    async def find() -> Member | None:
        async with _database(settings.database_url) as engine:
            await _require_migrated(engine)
            async with session_factory(engine)() as session:
                return await session.get(Member, member_pk)

    member = _run(find())
    if member is None:
        raise CliError(f"no member with id {args.member_id}")
    try:
        token = access.issue_member_token(
            subject=encode_id("Member", member.id), secret=secret, now=SystemClock().now(), ttl=ttl
        )
    except DomainError as exc:
        raise CliError(f"--ttl: {exc.message}", code=2) from exc
    print(token)
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    settings = _settings()
    role = KeyRole(args.role)
    name = args.name or f"{role.value} key"

    async def create() -> access.IssuedKey:
        async with _database(settings.database_url) as engine:
            await _require_migrated(engine)
            async with session_factory(engine).begin() as session:
                if args.partner is not None:
                    # A key bound to a brand that does not exist would see nothing, silently.
                    await find_partner(session, args.partner)
                now = SystemClock().now()
                issued = await access.create_api_key(
                    session, role=role, name=name, now=now, partner_slug=args.partner
                )
                audit.record(
                    session,
                    actor=audit.COMMAND_LINE,
                    operation="keys create",
                    target_id=encode_id("ApiKey", issued.key.id),
                    before=None,
                    after=audit.fields(issued.key, access.AUDITED_FIELDS),
                    now=now,
                )
                return issued

    try:
        issued = _run(create())
    except DomainError as exc:
        raise CliError(exc.message, code=2) from exc
    _err(f"created {role.value} key {name!r} (prefix {issued.key.prefix}); it is shown only once:")
    print(issued.secret, flush=True)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    """One line per key, newest first: id, name, role, partner, created, last used, revoked."""
    settings = _settings()

    async def read() -> list[ApiKey]:
        async with _database(settings.database_url) as engine:
            await _require_migrated(engine)
            async with session_factory(engine)() as session:
                return list(await session.scalars(select(ApiKey).order_by(ApiKey.id.desc())))

    for key in _run(read()):
        print(
            "\t".join(
                [
                    encode_id("ApiKey", key.id),
                    key.name,
                    key.role.name,
                    key.partner_slug or "-",
                    key.created_at.isoformat(timespec="seconds"),
                    key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "-",
                    key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-",
                ]
            ),
            flush=True,
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    """Revoke a key (audited); with Redis configured, every serving process is told at once,
    else each one drops its cached keys within LAUREL_API_KEY_CACHE_SECONDS."""
    settings = _settings()
    raw = args.key_id.strip()
    decoded = decode_id(raw)
    if raw.isdigit():
        key_id = int(raw)
    elif decoded is not None and decoded[0] == "ApiKey":
        key_id = decoded[1]
    else:
        raise CliError(f"{args.key_id!r} is not an ApiKey id (see `laurel keys list`)")

    async def revoke() -> ApiKey:
        async with _database(settings.database_url) as engine:
            await _require_migrated(engine)
            now = SystemClock().now()
            async with session_factory(engine).begin() as session:
                key = await access.revoke_api_key(session, key_id, now)
                audit.record(
                    session,
                    actor=audit.COMMAND_LINE,
                    operation="keys revoke",
                    target_id=encode_id("ApiKey", key.id),
                    before={"revokedAt": None} if key.revoked_at == now else {},
                    after={"revokedAt": audit.jsonable(key.revoked_at)}
                    if key.revoked_at == now
                    else {},
                    now=now,
                )
        if settings.redis_url:
            await _announce(settings, KEYS_CHANGED)
        return key

    try:
        key = _run(revoke())
    except DomainError as exc:
        raise CliError(f"{exc.message}: {args.key_id}") from exc
    assert key.revoked_at is not None
    _err(f"revoked key {key.name!r} ({encode_id('ApiKey', key.id)})")
    return 0


async def _announce(settings: Settings, message: str) -> None:
    """Tell the serving processes over Redis (their bus's broadcast channel)."""
    assert settings.redis_url is not None
    client = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    channel = broadcast_channel(hint_channel(settings.redis_prefix))
    try:
        await client.publish(channel, f"cli:{message}")
    except (RedisError, OSError) as exc:
        _err(
            f"warning: Redis not told ({exc}); processes drop cached keys within "
            f"{settings.api_key_cache_seconds:g} s"
        )
    finally:
        await client.aclose()


def cmd_documents_add(args: argparse.Namespace) -> int:
    """Register trusted documents from graphql-codegen's persisted-documents.json or .graphql
    files (all of them or none); adding them again changes nothing."""
    from services.trusted_documents import add_documents, read_documents

    settings = _settings()
    try:
        documents = read_documents(Path(name) for name in args.files)
    except DomainError as exc:
        raise CliError(exc.message, code=2) from exc

    async def add() -> tuple[int, int]:
        async with _database(settings.database_url) as engine:
            await _require_migrated(engine)
            async with session_factory(engine).begin() as session:
                added = await add_documents(session, documents, SystemClock().now())
                return added.added, added.already

    added, already = _run(add())
    _err(f"{added} document(s) added, {already} already registered")
    return 0


def cmd_documents_list(args: argparse.Namespace) -> int:
    """One line per trusted document, oldest first: its documentId, operation, registered."""
    from services.trusted_documents import list_documents

    settings = _settings()

    async def read() -> list[tuple[str, str | None, str]]:
        async with _database(settings.database_url) as engine:
            await _require_migrated(engine)
            async with session_factory(engine)() as session:
                return [
                    (d.sha256, d.operation_name, d.created_at.isoformat(timespec="seconds"))
                    for d in await list_documents(session)
                ]

    for sha256, operation, created in _run(read()):
        print(f"sha256:{sha256}\t{operation or '-'}\t{created}", flush=True)
    return 0


def cmd_export_schema(args: argparse.Namespace) -> int:
    from schema.export import schema_sdl

    sys.stdout.write(schema_sdl())
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from services.ledger.sweeps import sweep

    settings = _settings()

    async def run() -> list[str]:
        async with _database(settings.database_url) as engine:
            await _require_migrated(engine)
            sessions = session_factory(engine)
            report = await sweep(sessions, SystemClock().now())
            async with sessions() as session:
                names = {t.id: t.name for t in await list_tiers(session)}
            lines = [
                f"settled {report.members_settled} member(s): pending points activated, "
                "due lots expired",
                f"paid {report.birthdays_paid} birthday(s) and "
                f"{report.anniversaries_paid} anniversary bonus(es)",
                f"re-placed {report.tiers_refreshed} member(s) by the tier window",
            ]
            for change in report.tier_changes or []:
                lines.append(
                    f"  {encode_id('Member', change.member_id)}: "
                    f"{names.get(change.from_tier_id, '?')} -> {names.get(change.to_tier_id, '?')}"
                )
            return lines

    print("\n".join(_run(run())))
    return 0


def _shown_redis_url(url: str) -> str:
    """The Redis URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return urlunsplit(parts._replace(netloc=user + netloc))
    except ValueError:
        return "<unparseable URL>"


def cmd_leaderboards_rebuild(args: argparse.Namespace) -> int:
    from redis.exceptions import RedisError

    from models.engine import read_session_factory
    from services.leaderboards import (
        LeaderboardBusy,
        LeaderboardStore,
        Period,
        RebuildLockLost,
        connect_redis,
        period_label,
    )

    settings = _settings()
    if not settings.redis_url:
        raise CliError(
            "LAUREL_REDIS_URL is not set: leaderboards live in Redis only when it is configured "
            "(without it they are computed by the database and need no rebuild)",
            code=2,
        )
    redis_url = settings.redis_url
    periods = [Period(args.period)] if args.period else list(Period)

    async def rebuild() -> list[str]:
        async with _database(settings.database_url) as engine:
            await _require_migrated(engine)
            sessions = read_session_factory(engine)
            try:
                redis = connect_redis(redis_url, timeout=5.0)
            except ValueError as exc:
                raise CliError(
                    f"LAUREL_REDIS_URL is not a usable Redis URL ({exc})", code=2
                ) from exc
            lines = []
            try:
                store = LeaderboardStore(redis, prefix=args.prefix or settings.redis_prefix)
                now = SystemClock().now()
                for period in periods:
                    ranked = await store.rebuild(sessions, period, now, wait=args.wait)
                    label = period_label(period, now)
                    board = "" if label == period.value else f" ({label.split(':', 1)[1]})"
                    lines.append(f"{period.value}{board}: {ranked} member(s) ranked")
            except LeaderboardBusy as exc:
                raise CliError(f"{exc}; try again later") from exc
            except (RedisError, RebuildLockLost) as exc:
                raise CliError(
                    f"cannot use Redis at {_shown_redis_url(redis_url)}: {_reason(exc)}"
                ) from exc
            finally:
                await redis.aclose()
            return lines

    print("\n".join(_run(rebuild())))
    return 0


# ---------------------------------------------------------------- demo


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    admin_key: str
    partner_name: str  # the demo's partner brand
    partner_key: str
    member_token: str
    member_id: str
    member_name: str
    member_tier: str
    loaded: str | None  # what was loaded this start, if anything


def _sqlite_path(url: str) -> Path | None:
    if not is_sqlite(url):
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise CliError("the demo needs a SQLite file (or PostgreSQL), not an in-memory database")
    return Path(database)


def _demo_secret(directory: Path) -> str:
    """The demo's JWT secret, created once and kept beside the database so tokens survive."""
    path = directory / DEMO_SECRET_FILE
    if path.is_file():
        secret = path.read_text().strip()
        if len(secret) >= 32:
            return secret
    directory.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret


async def _prepare_demo(url: str, jwt_secret: str, ttl_seconds: int) -> DemoCredentials:
    from api.database import prepare_database
    from services.demo import load_demo, showcase_member
    from services.demo_rewards import PARTNER_NAME, PARTNER_SLUG

    clock = SystemClock()
    async with _database(url, create=True) as engine:
        await prepare_database(engine)
        sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        async with sessions() as session:
            members = int(await session.scalar(select(func.count()).select_from(Member)) or 0)
        loaded = None
        if members == 0:
            summary = await load_demo(sessions, clock)
            loaded = (
                f"loaded the demo program {summary.program_name!r}: {summary.members} members, "
                f"{summary.purchases} purchases, {summary.refunds} refunds, "
                f"{summary.activities} reviews and shares, {summary.redemptions} redemptions "
                f"({summary.donations} donations)"
            )
        now = clock.now()
        async with sessions.begin() as session:
            issued = await access.create_api_key(
                session, role=KeyRole.ADMIN, name=f"demo admin {now:%Y-%m-%d %H:%M}", now=now
            )
            partner_key = await access.create_api_key(
                session,
                role=KeyRole.PARTNER,
                name=f"demo partner {now:%Y-%m-%d %H:%M}",
                now=now,
                partner_slug=PARTNER_SLUG,
            )
            member = await showcase_member(session)
            assert member is not None, "the demo database has members"
            tiers = {t.id: t.name for t in await list_tiers(session)}
        member_id = encode_id("Member", member.id)
        token = access.issue_member_token(
            subject=member_id,
            secret=jwt_secret,
            now=now,
            ttl=min(timedelta(seconds=ttl_seconds), access.MAX_TOKEN_TTL),
        )
        return DemoCredentials(
            admin_key=issued.secret,
            partner_name=PARTNER_NAME,
            partner_key=partner_key.secret,
            member_token=token,
            member_id=member_id,
            member_name=member.display_name,
            member_tier=tiers[member.tier_id],
            loaded=loaded,
        )


def cmd_demo(args: argparse.Namespace) -> int:
    from api.app import create_app

    base = _settings()
    url = base.database_url
    sqlite_file = _sqlite_path(url)
    if args.reset:
        if sqlite_file is None:
            raise CliError("--reset only deletes a SQLite demo database; drop this one yourself")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{sqlite_file}{suffix}").unlink(missing_ok=True)
    secret = base.jwt_secret_value
    signing = "from LAUREL_JWT_SECRET"
    if not secret:
        directory = sqlite_file.resolve().parent if sqlite_file else Path.cwd()
        secret = _demo_secret(directory)
        signing = f"kept in {directory / DEMO_SECRET_FILE}"
    # The demo serves every page whatever LAUREL_ENV says: it prints their links. It runs on
    # this machine: webhooks may go to a receiver here too (`laurel webhooks receive`).
    settings = _settings(
        jwt_secret=SecretStr(secret),
        graphiql=True,
        member_page=True,
        admin_page=True,
        webhooks_allow_private=True,
    )

    creds = _run(_prepare_demo(url, secret, settings.member_token_ttl_seconds))
    origin = f"http://{_url_host(args.host)}:{args.port}"
    address = f"{origin}/graphql"
    lines = [
        "",
        "Laurel demo",
        f"  database       {_shown_url(url)}",
    ]
    if creds.loaded:
        lines.append(f"                 {creds.loaded}")
    lines += [
        f"  GraphiQL       {address}",
        # Credentials ride in the fragment (#...): browsers never send it to a server.
        f"  member page    {origin}/member#token={creds.member_token}",
        f"  admin page     {origin}/admin#key={creds.admin_key}",
        f"  admin key      {creds.admin_key}",
        f"  partner        {creds.partner_name}, co-branded rewards",
        f"  partner key    {creds.partner_key}",
        f"  member         {creds.member_name} ({creds.member_tier}), id {creds.member_id}",
        f"  member token   {creds.member_token}",
        f"  token secret   {signing}",
        "",
        "Open GraphiQL, paste this into the headers pane:",
        "",
        f'  {{"Authorization": "Bearer {creds.member_token}"}}',
        "",
        "and run this query:",
        "",
        *(f"  {line}" for line in FIRST_QUERY.splitlines()),
        "",
        "For staff operations, send the admin key as the bearer instead, e.g.:",
        "",
        *(f"  {line}" for line in ADMIN_QUERY.splitlines()),
        "",
        "then updateMember, setMemberStatus, exportMember, eraseMember, revokeApiKey (README:",
        '"Running the program"). Ctrl+C stops.',
        "",
    ]
    print("\n".join(lines), flush=True)
    _serve(
        create_app(settings), host=args.host, port=args.port, ws_max_size=settings.max_body_bytes
    )
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# ---------------------------------------------------------------- entry point


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="laurel",
        description="Laurel: a GraphQL loyalty API. Configuration comes from LAUREL_* "
        "environment variables (and an optional .env file).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="create and fill a demo database, print credentials, and serve it"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--reset", action="store_true", help="delete the SQLite demo database and start afresh"
    )
    demo.set_defaults(handler=cmd_demo)

    migrate = commands.add_parser("migrate", help="bring the database to the latest schema")
    migrate.set_defaults(handler=cmd_migrate)

    serve = commands.add_parser("serve", help="serve the API (the database must be migrated)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(handler=cmd_serve)

    keys = commands.add_parser("keys", help="API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create an API key and print it (only once)")
    create.add_argument("--role", required=True, choices=[r.value for r in KeyRole])
    create.add_argument("--partner", metavar="SLUG", help="the partner's slug (partner keys)")
    create.add_argument("--name", help="a label for the key")
    create.set_defaults(handler=cmd_keys_create)
    listing = key_commands.add_parser(
        "list", help="every key (id, name, role, partner, created, last used, revoked)"
    )
    listing.set_defaults(handler=cmd_keys_list)
    revoke = key_commands.add_parser("revoke", help="revoke a key (ID as `keys list` prints it)")
    revoke.add_argument("key_id", metavar="ID")
    revoke.set_defaults(handler=cmd_keys_revoke)

    token = commands.add_parser("token", help="print a member token (needs LAUREL_JWT_SECRET)")
    token.add_argument("member_id", metavar="MEMBER_ID", help="a Member ID or a numeric id")
    token.add_argument("--ttl", type=int, metavar="SECONDS", help="lifetime (default: 7 days)")
    token.set_defaults(handler=cmd_token)

    documents = commands.add_parser(
        "documents",
        help="trusted documents (what member apps may run with LAUREL_TRUSTED_DOCUMENTS)",
    )
    document_commands = documents.add_subparsers(
        dest="documents_command", required=True, metavar="ACTION"
    )
    add_documents = document_commands.add_parser(
        "add",
        help="register documents: graphql-codegen's persisted-documents.json (hash -> document) "
        "or .graphql files (one document per operation)",
    )
    add_documents.add_argument("files", nargs="+", metavar="FILE")
    add_documents.set_defaults(handler=cmd_documents_add)
    list_documents = document_commands.add_parser(
        "list", help="every registered document (documentId, operation, registered at)"
    )
    list_documents.set_defaults(handler=cmd_documents_list)

    export = commands.add_parser("export-schema", help="print the GraphQL schema (SDL)")
    export.set_defaults(handler=cmd_export_schema)

    sweep = commands.add_parser(
        "sweep",
        help="activate pending points, expire due lots, and pay birthdays and anniversaries "
        "now (normally automatic)",
    )
    sweep.set_defaults(handler=cmd_sweep)

    leaderboards = commands.add_parser("leaderboards", help="leaderboards kept in Redis")
    board_commands = leaderboards.add_subparsers(
        dest="leaderboards_command", required=True, metavar="ACTION"
    )
    rebuild = board_commands.add_parser(
        "rebuild",
        help="rebuild the current boards in Redis from the database (needs LAUREL_REDIS_URL)",
    )
    rebuild.add_argument(
        "--period", choices=["ALL_TIME", "MONTHLY", "WEEKLY"], help="one board (default: all)"
    )
    rebuild.add_argument(
        "--prefix",
        default=None,
        help="the Redis key prefix the API uses (default: LAUREL_REDIS_PREFIX, else laurel:)",
    )
    rebuild.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for a rebuild another process is running (default: 60)",
    )
    rebuild.set_defaults(handler=cmd_leaderboards_rebuild)

    from api.cli_data import add_data_commands  # `import members`, `export ledger`

    add_data_commands(commands)
    from api.cli_webhooks import add_webhook_commands  # `worker`, `webhooks receive`

    add_webhook_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CliError as exc:
        _err(f"laurel: error: {exc.message}")
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
