"""Laurel's pages in a real browser, with nothing reachable but 127.0.0.1: GraphiQL runs a
query and a subscription with a member token from its Headers pane (explorer plugin shown),
the member page shows the balance and follows a purchase within 2 s and catches up after a
lost connection, the admin page draws its charts; no console errors anywhere.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from typing import Any

import httpx
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.browser.conftest import Demo, Watched, serve_beside

PURCHASE = """mutation($input: RecordPurchaseInput!) { recordPurchase(input: $input) {
  transaction { points description } member { balance { available pending } }
  userErrors { code message } } }"""
_orders = itertools.count(1)


async def purchase(origin: str, demo: Demo, amount: float) -> dict[str, Any]:
    """A purchase of the demo's featured member, recorded by the merchant's backend (here the
    admin key the demo printed) through the API; its transaction and the member's balance."""
    member_id = demo.printed["member"].split()[-1]  # "Jonah Fischer (Gold), id TWVt..."
    order = {"orderId": f"browser-{time.time_ns()}-{next(_orders)}", "amount": amount}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{origin}/graphql",
            json={"query": PURCHASE, "variables": {"input": {**order, "memberId": member_id}}},
            headers={"Authorization": f"Bearer {demo.printed['admin key']}"},
        )
    payload: dict[str, Any] = response.json()["data"]["recordPurchase"]
    assert payload["userErrors"] == [], payload
    return payload


async def editor(page: Page, selector: str, value: str | None = None) -> str:
    """Set (when given) and read a GraphiQL editor (CodeMirror 5) by CSS selector."""
    text = await page.evaluate(
        """([selector, value]) => {
            const editor = document.querySelector(selector).CodeMirror;
            if (value !== null) editor.setValue(value);
            return editor.getValue();
        }""",
        [selector, value],
    )
    if value is not None:
        await page.wait_for_timeout(300)  # GraphiQL reads its editors 100 ms after a change
    return str(text)


# Waits run the page's own functions: the pages' CSP allows no eval, Playwright's included.
async def response_includes(page: Page, text: str, within_ms: float = 5000) -> None:
    await page.wait_for_function(
        "([selector, text]) => document.querySelector(selector).CodeMirror.getValue()"
        ".includes(text)",
        arg=[RESPONSE, text],
        timeout=within_ms,
    )


async def shows(page: Page, element_id: str, text: str, within_ms: float = 5000) -> None:
    await page.wait_for_function(
        "([id, text]) => document.getElementById(id).textContent.includes(text)",
        arg=[element_id, text],
        timeout=within_ms,
    )


QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
HEADERS_EDITOR = ".graphiql-editor-tool .graphiql-editor:nth-of-type(2) .CodeMirror"
RESPONSE = ".graphiql-response .CodeMirror"


async def test_graphiql_runs_a_query_and_a_subscription_with_the_headers_pane(
    watched: Watched, demo: Demo
) -> None:
    page = watched.page
    token = demo.printed["member token"]
    await page.goto(f"{demo.origin}/graphql")
    await page.wait_for_selector(".graphiql-editors .CodeMirror")

    await page.get_by_role("button", name="Headers").click()
    await editor(page, HEADERS_EDITOR, json.dumps({"Authorization": f"Bearer {token}"}))
    await editor(page, QUERY_EDITOR, "query Me { me { displayName balance { available } } }")
    await page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()
    await response_includes(page, "displayName")
    answer = json.loads(await editor(page, RESPONSE))
    await page.get_by_role("button", name="Show GraphiQL Explorer").click()
    explorer = page.locator(".graphiql-explorer-root")
    await explorer.get_by_text("programTimeline").wait_for()
    await watched.screenshot("graphiql")

    # A subscription authenticates from the same pane (its credential rides in connection_init).
    await editor(page, QUERY_EDITOR, "subscription { pointsUpdated { balance { available } } }")
    await page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()
    await watched.sent_frame('"type":"subscribe"')
    # The server registers the subscription just after that frame: a purchase a moment too
    # early is not streamed (it happened before), so buy again until one is.
    for _ in range(3):
        bought = await purchase(demo.origin, demo, 12.5)
        available = bought["member"]["balance"]["available"]
        try:
            await response_includes(page, str(available), within_ms=2000)
            break
        except PlaywrightTimeout:
            continue
    streamed = json.loads(await editor(page, RESPONSE))

    assert answer["data"]["me"]["displayName"] == demo.printed["member"].split(" (")[0]
    assert streamed["data"]["pointsUpdated"]["balance"]["available"] == available
    assert watched.errors == []
    assert watched.outside == []
    assert any(url.endswith("/graphql") for url in watched.sockets)


