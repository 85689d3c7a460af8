"""Every page of the console on a phone (390 px) and a desktop (1440 px), light and dark:
no clipped table or element, no console error, no axe-core violation (WCAG 2.1 A/AA:
labels, focus, contrast)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser import checks, steps


def signed_in_pages(stack: Any) -> list[str]:
    experiment = stack.seeded["experiment"]
    wide = stack.seeded["wide_version"]
    return [
        "/",
        "/dashboard/models/brw-ab/",
        "/dashboard/workers/",
        "/models/",
        "/models/brw-ab/",
        "/models/brw-ab/versions/1/",
        "/models/brw-ab/upload/",
        "/rollouts/",
        f"/rollouts/{experiment}/",
        "/rollouts/new/brw-ab/?kind=canary",
        "/audit/",
        "/audit/?model=brw-ab&action=rollout.started&since=2020-01-01",
        "/keys/",
        # The console's safety defaults and next steps: a version's next steps (loaded into its
        # page, and as a page of their own), an incompatible version's, the canary form that
        # marks it, and every confirmation page.
        "/models/brw-next/versions/2/",
        "/rollouts/models/brw-next/versions/2/next/",
        f"/models/brw-wide/versions/{wide}/",
        "/rollouts/new/brw-wide/?kind=canary",
        f"/rollouts/{experiment}/promote/?arm=b",
        f"/rollouts/{experiment}/stop/",
        f"/rollouts/{experiment}/abort/",
        "/models/brw-next/versions/2/archive/",
        REVOKE_CONFIRMATION,
    ]


# Revoking asks with a POST (no GET page): the keys page's form, sent without htmx.
REVOKE_CONFIRMATION = "/keys/ (Revoke… without JS)"


ANONYMOUS_PAGES = ["/login/", "/signup/", "/password-reset/"]


def visit(page: Any, path: str) -> None:
    if path == REVOKE_CONFIRMATION:
        page.goto("/keys/", wait_until="load")
        # form.submit() skips the submit event, so htmx neither asks nor adds `confirm=yes`:
        # what a browser without JS sends, which is answered with the confirmation page.
        with page.expect_navigation():
            page.evaluate("() => document.querySelector('form[action$=\"/revoke/\"]').submit()")
        expect(page.locator("#confirm-effect")).to_contain_text("no grace period")
    else:
        page.goto(path, wait_until="load")
    # charts.js and live.js run on DOMContentLoaded; a frame later tables are measured.
    page.wait_for_function("window.TurnoutLive !== undefined")
    page.evaluate("() => { window.TurnoutLive.enhance(); }")
    # Sections htmx swaps in for a placeholder on `load` (a version's next steps) are checked once in.
    page.wait_for_function("document.querySelector('[hx-trigger=load][hx-swap=outerHTML]') === null")


@pytest.mark.parametrize(
    ("width", "color_scheme"),
    [(1440, "light"), (390, "light"), (1440, "dark"), (390, "dark")],
    ids=["desktop-light", "phone-light", "desktop-dark", "phone-dark"],
)
def test_every_page_fits_and_passes_axe(new_page: Any, stack: Any, width: int, color_scheme: str) -> None:
    problems: list[str] = []
    anonymous = new_page(width=width, color_scheme=color_scheme)
    for path in ANONYMOUS_PAGES:
        visit(anonymous, path)
        problems += [f"{path}: {p}" for p in checks.layout_problems(anonymous)]
        problems += [f"{path}: {p}" for p in checks.accessibility_violations(anonymous)]
    page = new_page(width=width, color_scheme=color_scheme)
    steps.log_in(page, "ada")
    for path in signed_in_pages(stack):
        visit(page, path)
        problems += [f"{path}: {p}" for p in checks.layout_problems(page)]
        problems += [f"{path}: {p}" for p in checks.accessibility_violations(page)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("width", [390, 1440])
def test_key_actions_are_on_screen(new_page: Any, stack: Any, width: int) -> None:
    page = new_page(width=width)
    steps.log_in(page, "ada")
    visit(page, "/keys/")
    for name in ("Rotate", "Revoke"):
        box = page.get_by_role("button", name=name).bounding_box()
        assert box is not None
        assert box["x"] >= 0, (name, box)
        assert box["x"] + box["width"] <= width, (name, box)


def test_charts_draw_sparse_data_on_one_scale_in_utc(new_page: Any, stack: Any) -> None:
    page = new_page()
    steps.log_in(page, "ada")
    visit(page, "/dashboard/models/brw-ab/")
    chart = page.locator("#compare-versions-p95")
    # One chart, both versions on it, with points drawn for the few minutes of traffic.
    assert chart.locator("canvas").count() == 1
    labels = chart.locator(".u-legend .u-series .u-label").all_inner_texts()
    assert labels[0] == "time (UTC)", labels
    assert set(labels[1:]) == {"v1", "v2"}, labels
    visit(page, f"/rollouts/{stack.seeded['experiment']}/")
    arms = page.locator("#arm-compare-p95 .u-legend .u-series .u-label").all_inner_texts()
    assert set(arms[1:]) == {"a", "b"}, arms


def test_screenshots(new_page: Any, stack: Any, request: pytest.FixtureRequest) -> None:
    """`--screenshots DIR` refreshes docs/screenshots: light theme at 1440 px (a version with its next
    steps, a confirmation, the canary form marking an incompatible version among them), the overview
    at 390 px, and the model page in the dark theme."""
    # Registered by tests/browser/conftest.py, which a run from the root may load too late for options.
    folder = request.config.getoption("--screenshots", default=None)
    if not folder:
        pytest.skip("pass --screenshots DIR to write the screenshots")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    shots = {
        "overview": "/",
        "model": "/dashboard/models/brw-ab/",
        "rollout-live": f"/rollouts/{stack.seeded['experiment']}/",
        "keys": "/keys/",
        "audit": "/audit/",
        "version": "/models/brw-next/versions/2/",
        "confirm-promote": f"/rollouts/{stack.seeded['experiment']}/promote/?arm=b",
        "canary-new-incompatible": "/rollouts/new/brw-wide/?kind=canary",
    }
    page = new_page(width=1440)
    steps.log_in(page, "ada")
    for name, path in shots.items():
        visit(page, path)
        page.screenshot(path=str(out / f"{name}.png"), full_page=True)
    phone = new_page(width=390, height=844)
    steps.log_in(phone, "ada")
    visit(phone, "/")
    phone.screenshot(path=str(out / "overview-390.png"), full_page=True)
    dark = new_page(width=1440, color_scheme="dark")
    steps.log_in(dark, "ada")
    visit(dark, "/dashboard/models/brw-ab/")
    dark.screenshot(path=str(out / "model-dark.png"), full_page=True)
