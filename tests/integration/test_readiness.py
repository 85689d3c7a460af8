"""`/v2/health/ready` with a real worker: its heartbeat makes the gateway ready, and a clean
stop unreadies it."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.support.asgi import AsgiClient
from tests.support.processes import WorkerProcess, wait_for
from tests.support.v2 import ready_status

pytestmark = pytest.mark.django_db


@pytest.mark.integration
def test_a_real_worker_makes_it_ready_and_a_clean_stop_unreadies_it(
    gateway_client: AsgiClient, redis_client: redis.Redis, tmp_path: Path
) -> None:
    worker = WorkerProcess("readiness", tmp_path / "worker.log")
    try:
        assert wait_for(lambda: ready_status(gateway_client)[0] == 200, timeout=30), worker.log()
        assert worker.stop() == 0
        status, body = ready_status(gateway_client)
        assert status == 503
        assert body["down"] == ["workers"]
    finally:
        worker.stop()
