"""A worker's heartbeat thread (workers/bootsteps.py) goes on whatever describing the worker hits:
a heartbeat that stopped would make every gateway count a serving worker dead. Real Redis."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from controlplane.redis_client import redis_keys
from dataplane.liveness import alive_workers
from workers import bootsteps, serving


class Unsettled:
    """A Serving whose description fails, as iterating a dict another thread changes can."""

    def __init__(self) -> None:
        self.calls = 0

    def describe(self) -> dict[str, Any]:
        self.calls += 1
        raise RuntimeError("dictionary changed size during iteration")


@pytest.fixture
def fast_heartbeat(settings: Any) -> None:
    settings.TURNOUT = {**settings.TURNOUT, "WORKER_HEARTBEAT_SECONDS": 0.05}


def test_the_heartbeat_goes_on_when_describing_the_worker_fails(
    fast_heartbeat: None, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    unsettled = Unsettled()
    monkeypatch.setattr(serving, "current", unsettled)
    step = bootsteps.HeartbeatStep(SimpleNamespace(steps=[]))
    name = "worker@heartbeat-test"
    step.start(SimpleNamespace(hostname=name))
    try:
        deadline = time.monotonic() + 10
        while unsettled.calls < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert unsettled.calls >= 3, "the heartbeat thread stopped after a failed description"
        keys = redis_keys()
        assert name in alive_workers(redis_client, keys, 5.0)
        info = json.loads(redis_client.get(keys.worker_info(name)) or "{}")
        assert set(info) == {"pid", "host", "heartbeat_at"}
    finally:
        step.stop(SimpleNamespace(hostname=name))
    assert name not in alive_workers(redis_client, redis_keys(), 5.0)
