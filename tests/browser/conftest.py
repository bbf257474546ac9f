"""A real browser on Laurel's pages: Debian's Chromium (/usr/bin/chromium) driven by Playwright,
against `laurel demo` served by uvicorn on a free loopback port (its own SQLite file).

Nothing outside 127.0.0.1 is reachable: Chromium resolves no other host, and every request
the pages make goes through a route that lets 127.0.0.1 through and aborts (and records) the
rest; the tests assert that nothing else was even attempted. Screenshots are saved under
test-artifacts/browser/ (git-ignored; CI keeps them as artifacts).

Playwright downloads no browser here (never run `playwright install`): Chromium comes from
apt (scripts/test installs it). Without it the tests are skipped, except in CI (CI=true),
where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Route,
    WebSocket,
    async_playwright,
)

from tests.live.conftest import LAUREL, free_port

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-sync",
    "--metrics-recording-only",
    "--no-default-browser-check",
    "--no-first-run",
    "--no-pings",
    # No name resolves but loopback's: even a request no route sees cannot leave the machine.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = "Chromium is not installed: apt-get install -y chromium (scripts/test does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Demo:
    """`laurel demo` in its own directory, and what it printed."""

    directory: Path
    port: int
    printed: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Demo:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAUREL_")}
        env["LAUREL_SWEEP_INTERVAL_SECONDS"] = "0"
        self.log = (self.directory / "demo.log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603 (our own command)
            [str(LAUREL), "demo", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.directory,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until_ready(self.origin, self.process, self.output)
        # "  member page    http://...": a label, two spaces or more, its value.
        for line in self.output().splitlines():
            parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
            if len(parts) == 2:
                self.printed[parts[0]] = parts[1]
        return self

    def output(self) -> str:
        return (self.directory / "demo.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.log is not None:
            self.log.close()
            self.log = None


def wait_until_ready(origin: str, process: subprocess.Popen[bytes], output: object) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{output() if callable(output) else ''}")
        try:
            if httpx.get(f"{origin}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready in 60 s")


@asynccontextmanager
async def serve_beside(demo: Demo) -> AsyncIterator[str]:
    """`laurel serve` on the demo's database (another port, the same secret): its origin.

    Started and stopped in a thread: while the test's event loop is blocked, Playwright
    cannot let the page's requests through its route."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUREL_")}
    env["LAUREL_SWEEP_INTERVAL_SECONDS"] = "0"
    env["LAUREL_JWT_SECRET"] = (demo.directory / ".laurel-demo-secret").read_text().strip()
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    process = await asyncio.to_thread(
        subprocess.Popen,
        [str(LAUREL), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=demo.directory,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.to_thread(wait_until_ready, origin, process, None)
        yield origin
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 15)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    _require_chromium()
    running = Demo(tmp_path_factory.mktemp("demo"), free_port()).start()
    try:
        yield running
    finally:
        running.stop()


@dataclass
class Watched:
    """A page, with what it logged and what it tried to reach."""

    page: Page
    errors: list[str]
    outside: list[str]
    sockets: list[str]
    sent: list[str]  # the frames the page sent on its WebSockets

    async def sent_frame(self, text: str, within_s: float = 5) -> None:
        """Wait until the page has sent a WebSocket frame containing `text`."""
        deadline = time.monotonic() + within_s
        while not any(text in frame for frame in self.sent):
            assert time.monotonic() < deadline, f"no frame with {text!r} in {self.sent}"
            await asyncio.sleep(0.05)

    async def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    _require_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def watched(browser: Browser, demo: Demo) -> AsyncIterator[Watched]:
    """A fresh browser context and page on the demo: requests outside 127.0.0.1 aborted and
    recorded, console errors and uncaught exceptions recorded."""
    context: BrowserContext = await browser.new_context(viewport={"width": 1280, "height": 900})
    outside: list[str] = []
    errors: list[str] = []
    sockets: list[str] = []

    async def only_loopback(route: Route) -> None:
        if route.request.url.startswith(("http://127.0.0.1:", "ws://127.0.0.1:")):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_loopback)
    page = await context.new_page()

    def logged(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", logged)
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    page.on(
        "requestfailed",
        lambda request: errors.append(
            f"request failed: {request.method} {request.url} {(request.post_data or '')[:40]}"
        ),
    )
    sent: list[str] = []

    def opened(socket: WebSocket) -> None:
        sockets.append(socket.url)
        socket.on("framesent", lambda frame: sent.append(str(frame)))

    page.on("websocket", opened)
    try:
        yield Watched(page, errors, outside, sockets, sent)
    finally:
        await context.close()
    assert outside == [], f"requests outside 127.0.0.1: {outside}"
    assert all(url.startswith("ws://127.0.0.1:") for url in sockets), sockets
