"""Turnout on a highly available Redis: a primary watched by three sentinels, and a Redis
Cluster of three primaries with a replica each, all real `redis-server` processes on
loopback ports (tests/support/redis_topology.py). A real worker process serves the
models through the same Redis, traffic goes through the in-process gateway, and the
primary fails over while requests are in flight.

What docs/operations.md ("Redis high availability") promises, checked here: inference,
rate limits and a canary work unchanged; a coordinated CLUSTER FAILOVER loses nothing;
a Sentinel failover may lose the requests written to the old primary after its replica's
last copy, and those are answered 503 with Retry-After at once, never left to their
deadline. No request goes unanswered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from redis.crc import key_slot
from redis.exceptions import RedisError

from accounts import services as accounts_services
from controlplane.redis_client import get_redis, redis_keys, redis_target
from dataplane.connection import async_client
from dataplane.priority import NORMAL
from gateway.coalesce import ScriptBatcher
from registry.demo_models import build_mlp
from rollouts import services as rollout_services
from rollouts.models import RolloutStatus
from tests.conftest import _gateway_client
from tests.integration.rollouts import FAST_STEPS, drive, wait_for_routing
from tests.support.asgi import AsgiResponse
from tests.support.clients import bearer
from tests.support.redis_topology import ClusterSetup, SentinelSetup
from tests.support.rollout_models import champion_model
from tests.support.serving import Registry, Workers, start_workers
from tests.support.v2 import Gateway, tensor

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.timeout(300)]

DEADLINE_S = 20.0
BODY = {
    "inputs": [tensor("input", "FP32", np.ones((1, 4), dtype=np.float32))],
    "parameters": {"timeout": int(DEADLINE_S * 1_000_000)},
}


def broker_url() -> str:
    from controlplane.celery import app

    return str(app.conf.broker_url)


# --- the topologies, one worker each, and a gateway on them -------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    setup = ClusterSetup(tmp_path_factory.mktemp("redis-cluster"))
    yield setup
    setup.stop()


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    setup = SentinelSetup(tmp_path_factory.mktemp("redis-sentinel"))
    yield setup
    setup.stop()


@pytest.fixture(scope="module")
def cluster_worker(
    django_db_setup: Any, artifact_dir: Path, cluster: ClusterSetup, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    # Celery cannot use a Redis Cluster as its broker: the worker's broker is the plain Redis.
    workers = start_workers(
        ["hacluster"],
        tmp_path_factory.mktemp("logs"),
        artifact_dir,
        REDIS_URL=cluster.url,
        CELERY_BROKER_URL=broker_url(),
    )
    yield workers
    workers.stop()


@pytest.fixture(scope="module")
def sentinel_worker(
    django_db_setup: Any, artifact_dir: Path, sentinel: SentinelSetup, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    # No CELERY_BROKER_URL: Celery's broker is the same Sentinel-watched primary (kombu's sentinel transport).
    workers = start_workers(
        ["hasentinel"], tmp_path_factory.mktemp("logs"), artifact_dir, REDIS_URL=sentinel.url, CELERY_BROKER_URL=""
    )
    yield workers
    workers.stop()


def on_redis(settings: Any, url: str) -> Iterator[None]:
    """This process (gateway, registry notices, rollout analysis) on the given Redis."""
    settings.REDIS_URL = url
    get_redis.cache_clear()
    yield
    get_redis.cache_clear()


@pytest.fixture
def on_cluster(settings: Any, cluster: ClusterSetup) -> Iterator[None]:
    yield from on_redis(settings, cluster.url)


@pytest.fixture
def on_sentinel(settings: Any, sentinel: SentinelSetup) -> Iterator[None]:
    yield from on_redis(settings, sentinel.url)


def gateway_on(require_key: bool) -> Iterator[Gateway]:
    for client in _gateway_client(require_key=require_key):
        yield Gateway(client, client.gateway)  # type: ignore[attr-defined]


@pytest.fixture
def cluster_gateway(on_cluster: None) -> Iterator[Gateway]:
    yield from gateway_on(require_key=False)


@pytest.fixture
def keyed_cluster_gateway(on_cluster: None) -> Iterator[Gateway]:
    yield from gateway_on(require_key=True)


@pytest.fixture
def sentinel_gateway(on_sentinel: None) -> Iterator[Gateway]:
    yield from gateway_on(require_key=False)


def serve(registry: Registry, gateway: Gateway, workers: Workers, name: str) -> Any:
    version = registry.add(name, build_mlp(4, [8], 2))
    gateway.wait_loaded(name, version.number, workers)
    return version


def wait_loaded_keyed(gateway: Gateway, name: str, number: int, workers: Workers) -> None:
    """`wait_loaded` asks the ready endpoint without a key: allowed for that moment only."""
    gateway.app.models.require_key = False
    try:
        gateway.wait_loaded(name, number, workers)
    finally:
        gateway.app.models.require_key = True


def answers_during(gateway: Gateway, name: str, fault: Callable[[], Any], wave: int = 8) -> list[AsgiResponse]:
    """Waves of `wave` concurrent requests while `fault` runs in a thread, then two waves after it."""

    async def traffic() -> list[AsgiResponse]:
        loop = asyncio.get_running_loop()
        running = loop.run_in_executor(None, fault)
        answers: list[AsgiResponse] = []
        while not running.done():
            answers += await asyncio.gather(*(gateway.ainfer(name, BODY) for _ in range(wave)))
        await running
        for _ in range(2):
            answers += await asyncio.gather(*(gateway.ainfer(name, BODY) for _ in range(wave)))
        return answers

    return gateway.client.loop.run_until_complete(traffic())


def timed(gateway: Gateway, name: str) -> tuple[AsgiResponse, float]:
    started = time.monotonic()
    return gateway.infer(name, BODY), time.monotonic() - started


# --- Redis Cluster ------------------------------------------------------------------------------


def test_inference_runs_on_a_cluster_with_each_versions_queue_in_one_slot(
    registry: Registry, cluster: ClusterSetup, cluster_worker: Workers, cluster_gateway: Gateway
) -> None:
    version = serve(registry, cluster_gateway, cluster_worker, "inf-ha-cluster")

    answers = [cluster_gateway.infer("inf-ha-cluster", BODY) for _ in range(10)]

    assert [a.status for a in answers] == [200] * 10, answers[0].body
    ready = cluster_gateway.get("/v2/health/ready")
    assert ready.status == 200, ready.body  # PostgreSQL, the cluster and a live worker answer
    streams = redis_keys().request_streams(version.id)
    assert len({key_slot(s.encode()) for s in streams}) == 1  # one script may touch them all
    assert all(s.startswith(f"{{{redis_keys().prefix}:v{version.id}}}") for s in streams)
    normal = redis_keys().request_stream(version.id, NORMAL)
    assert cluster.node_for(normal).binary.xinfo_stream(normal)["entries-added"] == 10


def test_grouped_scripts_run_one_group_per_slot_and_a_cross_slot_call_fails_alone(
    cluster: ClusterSetup, on_cluster: None
) -> None:
    body = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
    tags = [f"{{{redis_keys().prefix}:group-{i}}}" for i in range(6)]
    assert len({key_slot(t.encode()) for t in tags}) > 1

    async def go() -> list[Any]:
        client = async_client(redis_target())
        batcher = ScriptBatcher(client, body)
        calls = [batcher([f"{tag}:n"], [1]) for tag in tags for _ in range(5)]
        calls.append(batcher([f"{tags[0]}:n", f"{tags[1]}:n"], [1]))  # keys of two slots
        try:
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await client.aclose()

    outcomes = asyncio.run(go())

    assert [o for o in outcomes[:-1] if isinstance(o, BaseException)] == []
    assert isinstance(outcomes[-1], RedisError)
    assert "2 cluster slots" in str(outcomes[-1])
    for i, tag in enumerate(tags):
        seen = outcomes[5 * i : 5 * i + 5]
        stored = int(cluster.node_for(f"{tag}:n").client.get(f"{tag}:n"))
        # Each call saw the ones before it, in order. redis-py re-sends a command whose connection
        # dropped before the reply (a topology refresh elsewhere closes a client's connections):
        # the tag's group then ran twice, whole, never in part (docs/operations.md).
        assert seen == list(range(stored - 4, stored + 1)), (tag, seen, stored)
        assert stored in (5, 10), (tag, stored)


def test_a_keys_rate_limit_holds_on_a_cluster_and_a_refused_request_is_never_queued(
    registry: Registry, viewer: Any, cluster: ClusterSetup, cluster_worker: Workers, keyed_cluster_gateway: Gateway
) -> None:
    version = registry.add("inf-ha-limited", build_mlp(4, [8], 2))
    key, secret = accounts_services.create_key(viewer, name="two", model_patterns=["*"], actions=["infer", "read"])
    accounts_services.set_limits(key, actor=viewer, requests_per_window=2, window_seconds=3600, burst=2)
    wait_loaded_keyed(keyed_cluster_gateway, "inf-ha-limited", version.number, cluster_worker)

    statuses = [keyed_cluster_gateway.infer("inf-ha-limited", BODY, headers=bearer(secret)).status for _ in range(3)]

    assert statuses == [200, 200, 429]
    stream = redis_keys().request_stream(version.id, NORMAL)
    assert cluster.node_for(stream).binary.xinfo_stream(stream)["entries-added"] == 2
    state = redis_keys().rate_state(key.public_id)
    assert key_slot(state.encode()) == key_slot(redis_keys().quota_prefix(key.public_id).encode())
    assert cluster.node_for(state).client.exists(state)
    assert accounts_services.flush_last_used() == 1
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_on_a_cluster_a_full_queue_sheds_with_503_and_the_shed_request_spent_its_rate_token(
    registry: Registry, viewer: Any, cluster: ClusterSetup, keyed_cluster_gateway: Gateway
) -> None:
    # No worker serves `unserved-...`: the first request holds the only place in the queue.
    version = registry.add("unserved-ha-full", build_mlp(4, [8], 2), max_queue_size=1)
    key, secret = accounts_services.create_key(viewer, name="three", model_patterns=["*"], actions=["infer"])
    accounts_services.set_limits(key, actor=viewer, requests_per_window=3, window_seconds=3600, burst=3)
    body = {**BODY, "parameters": {"timeout": 3_000_000}}

    async def two() -> list[AsgiResponse]:
        first = asyncio.ensure_future(keyed_cluster_gateway.ainfer("unserved-ha-full", body, headers=bearer(secret)))
        stream = redis_keys().request_stream(version.id, NORMAL)
        for _ in range(1000):
            if cluster.node_for(stream).binary.exists(stream):
                break
            await asyncio.sleep(0.01)
        second = await keyed_cluster_gateway.ainfer("unserved-ha-full", body, headers=bearer(secret))
        return [await first, second]

    first, second = keyed_cluster_gateway.client.loop.run_until_complete(two())
    third = keyed_cluster_gateway.infer("unserved-ha-full", body, headers=bearer(secret))
    fourth = keyed_cluster_gateway.infer("unserved-ha-full", body, headers=bearer(secret))

    assert first.status == 504  # queued, never served
    assert second.status == 503  # shed: the queue was full
    assert "queue is full" in second.json()["error"]
    assert second.headers["retry-after"] == "1"
    # On a cluster the rate limit runs before the enqueue (docs/operations.md): the shed request spent a token.
    assert third.status == 504
    assert fourth.status == 429


def test_a_canary_is_split_analysed_and_promoted_on_a_cluster(
    registry: Registry, cluster_worker: Workers, cluster_gateway: Gateway
) -> None:
    champion = registry.add("inf-ha-canary", champion_model())
    canary = registry.add("inf-ha-canary", champion_model(seed=1), production=False)
    for version in (champion, canary):
        cluster_gateway.wait_loaded("inf-ha-canary", version.number, cluster_worker)
    config = {**FAST_STEPS, "gates": {"min_requests": 20, "max_p95_ratio": 3.0}}
    rollout = rollout_services.start_canary(champion.model, canary, actor=registry.owner, config=config)
    wait_for_routing(cluster_gateway, "inf-ha-canary", lambda r: r is not None and r.rollout_id == rollout.pk)

    sent = drive(cluster_gateway, "inf-ha-canary", rollout, bad_input=lambda i: False)

    assert {s.status for s in sent} == {200}
    assert {s.arm for s in sent} == {"champion", "canary"}  # the split ran on the cluster
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PROMOTED, rollout.outcome  # its figures were read from the cluster


def test_a_cluster_failover_under_load_loses_no_request(
    registry: Registry, cluster: ClusterSetup, cluster_worker: Workers, cluster_gateway: Gateway
) -> None:
    version = serve(registry, cluster_gateway, cluster_worker, "inf-ha-failover")
    stream = redis_keys().request_stream(version.id, NORMAL)
    old = cluster.node_for(stream)

    answers = answers_during(cluster_gateway, "inf-ha-failover", lambda: cluster.fail_over(stream))

    assert cluster.node_for(stream).port != old.port
    assert len(answers) > 16  # a wave at least ran while the primary changed
    assert [a.status for a in answers] == [200] * len(answers), [a.body for a in answers if a.status != 200][:3]
    assert cluster.node_for(stream).binary.xinfo_stream(stream)["entries-added"] == len(answers)


# --- Sentinel -----------------------------------------------------------------------------------


def test_inference_and_rate_limits_run_through_sentinel(
    registry: Registry, viewer: Any, sentinel: SentinelSetup, sentinel_worker: Workers, on_sentinel: None
) -> None:
    version = registry.add("inf-ha-sentinel", build_mlp(4, [8], 2))
    key, secret = accounts_services.create_key(viewer, name="one", model_patterns=["*"], actions=["infer", "read"])
    accounts_services.set_limits(key, actor=viewer, requests_per_window=1, window_seconds=3600, burst=1)
    for gateway in gateway_on(require_key=True):
        wait_loaded_keyed(gateway, "inf-ha-sentinel", version.number, sentinel_worker)

        statuses = [gateway.infer("inf-ha-sentinel", BODY, headers=bearer(secret)).status for _ in range(2)]

        assert statuses == [200, 429]
    stream = redis_keys().request_stream(version.id, NORMAL)
    primary = next(s for s in (sentinel.primary, sentinel.replica) if s.port == sentinel.primary_port())
    assert primary.binary.xinfo_stream(stream)["entries-added"] == 1


def test_a_sentinel_failover_under_load_answers_every_request_and_serving_resumes(
    registry: Registry, sentinel: SentinelSetup, sentinel_worker: Workers, sentinel_gateway: Gateway
) -> None:
    serve(registry, sentinel_gateway, sentinel_worker, "inf-ha-sentinel-failover")

    started = time.monotonic()
    answers = answers_during(sentinel_gateway, "inf-ha-sentinel-failover", sentinel.fail_over)
    took = time.monotonic() - started

    assert len(answers) > 16
    # Asynchronous replication: what reached the old primary after the replica's last copy may be
    # lost. Such a request is answered 503 with Retry-After by the lost-queue check, never a 504.
    assert {a.status for a in answers} <= {200, 503}, {a.status for a in answers}
    for refused in (a for a in answers if a.status == 503):
        assert refused.headers["retry-after"] == "1", refused.body
    assert took < DEADLINE_S + 60  # nothing waited out its deadline in a row
    assert [a.status for a in answers[-8:]] == [200] * 8  # serving resumed on the new primary
    after, seconds = timed(sentinel_gateway, "inf-ha-sentinel-failover")
    assert after.status == 200
    assert seconds < 5
