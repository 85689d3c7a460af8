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


def set_production(page: Any, model: str, number: int) -> None:
    page.goto(f"/models/{model}/")
    form = page.locator("#set-alias form")
    form.get_by_label("Alias").fill("production")
    form.get_by_label("Version").select_option(str(number))
    form.get_by_role("button", name="Set alias").click()


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


def revoke_key(page: Any, name: str) -> None:
    page.goto("/keys/")
    row = page.locator("tr", has_text=name)
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator("tr", has_text=name).locator(".status")).to_have_text("revoked")


def start_canary(page: Any, model: str, number: int) -> None:
    page.goto(f"/rollouts/new/{model}/?kind=canary")
    page.get_by_label("Version").select_option(str(number))
    page.get_by_role("button", name="Start canary").click()
    expect(page.get_by_role("heading", name=re.compile(f"Canary #\\d+ of {model}"))).to_be_visible()


def promote(page: Any) -> None:
    # The other helper's confirmation step for promotion lands here once merged.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=re.compile("Promote the canary")).click()
    expect(page.locator(".status").first).to_have_text(re.compile("[Pp]romoted"))


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
