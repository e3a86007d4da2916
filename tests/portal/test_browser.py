"""The portal in a real browser: Debian's Chromium driven by Playwright, against a
running stack (every role, the simulated carrier, the portal) on free ports of
127.0.0.1. The demo operator logs in, adds a subscriber, uploads a deck with a
bad row and reads the report, watches a sipp call appear in Live calls, hangs it
up from the page, and finds it in CDRs with its cost. Screenshots of the main
pages go to artifacts/portal/ (ignored by git).

Every wait is for a condition, with generous bounds: the box may be loaded.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bench.proxystack import REPO
from sipline.stack import DEMO_OPERATOR
from tests.e2e.stacks import Stack, running_stack
from tests.portal.test_stack import NUMBER, sipp_caller

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
ARTIFACTS = REPO / "artifacts" / "portal"
WAIT_MS = 30_000


@pytest.fixture
def stack(tmp_path: Path, sipp_bin: str) -> Iterator[Stack]:
    with running_stack(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail("chromium is not installed (Debian package chromium); run `make test`",
                    pytrace=False)  # fmt: skip
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Page, base: str) -> None:
    page.goto(f"{base}/login")
    user, password = DEMO_OPERATOR
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/", timeout=WAIT_MS)


# A stack's start, a browser and a call on a loaded box: more than the suite's 120 s may go.
@pytest.mark.timeout(300)
def test_an_operator_works_the_portal_in_a_browser(
    stack: Stack, browser: Browser, sipp_bin: str, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{stack.ports['portal']}"
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.on("dialog", lambda dialog: dialog.accept())
    # The pages run under script-src 'self': whatever the policy blocks fails the test.
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    log_in(page, base)
    # The status wall fills in from the live stream: every role, running.
    expect(page.locator("#nodes tbody tr")).to_have_count(5, timeout=WAIT_MS)
    expect(page.locator("#nodes")).to_contain_text("running")
    shot(page, "dashboard")

    page.goto(f"{base}/subscribers")
    page.fill("#add-subscriber input[name=aor]", "carol@example.com")
    page.fill("#add-subscriber input[name=password]", "carol-pw")
    page.click("#add-subscriber button")
    expect(page.locator("#add-result")).to_have_text("added carol@example.com")
    expect(page.locator("#subscriber-rows")).to_contain_text("carol@example.com")
    shot(page, "subscribers")

    deck = tmp_path / "bad-deck.csv"
    deck.write_text("prefix,rate\n1,0.010\n44,free\n")
    page.goto(f"{base}/carriers")
    row = page.locator("tr[data-carrier=demo-carrier]")
    row.locator("input.deck-file").set_input_files(str(deck))
    row.get_by_role("button", name="Upload deck").click()
    report = row.locator(".deck-report")
    expect(report).to_contain_text("line 3")
    expect(report).to_contain_text("bad-deck.csv")
    expect(row).to_contain_text("9")  # the demo deck's 9 rates stand: nothing was loaded
    shot(page, "carriers-bad-deck")

    command = sipp_caller(stack, sipp_bin, "call_uac_callee_bye.xml")
    sipp = subprocess.Popen(command, cwd=stack.workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        page.goto(f"{base}/calls")
        call = page.locator("#call-rows tr[data-call-id]")
        expect(call).to_have_count(1, timeout=WAIT_MS)  # the page polls every second
        expect(call).to_contain_text(NUMBER)
        expect(call).to_contain_text("demo-carrier")
        shot(page, "live-calls")
        call.get_by_role("button", name="Hang up").click()
        expect(page.locator("#call-rows tr[data-call-id]")).to_have_count(0, timeout=WAIT_MS)
        assert sipp.wait(60) == 0  # the caller got the BYE from the hang-up
    finally:
        if sipp.poll() is None:
            sipp.kill()
            sipp.wait()

    page.goto(f"{base}/billing")
    shot(page, "billing")
    for _ in range(60):  # the CDR reaches the database within a batch (200 ms) or so
        page.goto(f"{base}/cdrs?callee={NUMBER}")
        if page.locator("#cdr-table tbody tr", has_text="demo-carrier").count():
            break
        page.wait_for_timeout(500)
    cdr = page.locator("#cdr-table tbody tr", has_text="demo-carrier")
    expect(cdr).to_contain_text("0.010000")  # a minute at 0.01 (60/60 increments)
    shot(page, "cdrs")
    page.goto(f"{base}/accounts")
    shot(page, "accounts")
    page.goto(f"{base}/audit")
    expect(page.locator("table")).to_contain_text("call_hangup")
    shot(page, "audit")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{base}/login", timeout=WAIT_MS)
    assert blocked == []
    page.close()
