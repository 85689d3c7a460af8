"""The console's main journeys in a real browser, against the live stack."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser import steps
from tests.support.rollout_models import champion_model


def test_login_shows_the_overview_with_percentiles(new_page: Any, stack: Any) -> None:
    page = new_page()
    steps.log_in(page, "olga")
    page.goto("/")
    row = page.locator("#overview tbody tr", has_text="brw-browser")
    expect(row).to_be_visible()
    # Requests, requests/s, errors, fallbacks, then p50, p95, p99: numbers, not dashes.
    cells = row.locator("td.num")
    for index in (4, 5, 6):
        expect(cells.nth(index)).to_have_text(re.compile(r"^\d+\.\d\d$"))
    expect(row.locator("[data-chart=spark] canvas")).to_have_count(1)


def test_live_overview_keeps_focus_and_pauses(new_page: Any, stack: Any) -> None:
    page = new_page()
    steps.log_in(page, "olga")
    page.goto("/")
    link = page.locator("#overview tbody a", has_text="brw-browser")
    link.focus()
    canvas = page.locator("#overview [data-chart=spark] canvas").first
    canvas.evaluate("c => { c.dataset.marker = 'first'; }")
    status = page.locator(".live-bar .live-status")
    before = status.inner_text()
    # The next poll (every 5 s) morphs the table in place: same link focused, same chart.
    expect(status).not_to_have_text(before, timeout=12_000)
    expect(status).to_have_text(re.compile(r"Updated at \d\d:\d\d:\d\d \(UTC\)"))
    assert page.evaluate("document.activeElement.textContent") == "brw-browser"
    assert canvas.evaluate("c => c.isConnected && c.dataset.marker") == "first"
    # The model page's charts are updated in place too, not drawn anew.
    page.goto("/dashboard/models/brw-ab/")
    chart = page.locator("#compare-versions-p95 canvas")
    chart.evaluate("c => { c.dataset.marker = 'first'; }")
    page.locator("#compare-versions-p95 .u-over").hover()  # the cursor (crosshair, legend values) follows the mouse
    cursor = page.locator("#compare-versions-p95 .u-cursor-x")
    expect(cursor).not_to_have_class(re.compile("u-off"))
    before = status.inner_text()
    expect(status).not_to_have_text(before, timeout=12_000)
    assert chart.evaluate("c => c.isConnected && c.dataset.marker") == "first"
    expect(cursor).not_to_have_class(re.compile("u-off"))
    page.get_by_role("button", name="Pause updates").click()
    expect(page.get_by_role("button", name="Resume updates")).to_have_attribute("aria-pressed", "true")
    paused_at = status.inner_text()
    page.wait_for_timeout(6_000)
    expect(status).to_have_text(paused_at)


def test_upload_validation_and_set_production(new_page: Any, stack: Any, tmp_path: Path) -> None:
    page = new_page()
    steps.log_in(page, "olga")
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(champion_model(seed=11))
    steps.upload_version(page, "brw-browser", onnx_file)
    page.wait_for_url(re.compile(r"/models/brw-browser/versions/\d+/"))
    number = int(re.search(r"/versions/(\d+)/", page.url).group(1))  # type: ignore[union-attr]
    steps.wait_until_ready(page, "brw-browser", number)
    steps.set_production(page, "brw-browser", number)
    assert steps.production_version(page, "brw-browser") == f"v{number}"


def test_sign_up_create_key_infer_revoke(new_page: Any, stack: Any) -> None:
    page = new_page()
    steps.sign_up(page, "newcomer", "a long and new passphrase 42")
    secret = steps.create_key(page, "browser journey", models="brw-*")
    assert steps.infer(stack.url, "brw-browser", secret) == 200
    steps.revoke_key(page, "browser journey")
    deadline = time.monotonic() + 5
    while (status := steps.infer(stack.url, "brw-browser", secret)) == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == 401, status


def test_canary_start_live_page_promote(new_page: Any, stack: Any) -> None:
    page = new_page()
    steps.log_in(page, "olga")
    number = stack.seeded["canary_version"]
    steps.start_canary(page, "brw-canary", number)
    expect(page.locator(".live-bar")).to_be_visible()
    expect(page.locator("#rollout-live")).to_contain_text("Step 1 of")
    steps.promote(page)
    assert steps.production_version(page, "brw-canary") == f"v{number}"
