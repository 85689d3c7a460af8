"""Settings come from the environment and refuse unsafe production configurations."""

from __future__ import annotations

import subprocess
import sys
import tempfile

import pytest

from tests.support.processes import ROOT

STRONG_KEY = "k3y-" + "x9Q2mZ7vB4nL8pR1sT6wY3uE5iO0aH" * 2


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "TURNOUT_SKIP_DOTENV": "1", "HOME": tempfile.gettempdir()}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("", "SECRET_KEY is not set"),
        ("short", "SECRET_KEY is too weak"),
        ("a" * 60, "SECRET_KEY is too weak"),
        ("django-insecure-" + "abcdefghij" * 6, "SECRET_KEY is too weak"),
    ],
)
def test_production_refuses_to_start_without_a_strong_secret_key(key: str, expected: str) -> None:
    result = run_manage("check", DEBUG="false", SECRET_KEY=key)

    assert result.returncode != 0
    assert expected in result.stderr
    assert "secrets.token_urlsafe" in result.stderr  # says how to fix it


def test_malformed_boolean_is_a_clear_startup_error() -> None:
    result = run_manage("check", DEBUG="maybe", SECRET_KEY=STRONG_KEY)

    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TURNOUT_TRACING_SAMPLE_RATIO", "1.5", "TURNOUT_TRACING_SAMPLE_RATIO=1.5 must be at most 1.0"),
        ("TURNOUT_TRACING_SAMPLE_RATIO", "nan", "TURNOUT_TRACING_SAMPLE_RATIO='nan' is not a number"),
        ("TURNOUT_TRACING_ENDPOINT", "localhost:4318", "'localhost:4318' is not an http:// or https:// URL"),
    ],
)
def test_a_bad_tracing_setting_is_a_clear_startup_error(variable: str, value: str, expected: str) -> None:
    result = run_manage("check", DEBUG="true", **{variable: value})

    assert result.returncode != 0
    assert expected in result.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"REDIS_URL": "redis+sentinel://s1:26379"}, "REDIS_URL: a redis+sentinel:// URL ends with the primary's name"),
        ({"REDIS_SENTINELS": "s1:26379"}, "REDIS_SENTINEL_MASTER must name the primary"),
        ({"REDIS_CLUSTER": "yes please"}, "REDIS_CLUSTER='yes please' is not a boolean"),
        ({"REDIS_URL": "redis+cluster://n1:7000"}, "Celery's broker: REDIS_URL is a Redis Cluster"),
    ],
)
def test_an_unusable_redis_setting_is_a_clear_startup_error(env: dict[str, str], expected: str) -> None:
    result = run_manage("check", DEBUG="true", **env)

    assert result.returncode != 0
    assert expected in result.stderr


def test_a_cluster_with_its_own_celery_broker_starts() -> None:
    code = "from django.conf import settings; print('target', settings.REDIS_TARGET.mode, settings.CELERY_BROKER_URL)"
    env = {"REDIS_URL": "redis+cluster://n1:7000,n2:7001", "CELERY_BROKER_URL": "redis://broker:6379/0"}
    result = run_manage("shell", "-c", code, DEBUG="true", **env)

    assert result.returncode == 0, result.stderr
    assert "target cluster redis://broker:6379/0" in result.stdout


def test_non_postgres_database_url_is_refused() -> None:
    result = run_manage("check", DEBUG="false", SECRET_KEY=STRONG_KEY, DATABASE_URL="sqlite:///tmp/x.db")

    assert result.returncode != 0
    assert "DATABASE_URL must point at PostgreSQL" in result.stderr


def test_deploy_checks_pass_with_production_defaults() -> None:
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="false", SECRET_KEY=STRONG_KEY)

    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout
