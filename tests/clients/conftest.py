"""Fixtures for the `turnout` command: the real installed entry point, run as a subprocess
against a real server. Here that server is pytest-django's `live_server` (Django's
management API in a thread of the test process, on the test database); the tests in
tests/integration/test_cli_ci_recipe.py run it against a whole stack (web, worker, beat).

`owner_key` is a key of the `owner` persona (olga, a maintainer: she creates models and
steers their rollouts) with every action on every model, as a CI job would hold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from accounts import services

TURNOUT = Path(sys.executable).parent / "turnout"


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_turnout(args: list[str], env: dict[str, str], timeout: float = 60, stdin: str | None = None) -> Ran:
    done = subprocess.run(
        [str(TURNOUT), *args], env=env, capture_output=True, text=True, timeout=timeout, input=stdin, check=False
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def cli_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """A clean environment: no TURNOUT_* of the developer's, no profile file unless a test writes one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
    env.update({"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"), "NO_COLOR": "1"})
    env.update(values)
    return env


@pytest.fixture
def owner_key(owner: Any) -> str:
    _, secret = services.create_key(owner, name="ci", model_patterns=["*"], actions=["manage", "read", "infer"])
    return secret


@pytest.fixture
def turnout(live_server: Any, owner_key: str, tmp_path: Path) -> Callable[..., Ran]:
    """Runs `turnout ARGS...` as the owner's CI job would: TURNOUT_URL and TURNOUT_API_KEY set."""
    env = cli_env(tmp_path, TURNOUT_URL=live_server.url, TURNOUT_API_KEY=owner_key)

    def run(*args: str, timeout: float = 60, stdin: str | None = None, **extra_env: str) -> Ran:
        return run_turnout(list(args), {**env, **extra_env}, timeout=timeout, stdin=stdin)

    return run
