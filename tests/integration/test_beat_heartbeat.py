"""Beat is a single process with a liveness signal: a real `celery beat` writes a heartbeat
that readiness and the dashboard's services panel show, and a silent beat shows as down
(without taking the web processes out of service)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.test import Client

from controlplane.redis_client import redis_keys
from tests.support.asgi import AsgiClient
from tests.support.processes import ROOT, process_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

BEAT = [sys.executable, "-m", "celery", "-A", "controlplane", "beat", "--loglevel", "INFO"]


@pytest.fixture
def beat(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    from controlplane.celery import app

    log = (tmp_path / "beat.log").open("wb")
    process = subprocess.Popen(
        [*BEAT, "--schedule", str(tmp_path / "celerybeat-schedule")],
        cwd=ROOT,
        # Its periodic tasks go to this run's own queue, which no worker here consumes.
        env=process_env(
            CELERY_TASK_DEFAULT_QUEUE=str(app.conf.task_default_queue), TURNOUT_BEAT_HEARTBEAT_SECONDS="0.2"
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    log.close()


def readiness(client: AsgiClient) -> dict[str, Any]:
    response = client.request("GET", "/v2/health/ready")
    return dict(json.loads(response.body))


def test_a_running_beat_shows_in_readiness_and_on_the_dashboard(
    beat: subprocess.Popen[bytes], redis_client: redis.Redis, gateway_client: AsgiClient, admin: Any
) -> None:
    assert wait_for(lambda: redis_client.exists(redis_keys().beat()) == 1, timeout=30), "beat sent no heartbeat"

    report = readiness(gateway_client)["checks"]["beat"]
    page = Client()
    page.force_login(admin)
    panel = page.get("/health/", headers={"HX-Request": "true"}).content.decode()  # the overview polls it

    assert report["ok"] is True
    assert report["required"] is False
    assert report["pid"] == beat.pid
    assert '<td>Beat</td><td class="ok">up</td>' in panel


def test_a_silent_beat_shows_as_down_but_does_not_make_the_web_unready(
    beat: subprocess.Popen[bytes], redis_client: redis.Redis, gateway_client: AsgiClient, admin: Any, settings: Any
) -> None:
    assert wait_for(lambda: redis_client.exists(redis_keys().beat()) == 1, timeout=30)
    os.killpg(beat.pid, signal.SIGKILL)
    beat.wait(10)
    settings.TURNOUT = {**settings.TURNOUT, "BEAT_TTL_SECONDS": 0.5}
    heartbeat = json.loads(redis_client.get(redis_keys().beat()) or b"{}")
    assert wait_for(lambda: time.time() - heartbeat["heartbeat_at"] > 0.6, timeout=5)

    report = readiness(gateway_client)
    page = Client()
    page.force_login(admin)
    panel = page.get("/health/", headers={"HX-Request": "true"}).content.decode()  # the overview polls it

    assert report["checks"]["beat"]["ok"] is False
    assert "canary analysis and rollups are stopped" in report["checks"]["beat"]["error"]
    assert "beat" not in report.get("down", [])  # beat never decides readiness on its own
    assert '<td>Beat</td><td class="bad">down</td>' in panel


def test_no_heartbeat_at_all_says_how_to_start_beat(redis_client: redis.Redis, gateway_client: AsgiClient) -> None:
    report = readiness(gateway_client)["checks"]["beat"]

    assert report["ok"] is False
    assert "celery -A controlplane beat" in report["error"]
