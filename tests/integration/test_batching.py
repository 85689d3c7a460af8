"""Dynamic batching through a real worker, and the queue's limits: rows of
concurrent requests are run together and split back to the right caller, a full
queue answers 503 at once, and a request's own deadline gives a 504 on time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import redis

from controlplane.redis_client import redis_keys
from dataplane.priority import NORMAL
from registry import services
from registry.demo_models import build_mlp
from tests.support.processes import wait_for
from tests.support.serving import Registry
from tests.support.v2 import Gateway, tensor

pytestmark = pytest.mark.django_db(transaction=True)

# Wide enough that a batch takes a measurable time, small enough to validate in a blink.
MLP = build_mlp(64, [512, 512], 10, seed=11)


def local(features: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(MLP, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": features})[0])


def output_of(response: Any, rows: int) -> np.ndarray:
    [output] = response.json()["outputs"]
    assert output["shape"] == [rows, 10]
    return np.array(output["data"], dtype=np.float32).reshape(rows, 10)


def stream_length(redis_conn: redis.Redis, version: Any) -> int:
    return int(redis_conn.xlen(redis_keys().request_stream(version.id, NORMAL)))


def gather(gateway: Gateway, *coroutines: Any) -> list[Any]:
    """Run the requests concurrently on the gateway's own event loop."""

    async def together() -> list[Any]:
        return list(await asyncio.gather(*coroutines))

    return gateway.client.loop.run_until_complete(together())


def test_multi_row_requests_sent_together_are_split_back(
    serve: Callable[..., Any], gateway: Gateway, redis_conn: redis.Redis
) -> None:
    version = serve("inf-batch", MLP)
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((rows, 64)).astype(np.float32) for rows in (3, 5, 3, 5, 3, 5)]

    responses = gather(
        gateway,
        *[
            gateway.ainfer("inf-batch", {"id": str(i), "inputs": [tensor("input", "FP32", x)]})
            for i, x in enumerate(inputs)
        ],
    )

    for index, (features, response) in enumerate(zip(inputs, responses, strict=True)):
        assert response.status == 200, response.body
        assert response.json()["id"] == str(index)
        assert int(response.headers["x-turnout-batch-size"]) >= len(features)
        assert np.allclose(output_of(response, len(features)), local(features), rtol=1e-4, atol=1e-5)
    assert stream_length(redis_conn, version) == 0


def test_concurrent_single_rows_run_in_shared_batches(
    serve: Callable[..., Any], gateway: Gateway, redis_conn: redis.Redis
) -> None:
    version = serve("inf-batch", MLP)
    features = np.random.default_rng(2).standard_normal((64, 64)).astype(np.float32)
    expected = local(features)

    responses = gather(
        gateway,
        *[gateway.ainfer("inf-batch", {"inputs": [tensor("input", "FP32", features[i : i + 1])]}) for i in range(64)],
    )

    sizes = []
    for row, response in enumerate(responses):
        assert response.status == 200, response.body
        # Each caller gets its own row back, whatever batch it rode in.
        assert np.allclose(output_of(response, 1), expected[row : row + 1], rtol=1e-4, atol=1e-5)
        sizes.append(int(response.headers["x-turnout-batch-size"]))
    assert max(sizes) > 1, sizes
    # With one row per request, a batch of n rows is n requests each reporting n.
    assert all(sizes.count(size) % size == 0 for size in set(sizes)), sizes
    assert max(sizes) <= version.max_batch_size
    assert stream_length(redis_conn, version) == 0


def test_a_lone_request_on_an_idle_worker_runs_at_once_alone(serve: Callable[..., Any], gateway: Gateway) -> None:
    serve("inf-batch", MLP, max_queue_delay_ms=500)
    features = np.ones((1, 64), dtype=np.float32)

    started = time.monotonic()
    response = gateway.infer("inf-batch", {"inputs": [tensor("input", "FP32", features)]})
    elapsed = time.monotonic() - started

    assert response.status == 200, response.body
    assert response.headers["x-turnout-batch-size"] == "1"
    # It did not linger for the 500 ms queue delay waiting for company.
    assert elapsed < 0.5, elapsed


