"""Requests whose queue vanished get 503 with Retry-After at once, not a 504 at their deadline.

A Redis that restarts without persistence (or is flushed, or loses a stream)
loses the requests waiting on its streams: no worker will ever answer them. The
gateway notices that its waiting requests' entries are gone and answers them 503
with `Retry-After`, within a couple of seconds rather than at their deadline.

A private redis-server on its own port is restarted for real; no worker serves the
model, so the request would otherwise wait until its deadline.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from controlplane.redis_client import redis_keys
from dataplane.priority import NORMAL
from registry.demo_models import build_mlp
from tests.conftest import _gateway_client
from tests.support.asgi import AsgiResponse
from tests.support.processes import free_port, wait_for
from tests.support.serving import Registry
from tests.support.v2 import Gateway, tensor

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


DEADLINE_S = 8.0
BODY = {
    "inputs": [tensor("input", "FP32", np.ones((1, 4), dtype=np.float32))],
    "parameters": {"timeout": int(DEADLINE_S * 1_000_000)},
}


class PrivateRedis:
    """A redis-server without persistence on its own port, started and restarted by the test."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.client = redis.Redis(port=self.port, socket_timeout=2)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen([*args, "--dir", str(self.directory)], stdout=subprocess.DEVNULL)
        assert wait_for(self._answers, timeout=10), "the private redis-server did not start"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.client.close()
    server.stop()


@pytest.fixture
def gateway(private_redis: PrivateRedis, settings: Any) -> Iterator[Gateway]:
    """An in-process gateway whose requests and replies go through the private Redis."""
    settings.REDIS_URL = private_redis.url
    for client in _gateway_client(require_key=False):
        yield Gateway(client, client.gateway)  # type: ignore[attr-defined]


def waiting_request(gateway: Gateway, private_redis: PrivateRedis, stream: str) -> asyncio.Task[AsgiResponse]:
    """An inference request, started on the gateway's loop and left waiting on its stream."""

    async def start() -> asyncio.Task[AsgiResponse]:
        task = asyncio.ensure_future(gateway.ainfer("unserved-lost", BODY))
        for _ in range(500):
            if private_redis.client.xlen(stream) == 1:
                return task
            await asyncio.sleep(0.01)
        raise AssertionError(f"the request was not queued: {await task}")

    return gateway.client.loop.run_until_complete(start())


def answer_of(gateway: Gateway, task: asyncio.Task[AsgiResponse]) -> tuple[AsgiResponse, float]:
    started = time.monotonic()
    response = gateway.client.loop.run_until_complete(task)
    return response, time.monotonic() - started


def test_a_request_lost_in_a_redis_restart_gets_503_with_retry_after_at_once(
    registry: Registry, private_redis: PrivateRedis, gateway: Gateway
) -> None:
    version = registry.add("unserved-lost", build_mlp(4, [8], 2))
    stream = redis_keys().request_stream(version.id, NORMAL)
    task = waiting_request(gateway, private_redis, stream)

    private_redis.restart()  # without persistence: the stream and its request are gone
    response, waited = answer_of(gateway, task)

    assert response.status == 503, response.body
    assert waited < 4, f"answered {waited:.1f} s after the restart; the deadline was {DEADLINE_S} s"
    assert int(response.headers["retry-after"]) >= 1
    assert "lost" in response.json()["error"]
    # The gateway goes on: the next request is queued on the new Redis.
    later = waiting_request(gateway, private_redis, stream)
    later.cancel()


def test_a_request_whose_stream_was_deleted_gets_503_at_once(
    registry: Registry, private_redis: PrivateRedis, gateway: Gateway
) -> None:
    version = registry.add("unserved-lost", build_mlp(4, [8], 2))
    stream = redis_keys().request_stream(version.id, NORMAL)
    task = waiting_request(gateway, private_redis, stream)

    private_redis.client.delete(stream)
    response, waited = answer_of(gateway, task)

    assert response.status == 503, response.body
    assert waited < 4
    assert private_redis.client.exists(stream) == 0
