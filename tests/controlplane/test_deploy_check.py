"""The `.env` that `make setup` writes for the quick start turns into a deployable one by
turning DEBUG off: `manage.py check --deploy` then passes without a single warning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[key.strip()] = value
    return values


def check_deploy(values: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in values and not k.startswith(("SECURE_", "SESSION_", "CSRF_"))
    }
    env.update(values, TURNOUT_SKIP_DOTENV="1")
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_quick_start_env_with_debug_off_passes_the_deploy_check(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    subprocess.run(
        [sys.executable, "deploy/make_env.py", ".env.example", str(target)], cwd=ROOT, check=True, timeout=60
    )
    values = env_file(target)
    assert values["DEBUG"] == "true"

    result = check_deploy({**values, "DEBUG": "false"})

    assert result.returncode == 0, result.stdout + result.stderr
    assert "identified no issues" in result.stdout


def test_the_quick_start_env_keeps_plain_http_while_debug_is_on(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    subprocess.run(
        [sys.executable, "deploy/make_env.py", ".env.example", str(target)], cwd=ROOT, check=True, timeout=60
    )
    values = env_file(target)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'controlplane.settings'); "
            "django.setup(); from django.conf import settings as s; "
            "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS)",
        ],
        cwd=ROOT,
        env={**os.environ, **values, "TURNOUT_SKIP_DOTENV": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["False", "False", "False", "0"]
