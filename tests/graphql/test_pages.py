"""Laurel's web pages over HTTP (GraphiQL, /member, /admin, /static): the Content-Security-Policy
of each, that they load only files Laurel serves and name no outside address, that they are off
in production unless enabled, and that the vendored files are the manifest's and ship with the
package. (tests/browser runs them in a real browser.)
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.pages import STATIC
from api.settings import Settings

REPO = Path(__file__).resolve().parents[2]
VENDOR = STATIC / "vendor"
HTML = {"accept": "text/html"}
PAGES = {"/graphql": "graphiql.html", "/member": "member.html", "/admin": "admin.html"}
SELF_ONLY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "font-src 'self'; connect-src 'self' ws://127.0.0.1:8000 wss://127.0.0.1:8000; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def app_with(**settings: Any) -> httpx.AsyncClient:
    """The real app (no request here touches its database) over HTTP, as 127.0.0.1:8000."""
    app = create_app(
        Settings(database_url="sqlite+aiosqlite:///unused.db", _env_file=None, **settings)  # type: ignore[call-arg]
    )
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
    )


@pytest.fixture
async def development() -> AsyncIterator[httpx.AsyncClient]:
    async with app_with(env="development") as client:
        yield client


def loaded_files(html: str) -> list[str]:
    """What a page loads: its scripts' src and its links' href."""
    return re.findall(r'<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"', html)


def without_comments(text: str, suffix: str) -> str:
    """The text of one of our own files with its comments taken out."""
    if suffix in (".html", ".svg"):
        text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    if suffix in (".js", ".css"):
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    if suffix == ".js":
        text = re.sub(r"(?m)^\s*//.*$", "", text)
    return text


def sha384(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


async def test_each_page_allows_only_this_origin(development: httpx.AsyncClient) -> None:
    answers = {path: await development.get(path, headers=HTML) for path in PAGES}

    for path, response in answers.items():
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert answers["/member"].headers["content-security-policy"] == SELF_ONLY
    assert answers["/admin"].headers["content-security-policy"] == SELF_ONLY
    # GraphiQL's stylesheet embeds its fonts (data:), its dialogs add a <style> element at run
    # time: those two exceptions, and only there; its scripts are 'self' like everyone's.
    assert answers["/graphql"].headers["content-security-policy"] == SELF_ONLY.replace(
        "style-src 'self'", "style-src 'self' 'unsafe-inline'"
    ).replace("font-src 'self'", "font-src 'self' data:")


async def test_an_odd_host_header_never_reaches_the_policy(development: httpx.AsyncClient) -> None:
    response = await development.get("/member", headers={"host": "evil.example; script-src *"})

    policy = response.headers["content-security-policy"]
    assert "connect-src 'self';" in policy and "evil" not in policy


async def test_pages_load_only_files_laurel_serves(development: httpx.AsyncClient) -> None:
    for path, name in PAGES.items():
        html = (await development.get(path, headers=HTML)).text
        assert html == (STATIC / name).read_text()
        files = loaded_files(html)
        assert files and all(f.startswith("static/") for f in files), (path, files)
        for file in files:
            response = await development.get(f"/{file}")
            assert response.status_code == 200, file
            assert response.content == (STATIC / file.removeprefix("static/")).read_bytes()
            assert response.headers["x-content-type-options"] == "nosniff"
            cache = response.headers["cache-control"]
            assert cache == (
                "public, max-age=31536000, immutable" if "/vendor/" in file else "no-cache"
            )
    assert (await development.get("/static/member.html")).status_code == 404  # pages: with CSP


def test_no_page_names_an_outside_address() -> None:
    own = [p for p in STATIC.iterdir() if p.is_file()]
    assert {p.suffix for p in own} == {".html", ".js", ".css", ".svg"}
    for path in own:
        text = without_comments(path.read_text(), path.suffix)
        if path.suffix == ".svg":  # an XML namespace names, it does not load
            text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "http://" not in text and "https://" not in text, path.name
    for stylesheet in VENDOR.glob("*/*.css"):
        css = without_comments(stylesheet.read_text(), ".css")
        assert "@import" not in css, stylesheet
        assert re.findall(r"url\(\s*['\"]?(?!data:)", css) == [], stylesheet


async def test_pages_are_off_in_production_unless_enabled() -> None:
    async def statuses(**settings: Any) -> dict[str, int]:
        async with app_with(env="production", **settings) as client:
            paths = [*PAGES, "/static/member.js", "/static/vendor/manifest.json"]
            return {path: (await client.get(path, headers=HTML)).status_code for path in paths}

    off = await statuses()
    member = await statuses(member_page=True)
    admin = await statuses(admin_page=True)
    graphiql = await statuses(graphiql=True)

    assert set(off.values()) == {404}
    assert member == off | {
        "/member": 200,
        "/static/member.js": 200,
        "/static/vendor/manifest.json": 200,
    }
    assert admin["/admin"] == 200 and admin["/member"] == admin["/graphql"] == 404
    assert graphiql["/graphql"] == 200 and graphiql["/member"] == graphiql["/admin"] == 404


def test_vendored_files_are_those_of_the_manifest() -> None:
    manifest = json.loads((VENDOR / "manifest.json").read_text())
    listed = {
        VENDOR / entry["folder"] / name: digest
        for entry in manifest.values()
        for name, digest in entry["files"].items()
    }
    present = {path for path in VENDOR.glob("*/*") if path.name != "LICENSE"}

    assert present == set(listed)
    assert all(sha384(path.read_bytes()) == digest for path, digest in listed.items())
    assert all((VENDOR / entry["folder"] / "LICENSE").is_file() for entry in manifest.values())
    assert all(entry["version"] in entry["folder"] for entry in manifest.values())
    # The pages name exactly these folders (a version bump must touch both).
    loaded = [file for name in PAGES.values() for file in loaded_files((STATIC / name).read_text())]
    used = {file.split("/")[2] for file in loaded if file.startswith("static/vendor/")}
    assert used == {entry["folder"] for entry in manifest.values()}


def test_the_package_carries_every_page_file() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["api"]
    files = [p.relative_to(STATIC.parent).as_posix() for p in STATIC.rglob("*") if p.is_file()]

    def carried(path: str) -> bool:
        # setuptools' `**` matches any number of folders, none included
        return any(
            fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.replace("**/", ""))
            for pattern in patterns
        )

    assert files and all(carried(path) for path in files)
