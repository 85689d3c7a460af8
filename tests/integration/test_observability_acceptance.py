"""Acceptance: a few thousand real requests through the gateway to a real worker,
with latencies spread by concurrency (1, 8, 64) and rows per request (1..32);
the dashboard's p50/p95/p99 agree with the exact percentiles of the latencies
the gateway reported (`server-timing: total;dur=`) within 2 %, both while part
of the minutes are still live in Redis and once everything is rolled up."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import redis
from django.conf import settings
from django.test import Client

from observability import queries, rollup
from observability.models import MinuteStats
from observability.sketch import exact_quantile
from registry.demo_models import build_mlp
from tests.conftest import test_queue as run_queue
from tests.factories import ModelVersionFactory, RegisteredModelFactory
from tests.support.asgi import AsgiClient
from tests.support.processes import WorkerProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

NAME = "obs-latency"
FEATURES = 64
# Wide enough that a 64-row batch takes visibly longer than one row.
MLP = build_mlp(FEATURES, [512, 512], 10, seed=7)
PHASES = ((1, 600), (8, 1200), (64, 1200))  # (concurrency, requests)
TIMING = re.compile(r"total;dur=([0-9.]+)")


# Not the conftest's `worker` (which serves inf-*): one of its own, on a queue of its own.
@pytest.fixture(scope="module")
def worker(
    django_db_setup: Any, artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A real `celery -A controlplane worker` serving models named obs-*."""
    log = tmp_path_factory.mktemp("logs") / "obs1.log"
    # Its own queue: the validation messages uploads enqueue stay unconsumed, the test validates.
    process = WorkerProcess(
        "obs1",
        log,
        queues=f"{run_queue()}-observability",
        ARTIFACT_ROOT=str(artifact_dir),
        TURNOUT_WORKER_MODELS="obs-*",
    )
    if not wait_for(lambda: " ready." in process.log(), timeout=60):
        process.stop()
        raise AssertionError(f"the worker did not start:\n{process.log()[-6000:]}")
    yield process
    process.stop()


@pytest.fixture
def served(
    settings: Any, artifact_dir: Path, worker: WorkerProcess, owner: Any, gateway_client: AsgiClient
) -> Iterator[Any]:
    """`NAME` registered by `owner`, validated, in production and loaded by the worker."""
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(artifact_dir)}}
    settings.STORAGES = {**settings.STORAGES, "artifacts": backend}
    model = RegisteredModelFactory(name=NAME, actor=owner)
    version = ModelVersionFactory(model=model, actor=owner, onnx_bytes=MLP, validate=True, production=True)

    def loaded() -> bool:
        answer = gateway_client.get(f"/v2/models/{NAME}/versions/{version.number}/ready")
        providers = answer.json().get("execution_providers", {}) if answer.status == 200 else {}
        return bool(providers) and all(not p.startswith("not loaded") for p in providers.values())

    assert wait_for(loaded, timeout=60), worker.log()[-6000:]
    yield version
    clean_observations()


def clean_observations() -> None:
    # Not the whole prefix: the module's worker keeps its heartbeat there.
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(match=f"{settings.TURNOUT['REDIS_PREFIX']}:obs:*", count=1000):
        client.delete(key)
    client.close()


async def drive(client: AsgiClient, concurrency: int, count: int, rng: random.Random) -> list[tuple[float, int]]:
    """`count` requests from `concurrency` callers at once: (total ms the gateway reported, batch size)."""
    bodies = []
    for _ in range(count):
        rows = rng.randint(1, 32)
        features = np.asarray([[rng.random() for _ in range(FEATURES)] for _ in range(rows)], dtype=np.float32)
        tensor = {"name": "input", "datatype": "FP32", "shape": [rows, FEATURES], "data": features.ravel().tolist()}
        bodies.append(orjson.dumps({"inputs": [tensor]}))
    pending = iter(bodies)
    seen: list[tuple[float, int]] = []

    async def caller() -> None:
        for body in pending:
            answer = await client.arequest(
                "POST", f"/v2/models/{NAME}/infer", body, {"content-type": "application/json"}
            )
            assert answer.status == 200, answer.body
            found = TIMING.search(answer.headers["server-timing"])
            assert found, answer.headers["server-timing"]
            seen.append((float(found.group(1)), int(answer.headers["x-turnout-batch-size"])))

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return seen


def page_summary(viewer: Any) -> dict[str, Any]:
    browser = Client()
    browser.force_login(viewer)
    response = browser.get(f"/dashboard/models/{NAME}/?window=1h")
    assert response.status_code == 200
    found = re.search(r'<script id="model-summary" type="application/json">(.*?)</script>', response.content.decode())
    assert found
    summary: dict[str, Any] = json.loads(found.group(1))["summary"]
    return summary


def assert_within_2_percent(figures: dict[str, Any], values: list[float]) -> None:
    assert figures["requests"] == len(values)
    for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        exact = exact_quantile(values, q)
        assert abs(figures[name] - exact) / exact <= 0.02, f"{name}: dashboard {figures[name]} vs exact {exact}"


def test_dashboard_percentiles_match_the_exact_latencies_of_real_requests(
    served: Any, gateway_client: AsgiClient, viewer: Any
) -> None:
    recorder = gateway_client.gateway.recorder  # type: ignore[attr-defined]
    rng = random.Random(2024)
    started = time.monotonic()
    seen: list[tuple[float, int]] = []
    for concurrency, count in PHASES[:2]:
        seen += gateway_client.loop.run_until_complete(drive(gateway_client, concurrency, count, rng))
    gateway_client.loop.run_until_complete(recorder.flush())
    # Everything so far goes to PostgreSQL (as beat would, minutes later); the last phase stays live in Redis.
    assert rollup.roll_up_minutes(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=3)) >= 1
    concurrency, count = PHASES[2]
    seen += gateway_client.loop.run_until_complete(drive(gateway_client, concurrency, count, rng))
    gateway_client.loop.run_until_complete(recorder.flush())
    assert time.monotonic() - started < 120, "3000 requests should take seconds, not minutes"

    values = [total for total, _ in seen]
    assert len(values) == sum(count for _, count in PHASES)
    assert max(values) / min(values) > 10, "the latencies should spread widely"
    assert len({batch for _, batch in seen}) > 10
    assert MinuteStats.objects.filter(model=NAME).exists()

    live = queries.summary("1h", model=NAME)
    assert_within_2_percent(live.as_json(), values)
    assert_within_2_percent(page_summary(viewer), values)

    rollup.roll_up_minutes(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=3))
    settled = queries.summary("1h", model=NAME)
    assert_within_2_percent(settled.as_json(), values)
    assert (settled.p50, settled.p95, settled.p99) == (live.p50, live.p95, live.p99)
    assert sum(settled.batch_sizes.values()) == len(values)