async def shown_balance(page: Page) -> int:
    return int((await page.text_content("#available") or "0").replace(",", ""))


async def test_member_page_shows_the_balance_and_follows_purchases_live(
    watched: Watched, demo: Demo
) -> None:
    page = watched.page
    await page.goto(demo.printed["member page"])  # /member#token=...
    await page.wait_for_selector("#live.on")
    await page.wait_for_selector("#leaderboard li")
    before = await shown_balance(page)
    token_in_address = demo.printed["member token"] in page.url

    bought = await purchase(demo.origin, demo, 40)
    answered = time.monotonic()
    expected = bought["member"]["balance"]["available"]
    await shows(page, "available", f"{expected:,}", within_ms=2000)
    seen_after = time.monotonic() - answered
    toast = await page.text_content("#toast")
    flashed = await page.get_attribute("#balance", "class")
    # Redeeming a recommended reward shows its voucher code (or a donation's receipt).
    reward = page.locator("#rewards li", has=page.locator("button:enabled")).first
    await reward.get_by_role("button", name="Redeem").click()
    await page.wait_for_selector("#voucher:not([hidden])")
    await page.wait_for_timeout(500)  # the refresh that follows leaves it be
    voucher = await page.text_content("#voucher")
    await watched.screenshot("member")

    assert before > 0 and expected != before  # (the write may also settle due points)
    assert seen_after < 2.0
    assert bought["transaction"]["description"] in (toast or "")
    assert "flash" in (flashed or "")
    assert re.fullmatch(
        r".+: (your code is [A-Z0-9]{4}(-[A-Z0-9]{4}){3}|thank you! Receipt R-.+)", voucher or ""
    )
    assert not token_in_address  # the page took the token out of the address bar
    assert watched.errors == []


async def test_member_page_catches_up_on_what_it_missed_while_disconnected(
    watched: Watched, demo: Demo
) -> None:
    # Given a member page that has seen one live event (so it holds a cursor) ...
    page = watched.page
    await page.goto(demo.printed["member page"])
    await page.wait_for_selector("#live.on")
    first = await purchase(demo.origin, demo, 5)
    await shows(page, "toast", first["transaction"]["description"])
    # ... when its server goes away, a purchase is made through another process on the same
    # database, and the server comes back ...
    async with serve_beside(demo) as other:
        await asyncio.to_thread(demo.stop)
        await page.wait_for_selector("#live.retrying")
        missed = await purchase(other, demo, 7)
        await asyncio.to_thread(demo.start)
    # ... then the page reconnects with `after:` its cursor and is told of that purchase.
    description = missed["transaction"]["description"]
    await shows(page, "toast", description, within_ms=15000)
    await page.wait_for_selector("#live.on")

    assert await shown_balance(page) == missed["member"]["balance"]["available"]
    # Chromium logs the refused reconnection attempts while the server was down; nothing else.
    refused = "WebSocket connection to 'ws://127.0.0.1"
    assert [e for e in watched.errors if not e.startswith(refused)] == []


async def test_admin_page_draws_its_charts_without_console_errors(
    watched: Watched, demo: Demo
) -> None:
    page = watched.page
    await page.goto(demo.printed["admin page"])  # /admin#key=...
    await page.wait_for_selector('body[data-loaded="30d"]')
    charts = await page.locator(".chart .uplot canvas").count()
    tiers = await page.locator("#tiers tr").count()
    top = await page.locator("#top-rewards tr").count()
    members = await page.text_content("#enrolled")
    await watched.screenshot("admin")

    await page.select_option("#range", "12m")
    await page.wait_for_selector('body[data-loaded="12m"]')
    monthly = await page.locator(".chart .uplot canvas").count()

    assert charts == monthly == 4
    assert tiers >= 3 and top == 5
    assert members == "25"
    assert watched.errors == []
    assert watched.outside == []
