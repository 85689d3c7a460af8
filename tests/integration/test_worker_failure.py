"""A worker killed with SIGKILL in the middle of a burst: every request still gets
exactly one answer before its deadline, and the surviving worker answers the
requests the dead one had read but not answered."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import redis
from django.conf import settings

from controlplane.redis_client import redis_keys
from dataplane.priority import NORMAL
from dataplane.scripts import GROUP
from registry.demo_models import build_mlp_large
from tests.support.processes import wait_for
from tests.support.serving import Registry, Workers, start_workers
from tests.support.v2 import Gateway, binary_request, exchange, infer_path, split_binary_response

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

REQUESTS = 200
DEADLINE_S = 8.0
RECLAIM_IDLE_MS = 500


@pytest.fixture
def two_workers(django_db_setup: Any, artifact_dir: Path, tmp_path: Path) -> Iterator[Workers]:
    workers = start_workers(
        ["inf-victim", "inf-survivor"], tmp_path, artifact_dir, TURNOUT_WORKER_RECLAIM_IDLE_MS=str(RECLAIM_IDLE_MS)
    )
    yield workers
    workers.stop()


def pending_by_consumer(redis_conn: redis.Redis, stream: str) -> dict[str, int]:
    summary: Any = redis_conn.xpending(stream, GROUP)
    return {
        (c["name"].decode() if isinstance(c["name"], bytes) else c["name"]): int(c["pending"])
        for c in summary["consumers"] or []
    }


class Killer(threading.Thread):
    """SIGKILLs the victim at a moment it holds requests it has read but not answered.

    It freezes the victim (SIGSTOP) before checking, so what it holds cannot
    change between the check and the kill.
    """

    def __init__(self, victim: Any, consumer_prefix: str, stream: str) -> None:
        super().__init__(daemon=True)
        self.victim = victim
        self.prefix = consumer_prefix
        self.stream = stream
        self.consumer = ""
        self.held_at_kill = 0
        self.error = ""

    def held(self, client: redis.Redis) -> tuple[str, int]:
        for name, count in pending_by_consumer(client, self.stream).items():
            if name.startswith(self.prefix):
                return name, count
        return "", 0

    def run(self) -> None:
        client = redis.Redis.from_url(settings.REDIS_URL)
        group = self.victim.process.pid
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if self.held(client)[1]:
                    os.killpg(group, signal.SIGSTOP)
                    time.sleep(0.005)  # commands already on the wire land first
                    if self.held(client)[1]:
                        os.killpg(group, signal.SIGKILL)
                        self.victim.process.wait(5)
                        # Dead now: what it holds stays put until the survivor claims it.
                        self.consumer, self.held_at_kill = self.held(client)
                        return
                    os.killpg(group, signal.SIGCONT)
                time.sleep(0.002)
            self.error = "the victim never held a request"
        finally:
            client.close()


def test_a_killed_workers_requests_are_answered_by_the_survivor(
    registry: Registry, two_workers: Workers, gateway: Gateway, redis_conn: redis.Redis
) -> None:
    onnx_bytes = build_mlp_large()
    # Small batches: more of them, so the victim holds requests for most of the burst.
    version = registry.add("inf-large", onnx_bytes, max_batch_size=8)
    providers = gateway.wait_loaded("inf-large", version.number, two_workers)
    assert len(providers) == 2, providers
    stream = redis_keys().request_stream(version.id, NORMAL)
    victim, survivor = two_workers.processes
    features = np.random.default_rng(0).standard_normal((REQUESTS, 512)).astype(np.float32)
    [expected] = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"]).run(None, {"input": features})
    app = gateway.client.app

    async def one(row: int) -> tuple[Any, int, float]:
        header = {
            "id": str(row),
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": [1, 512], "parameters": {"binary_data_size": 2048}}
            ],
            "parameters": {"timeout": int(DEADLINE_S * 1_000_000), "binary_data_output": True},
        }
        body, headers = binary_request(header, [features[row].tobytes()])
        started = time.monotonic()
        response, starts = await exchange(app, "POST", infer_path("inf-large"), body, headers)
        return response, starts, time.monotonic() - started

    async def burst() -> list[Any]:
        killer.start()
        return list(await asyncio.gather(*[one(row) for row in range(REQUESTS)], return_exceptions=True))

    killer = Killer(victim, "inf-victim@", stream)
    results = gateway.client.loop.run_until_complete(burst())
    killer.join(10)

    assert not killer.error, f"{killer.error}\n{two_workers.log()}"
    assert victim.process.returncode == -signal.SIGKILL
    assert killer.held_at_kill > 0, "the kill landed when the victim held nothing; the test proves nothing"
    # Every request: no exception, exactly one response, no later than its deadline + 1 s.
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert [starts for _, starts, _ in results] == [1] * REQUESTS
    slowest = max(elapsed for _, _, elapsed in results)
    assert slowest <= DEADLINE_S + 1, slowest
    statuses = [response.status for response, _, _ in results]
    assert set(statuses) <= {200, 503, 504}, statuses
    assert statuses.count(200) >= 0.95 * REQUESTS, statuses
    for row, (response, _, _) in enumerate(results):
        if response.status == 200:
            head, blobs = split_binary_response(response)
            assert head["id"] == str(row)
            assert np.allclose(np.frombuffer(blobs["output"], dtype="<f4"), expected[row], rtol=1e-4, atol=1e-4)
        else:
            assert set(response.json()) == {"error"}
    # The survivor took the dead worker's requests over: none is left pending on
    # it, the stream is empty, and the survivor says so.
    assert wait_for(lambda: pending_by_consumer(redis_conn, stream).get(killer.consumer, 0) == 0, timeout=5)
    assert redis_conn.xlen(stream) == 0
    taken = sum(int(n) for n in re.findall(r"took over (\d+) unanswered request", survivor.log()))
    assert taken >= killer.held_at_kill, survivor.log()[-3000:]
