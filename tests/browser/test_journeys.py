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
    # Now production, its next steps say so and offer neither production nor a canary.
    section = steps.next_steps(page, "brw-browser", number)
    expect(section).to_contain_text(f"v{number} is brw-browser's production version")
    expect(section.get_by_role("button")).to_have_count(0)


def test_sign_up_create_key_infer_revoke(new_page: Any, stack: Any) -> None:
    page = new_page()
    steps.sign_up(page, "newcomer", "a long and new passphrase 42")
    secret = steps.create_key(page, "browser journey", models="brw-*")
    assert steps.infer(stack.url, "brw-browser", secret) == 200
    asked = steps.revoke_key(page, "browser journey")
    assert "Revoke “browser journey”?" in asked, asked
    assert "revoking has no grace period" in asked, asked
    assert refused_soon(stack, secret)


def test_revoke_asks_first_without_javascript(new_page: Any, stack: Any) -> None:
    page = new_page(javascript=False)
    steps.log_in(page, "olga")
    secret = steps.create_key(page, "no script journey", models="brw-*")
    assert steps.infer(stack.url, "brw-browser", secret) == 200
    effect = steps.revoke_key_without_js(page, "no script journey")
    assert effect.startswith("What will happen: Requests with 'no script journey'"), effect
    assert "a revoked key has no grace period" in effect, effect
    assert refused_soon(stack, secret)


def refused_soon(stack: Any, secret: str) -> bool:
    """The gateway refuses a revoked key within a few seconds (its key cache's lifetime)."""
    deadline = time.monotonic() + 5
    while (status := steps.infer(stack.url, "brw-browser", secret)) == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == 401, status
    return True


def test_canary_start_live_page_promote(new_page: Any, stack: Any) -> None:
    page = new_page()
    steps.log_in(page, "olga")
    number = stack.seeded["canary_version"]
    rollout = steps.start_canary(page, "brw-canary", number)
    expect(page.locator(".live-bar")).to_be_visible()
    expect(page.locator("#rollout-live")).to_contain_text("Step 1 of")
    effect = steps.promote(page, rollout)
    assert effect.startswith(f"What will happen: Production moves from v1 to v{number} at once"), effect
    expect(page.locator("#rollout-ended")).to_have_text(
        re.compile(f"^Promoted: v{number} took 100 % of the traffic\\.")
    )
    assert steps.production_version(page, "brw-canary") == f"v{number}"


def test_canary_form_is_safe_by_default(new_page: Any, stack: Any) -> None:
    """brw-wide's only other ready version takes five features where production takes four:
    the form preselects no version, shows that one disabled and says why, even when asked
    for it by number, and the version's next steps offer no rollout of it."""
    page = new_page()
    steps.log_in(page, "olga")
    wide = stack.seeded["wide_version"]
    for path in ("/rollouts/new/brw-wide/?kind=canary", f"/rollouts/new/brw-wide/?kind=canary&version={wide}"):
        page.goto(path)
        picker = page.get_by_label("Version")
        expect(picker).to_have_value("")
        option = picker.locator(f"option[value='{wide}']")
        expect(option).to_be_disabled()
        expect(option).to_have_text(f"v{wide}: its signature does not fit production's, it cannot take traffic")
        listed = page.locator("#incompatible-versions")
        expect(listed).to_be_visible()
        why = (
            f"version {wide} cannot take production's traffic (v1): input 'input' has shape [-1, 5] in v{wide}, [-1, 4]"
        )
        expect(listed.locator("li")).to_have_text([re.compile("^" + re.escape(why))])
    # Submitting anyway starts nothing and names the missing choice.
    page.get_by_role("button", name="Start canary").click()
    expect(page.get_by_role("heading", name="Start a rollout of brw-wide")).to_be_visible()
    expect(page.locator("main")).to_contain_text("This field is required")
    section = steps.next_steps(page, "brw-wide", wide)
    expect(section.locator(".warn")).to_contain_text("it cannot be a canary, a shadow or an experiment arm")
    expect(section.get_by_role("button", name=re.compile("Start a"))).to_have_count(0)