def test_a_full_queue_answers_503_at_once(registry: Registry, gateway: Gateway, redis_conn: redis.Redis) -> None:
    # No worker serves `unserved-*`: nothing drains the queue.
    version = registry.add("unserved-queue", MLP)
    services.update_version(version, actor=registry.owner, max_queue_size=1)
    body = {"inputs": [tensor("input", "FP32", np.zeros((1, 64), dtype=np.float32))]}
    waiting = {**body, "parameters": {"timeout": 3_000_000}}

    async def scenario() -> tuple[Any, Any, float]:
        first = asyncio.ensure_future(gateway.ainfer("unserved-queue", waiting))
        for _ in range(500):  # until the first request sits in the queue (5 s at most)
            if stream_length(redis_conn, version) >= 1:
                break
            await asyncio.sleep(0.01)
        started = time.monotonic()
        second = await gateway.ainfer("unserved-queue", body)
        elapsed = time.monotonic() - started
        return await first, second, elapsed

    first, second, elapsed = gateway.client.loop.run_until_complete(scenario())

    assert second.status == 503, second.body
    assert "queue is full (1 requests)" in second.json()["error"]
    assert second.headers["retry-after"] == "1"
    assert elapsed < 0.5, elapsed
    assert first.status == 504, first.body
    key = redis_keys().request_stream(version.id, NORMAL)
    assert redis_conn.xinfo_stream(key)["entries-added"] == 1  # only the first was ever enqueued
    assert stream_length(redis_conn, version) == 0  # and taken off the queue at its deadline, never to run late


def test_a_request_timeout_shorter_than_the_answer_gives_504_on_time(registry: Registry, gateway: Gateway) -> None:
    registry.add("unserved-timeout", MLP)
    body = {
        "inputs": [tensor("input", "FP32", np.zeros((1, 64), dtype=np.float32))],
        "parameters": {"timeout": 300_000},
    }

    started = time.monotonic()
    response = gateway.infer("unserved-timeout", body)
    elapsed = time.monotonic() - started

    assert response.status == 504, response.body
    assert "no reply within the request's deadline of 300 ms" in response.json()["error"]
    assert 0.3 <= elapsed < 1.3, elapsed


def test_the_versions_default_timeout_applies_without_a_request_timeout(registry: Registry, gateway: Gateway) -> None:
    version = registry.add("unserved-default-timeout", MLP)
    services.update_version(version, actor=registry.owner, default_timeout_ms=200)
    body = {"inputs": [tensor("input", "FP32", np.zeros((1, 64), dtype=np.float32))]}

    started = time.monotonic()
    response = gateway.infer("unserved-default-timeout", body)
    elapsed = time.monotonic() - started

    assert response.status == 504, response.body
    assert "deadline of 200 ms" in response.json()["error"]
    assert 0.2 <= elapsed < 1.2, elapsed


def test_a_versions_own_thread_count_reloads_its_session_and_batching_settings_do_not(
    serve: Callable[..., Any], gateway: Gateway, registry: Registry, worker: Any
) -> None:
    version = serve("inf-threads", MLP)
    loaded = f"version {version.id} loaded on CPUExecutionProvider"
    assert f"{loaded} (default intra-op threads)" in worker.log()
    features = np.ones((2, 64), dtype=np.float32)

    services.update_version(version, actor=registry.owner, max_queue_delay_ms=1.0)
    services.update_version(version, actor=registry.owner, intra_op_threads=2)

    assert wait_for(lambda: f"{loaded} (2 intra-op threads)" in worker.log(), timeout=30), worker.log()
    response = gateway.infer("inf-threads", {"inputs": [tensor("input", "FP32", features)]})
    assert response.status == 200, response.body
    np.testing.assert_allclose(output_of(response, 2), local(features), rtol=1e-5, atol=1e-5)
    # The batching change restarted the consumer but kept the session: two loads in all.
    assert worker.log().count(loaded) == 2
