"""Which URLs an endpoint may have: public https (http outside production), never one that
resolves to this machine, a private network, a link-local or a cloud metadata address
(server-side request forgery), unless explicitly allowed (tests, local development).

Checked when an endpoint is created or changed, and again before every delivery (a name may
resolve elsewhere later)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from services.errors import UrlNotAllowed

MAX_URL_LENGTH = 2000
# Cloud metadata services that a private-address check alone would miss (IPv6 ones).
METADATA = frozenset({ipaddress.ip_address("fd00:ec2::254")})


def _field() -> list[str]:
    return ["input", "url"]


def check_form(url: str, *, production: bool, allow_private: bool) -> tuple[str, int]:
    """The URL's host and port, if its form is acceptable (no lookup)."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlNotAllowed(f"a URL has at most {MAX_URL_LENGTH} characters", field=_field())
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UrlNotAllowed("not a valid URL", field=_field()) from exc
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UrlNotAllowed("an endpoint URL is http(s)://host/...", field=_field())
    if parts.scheme == "http" and production and not allow_private:
        raise UrlNotAllowed("endpoints must use https in production", field=_field())
    if parts.username or parts.password:
        raise UrlNotAllowed("credentials in the URL are not allowed", field=_field())
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def forbidden_address(address: str) -> bool:
    """Loopback, private, link-local, unspecified, multicast, reserved or metadata."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_multicast
        or ip.is_reserved
        or ip in METADATA
        or not ip.is_global
    )


async def check_url(url: str, *, production: bool, allow_private: bool) -> str:
    """`url`, stripped, if an endpoint may have it; URL_NOT_ALLOWED otherwise."""
    host, port = check_form(url, production=production, allow_private=allow_private)
    if allow_private:
        return url.strip()
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlNotAllowed(f"{host} does not resolve", field=_field()) from exc
    addresses = {str(info[4][0]) for info in found}
    if not addresses or any(forbidden_address(a) for a in addresses):
        raise UrlNotAllowed(
            f"{host} resolves to a private, loopback, link-local or metadata address",
            field=_field(),
        )
    return url.strip()


@dataclass(frozen=True, slots=True)
class UrlRules:
    """How endpoint URLs are checked (settings)."""

    production: bool
    allow_private: bool

    async def check(self, url: str) -> str:
        return await check_url(url, production=self.production, allow_private=self.allow_private)
