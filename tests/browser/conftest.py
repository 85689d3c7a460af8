"""The browser suite: Playwright for Python driving Debian's Chromium against one live
stack per session (a real uvicorn web process and a real Celery worker, as
tests/integration starts them), with committed data seeded once.

Every test here carries the `integration` marker (and `browser`): `make test` runs them
in its second, process-starting pass. Without Chromium at CHROMIUM_PATH the tests
skip with the reason; CI sets TURNOUT_BROWSER_REQUIRED=1 (.ci/run), which turns that
skip into a failure, so a CI machine without the browser cannot pass quietly.

`--screenshots DIR` (see test_pages.py) writes the main pages' screenshots there:
`.venv/bin/pytest tests/browser -k screenshots --screenshots docs/screenshots`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from playwright.sync_api import sync_playwright

from tests.browser import checks
from tests.browser.seed import seed
from tests.support.processes import WebProcess, WorkerProcess, wait_for
from tests.support.serving import committed_registry, require_test_database, worker_queue

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
HERE = Path(__file__).parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots", default=None, metavar="DIR", help="write the main pages' screenshots to DIR (tests/browser)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.browser)
            # The test database; the stack's rows are committed once (committed_registry).
            item.add_marker(pytest.mark.django_db)


def chromium_or_skip() -> str:
    if os.path.exists(CHROMIUM_PATH) or shutil.which(CHROMIUM_PATH):
        return CHROMIUM_PATH
    reason = (
        f"no Chromium at {CHROMIUM_PATH}: install Debian's (`apt-get install -y chromium`) "
        "or point CHROMIUM_PATH at one; Playwright never downloads a browser here"
    )
    if os.environ.get("TURNOUT_BROWSER_REQUIRED", "") not in ("", "0"):
        pytest.fail(f"TURNOUT_BROWSER_REQUIRED is set and {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class Stack:
    """The live stack: its URL, the seeded names, and a way to read its processes' logs."""

    web: WebProcess
    worker: WorkerProcess
    artifacts: Path
    seeded: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.web.url

    def logs(self) -> str:
        return f"--- web\n{self.web.log()[-4000:]}\n--- worker\n{self.worker.log()[-4000:]}"


def browser_queue() -> str:
    # Neither tests/integration's queue nor its `inf-*` models: its workers never take
    # this stack's tasks or requests, nor this stack's worker theirs.
    return f"{worker_queue()}-browser"


@pytest.fixture(scope="package")
def stack(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    chromium_or_skip()
    artifacts = tmp_path_factory.mktemp("browser-artifacts")
    logs = tmp_path_factory.mktemp("browser-logs")
    with committed_registry(django_db_blocker, artifacts) as registry:
        require_test_database()
        # The web process enqueues validation where the worker listens, so an upload in
        # the browser is validated for real; the worker serves every `brw-*` model.
        env = {"ARTIFACT_ROOT": str(artifacts), "CELERY_TASK_DEFAULT_QUEUE": browser_queue()}
        worker = WorkerProcess("browser", logs / "worker.log", browser_queue(), TURNOUT_WORKER_MODELS="brw-*", **env)
        web = WebProcess(logs / "web.log", TURNOUT_SIGNUP_OPEN="true", WEB_CONCURRENCY="1", **env)
        live = Stack(web=web, worker=worker, artifacts=artifacts)
        try:
            assert wait_for(lambda: " ready." in worker.log(), timeout=60), live.logs()
            assert web.wait_ready(60), live.logs()
            with django_db_blocker.unblock():
                live.seeded = seed(registry, live)
            yield live
        finally:
            web.stop()
            worker.stop()


@pytest.fixture(scope="package")
def browser(stack: Stack) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        # Playwright's sync API keeps an asyncio loop on the test thread (driven by
        # greenlets, never running our code), which Django's async-safety check
        # mistakes for async code calling the ORM. Only for this package's tests.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
        launched = playwright.chromium.launch(executable_path=chromium_or_skip(), args=["--no-sandbox"])
        yield launched
        launched.close()
        # While that loop runs, Django keeps this thread's connections in a context of
        # their own (asgiref's Local): the tests' one must be closed here, or it would
        # keep the test database from being dropped.
        connections.close_all()


@pytest.fixture
def new_page(browser: Any, stack: Stack) -> Iterator[Any]:
    """Opens pages (`new_page(width=1440, color_scheme="light", javascript=True)`) that record
    console errors; the test fails on any at the end."""
    contexts: list[Any] = []
    errors: list[str] = []

    def make(width: int = 1440, height: int = 900, color_scheme: str = "light", javascript: bool = True) -> Any:
        context = browser.new_context(
            base_url=stack.url,
            viewport={"width": width, "height": height},
            color_scheme=color_scheme,
            java_script_enabled=javascript,
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        checks.record_console_errors(page, errors)
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, "console errors:\n" + "\n".join(errors)
