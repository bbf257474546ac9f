"""Laurel's own web pages: GraphiQL (GET /graphql), the member page (/member) and the admin
page (/admin), with the files they load under /static.

Every page is plain HTML, CSS and JavaScript from `api/static` (installed with the package),
and every library it uses is vendored under `api/static/vendor` (`scripts/vendor-assets`), so
the pages work with no network but the one to Laurel. Each page is sent with a
Content-Security-Policy that allows nothing else: scripts, styles, fonts, images and
connections from this origin only (WebSockets to it included), no inline script, no framing.
GraphiQL alone needs two exceptions, see `GRAPHIQL_EXCEPTIONS`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

from api.settings import Settings

STATIC: Final = Path(__file__).resolve().parent / "static"

_POLICY: Final = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self'",
    "font-src": "'self'",
    "connect-src": "'self'",  # the ws(s) URLs of this host are added per request
    "base-uri": "'none'",
    "form-action": "'none'",
    "frame-ancestors": "'none'",
}
# GraphiQL's stylesheet embeds its fonts as data: URLs, and its dialogs (settings, shortcuts)
# lock page scrolling with a <style> element created at run time (react-remove-scroll) that
# no nonce can reach inside the bundle. Inline *styles* only: scripts stay 'self'.
GRAPHIQL_EXCEPTIONS: Final = {
    "font-src": "'self' data:",
    "style-src": "'self' 'unsafe-inline'",
}
# A Host header as browsers send it: a name or address, and a port.
_HOST: Final = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
_PAGE_HEADERS: Final = {
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def content_security_policy(request: Request, *, graphiql: bool = False) -> str:
    """The policy of a page served for `request`: this origin only, WebSockets to it too.

    'self' covers ws:/wss: in CSP Level 3 browsers; the explicit URLs are for older ones."""
    policy = dict(_POLICY)
    if graphiql:
        policy.update(GRAPHIQL_EXCEPTIONS)
    host = request.headers.get("host", "")
    if _HOST.match(host):
        policy["connect-src"] = f"'self' ws://{host} wss://{host}"
    return "; ".join(f"{name} {value}" for name, value in policy.items())


def _page(name: str) -> str:
    # Read at each request (a few kB the OS keeps cached): an edited page shows on reload.
    return (STATIC / name).read_text(encoding="utf-8")


def page_response(request: Request, name: str, *, graphiql: bool = False) -> Response:
    """An HTML page of `api/static`, with the security headers every page gets."""
    headers = {
        "Content-Security-Policy": content_security_policy(request, graphiql=graphiql),
        **_PAGE_HEADERS,
    }
    return HTMLResponse(_page(name), headers=headers)


class _Static(StaticFiles):
    """/static: `vendor/NAME-VERSION/...` never changes under one URL (cached for a year);
    Laurel's own files are revalidated, so an upgrade shows at once."""

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        vendored = (STATIC / "vendor") in Path(full_path).parents
        response.headers["Cache-Control"] = (
            "public, max-age=31536000, immutable" if vendored else "no-cache"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    async def get_response(self, path: str, scope: Scope) -> Response:
        # The pages' HTML is served at its own routes, with its headers, not as a file.
        if path.endswith(".html"):
            return Response(status_code=404)
        return await super().get_response(path, scope)


def routes(settings: Settings) -> list[BaseRoute]:
    """/member and /admin when enabled, and /static whenever any page is."""
    found: list[BaseRoute] = []

    async def member(request: Request) -> Response:
        return page_response(request, "member.html")

    async def admin(request: Request) -> Response:
        return page_response(request, "admin.html")

    if settings.member_page_enabled:
        found.append(Route("/member", member, methods=["GET"]))
    if settings.admin_page_enabled:
        found.append(Route("/admin", admin, methods=["GET"]))
    if found or settings.graphiql_enabled:
        found.append(Mount("/static", app=_Static(directory=STATIC), name="static"))
    return found
