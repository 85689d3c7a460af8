"""One function per step a user takes in the console, so that a changed page (a new
confirmation step, a renamed button) is adapted in one place."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.factories import PASSWORD


def log_in(page: Any, username: str, password: str = PASSWORD) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name=re.compile(f"Log out {username}"))).to_be_visible()


def sign_up(page: Any, username: str, password: str) -> None:
    page.goto("/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password confirmation").fill(password)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("button", name=re.compile(f"Log out {username}"))).to_be_visible()


def upload_version(page: Any, model: str, onnx_file: Path) -> None:
    page.goto(f"/models/{model}/upload/")
    page.get_by_label("ONNX file").set_input_files(str(onnx_file))
    page.get_by_role("button", name="Upload").click()


def wait_until_ready(page: Any, model: str, number: int, timeout_s: float = 60) -> None:
    """The version page until validation (the worker) marks it ready; it fails on `failed`."""
    deadline = time.monotonic() + timeout_s
    while True:
        page.goto(f"/models/{model}/versions/{number}/")
        status = page.locator(".status").first.inner_text().strip().lower()
        assert status != "failed", page.locator("main").inner_text()
        if status == "ready":
            return
        assert time.monotonic() < deadline, f"v{number} of {model} still {status}"
        page.wait_for_timeout(500)


def next_steps(page: Any, model: str, number: int) -> Any:
    """The version page's `#next-steps`, once htmx has swapped the section in for its placeholder
    (the placeholder, a link to the same section as a page, is what a browser without JS keeps)."""
    page.goto(f"/models/{model}/versions/{number}/")
    section = page.locator("#next-steps")
    expect(section).not_to_have_attribute("hx-get", re.compile("."))
    expect(section.get_by_role("heading", name="Next steps")).to_be_visible()
    return section


def set_production(page: Any, model: str, number: int) -> None:
    """The version's next steps: "Make vN production"; the alias moves at once."""
    next_steps(page, model, number).get_by_role("button", name=f"Make v{number} production").click()
    page.wait_for_url(re.compile(f"/models/{model}/$"))
    expect(page.get_by_text(f"Alias 'production' now points at version {number}.")).to_be_visible()


def create_key(page: Any, name: str, models: str = "*") -> str:
    """The keys page's form; returns the secret shown once."""
    page.goto("/keys/")
    form = page.locator("#key-form")
    form.get_by_label("Name").fill(name)
    form.get_by_label(re.compile("Models")).fill(models)
    form.get_by_role("button", name="Create key").click()
    secret = page.locator("#key-secret-value")
    expect(secret).to_be_visible()
    return str(secret.inner_text()).strip()


def revoke_key(page: Any, name: str) -> str:
    """Revoke… on the keys page, accepting the confirmation it asks first; returns its text."""
    page.goto("/keys/")
    row = page.locator("tr", has_text=name)
    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    row.get_by_role("button", name="Revoke…").click()
    expect(page.locator("tr", has_text=name).locator(".status")).to_have_text("revoked")
    assert asked, "revoking did not ask first"
    return asked[0]


def revoke_key_without_js(page: Any, name: str) -> str:
    """The same without JavaScript: Revoke… opens a confirmation page; returns what it says will happen."""
    page.goto("/keys/")
    page.locator("tr", has_text=name).get_by_role("button", name="Revoke…").click()
    expect(page.get_by_role("heading", name=re.compile("Revoke the key"))).to_be_visible()
    effect = str(page.locator("#confirm-effect").inner_text())
    page.get_by_role("button", name="Yes, revoke it now").click()
    page.wait_for_url(re.compile("/keys/$"))
    expect(page.locator("tr", has_text=name).locator(".status")).to_have_text("revoked")
    return effect


def start_canary(page: Any, model: str, number: int) -> int:
    """From the version's next steps to the canary form (vN chosen), started; returns the rollout's id."""
    next_steps(page, model, number).get_by_role("button", name=f"Start a canary of v{number}…").click()
    page.wait_for_url(re.compile(f"/rollouts/new/{model}/\\?kind=canary&version={number}$"))
    expect(page.get_by_label("Version")).to_have_value(str(number))
    page.get_by_role("button", name="Start canary").click()
    page.wait_for_url(re.compile("/rollouts/\\d+/$"))
    expect(page.get_by_text("Canary started. This page follows it live.")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile(f"Canary #\\d+ of {model}"))).to_be_visible()
    return int(re.search(r"/rollouts/(\d+)/$", page.url).group(1))  # type: ignore[union-attr]


def promote(page: Any, rollout: int) -> str:
    """The rollout's "Promote the canary now…", then its confirmation page; returns what that said would happen."""
    actions = page.locator("#rollout-actions")
    expect(actions.get_by_role("button", name="Abort: all traffic back to production…")).to_have_class("danger")
    button = actions.get_by_role("button", name="Promote the canary now…")
    expect(button).to_have_class("primary")
    # The irreversible abort must not look like the primary action beside it.
    abort = actions.get_by_role("button", name="Abort: all traffic back to production…")
    background = "b => getComputedStyle(b).backgroundColor"
    assert abort.evaluate(background) != button.evaluate(background)
    button.click()
    page.wait_for_url(re.compile(f"/rollouts/{rollout}/promote/\\?arm=canary$"))
    effect = str(page.locator("#confirm-effect").inner_text())
    page.get_by_role("button", name="Yes, promote").click()
    page.wait_for_url(re.compile(f"/rollouts/{rollout}/$"))
    return effect


def infer(url: str, model: str, secret: str) -> int:
    """One inference over HTTP, as an application would send it; the status code."""
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0.5, 0.1, 0.2, 0.3]}]}
    request = urllib.request.Request(
        f"{url}/v2/models/{model}/infer",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def production_version(page: Any, model: str) -> str:
    """The version the `production` alias points at, as the model page's alias table says ("v2")."""
    page.goto(f"/models/{model}/")
    row = page.locator("table tr", has=page.locator("td", has_text=re.compile("^production$")))
    return str(row.locator("td").nth(1).inner_text()).strip()
