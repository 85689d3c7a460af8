"""The response cache with a real worker: a repeated request is answered from the cache and
never reaches the queue; a different input, output selection or version is a miss; JSON and
binary requests of the same tensors share an answer; TTLs expire; the cache is off unless a
version turns it on, and turning it on reaches the gateway at once; every request gets
exactly one answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
import redis

from controlplane.redis_client import redis_keys
from registry import services
from registry.demo_models import build_iris_classifier, build_mlp
from tests.integration.conftest import AccessLog, as_json_line
from tests.support.v2 import Gateway, binary_request, exchange, infer_path, split_binary_response, tensor

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = np.array([[0.5, -1.0, 2.0, 0.25]], dtype=np.float32)
FLOWERS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


def body(rows: np.ndarray = ROWS, **extra: Any) -> dict[str, Any]:
    return {"inputs": [tensor("input", "FP32", rows)], **extra}


def enqueued(redis_conn: redis.Redis, version: Any) -> int:
    """How many requests were ever put on the version's streams, every priority level's (workers
    delete what they answered)."""
    streams = [s for s in redis_keys().request_streams(version.id) if redis_conn.exists(s)]
    return sum(int(redis_conn.xinfo_stream(stream)["entries-added"]) for stream in streams)


def cache_of(response: Any) -> tuple[str | None, str | None]:
    """The cache header and parameters.cache of a JSON answer."""
    return response.headers.get("x-turnout-cache"), response.json().get("parameters", {}).get("cache")


def test_a_repeated_request_is_a_hit_that_never_reaches_the_queue(
    serve: Callable[..., Any], gateway: Gateway, redis_conn: redis.Redis, access_log: AccessLog
) -> None:
    version = serve("inf-cache", build_mlp(4, [8], 3, seed=1), cache_ttl_seconds=60)

    first = gateway.infer("inf-cache", body(id="a"))
    gateway.settle()  # the miss is stored after its answer was sent
    second = gateway.infer("inf-cache", body(id="b"))

    assert first.status == second.status == 200, (first.body, second.body)
    assert cache_of(first) == ("miss", "miss")
    assert cache_of(second) == ("hit", "hit")
    assert second.json()["outputs"] == first.json()["outputs"]
    assert second.json()["id"] == "b"  # encoded for its own request
    assert second.json()["parameters"]["arm"] == "champion"
    assert second.headers["x-turnout-batch-size"] == "0"
    assert enqueued(redis_conn, version) == 1  # the worker saw only the first
    lines = [as_json_line(record) for record in access_log()]
    assert [(line["cache"], line["batch_size"]) for line in lines] == [("miss", 1), ("hit", 0)]
    assert lines[1]["queue_ms"] == lines[1]["compute_ms"] == 0
    assert lines[0]["compute_ms"] > 0
    stored = list(redis_conn.scan_iter(match=f"{redis_keys().prefix}:cache:v{version.id}:*"))
    assert len(stored) == 1
    assert 50_000 < redis_conn.pttl(stored[0]) <= 60_000


def test_a_different_input_output_selection_or_version_is_a_miss(
    serve: Callable[..., Any], gateway: Gateway, redis_conn: redis.Redis
) -> None:
    v1 = serve("inf-iris-cache", build_iris_classifier(), cache_ttl_seconds=60)
    request = {"inputs": [tensor("input", "FP32", FLOWERS)]}

    def cached(response: Any) -> str:
        assert response.status == 200, response.body
        return str(response.headers["x-turnout-cache"])

    assert cached(gateway.infer("inf-iris-cache", request)) == "miss"
    gateway.settle()
    assert cached(gateway.infer("inf-iris-cache", request)) == "hit"
    only_label = {**request, "outputs": [{"name": "label"}]}
    assert cached(gateway.infer("inf-iris-cache", only_label)) == "miss"
    other_flowers = {"inputs": [tensor("input", "FP32", FLOWERS[::-1].copy())]}
    assert cached(gateway.infer("inf-iris-cache", other_flowers)) == "miss"
    gateway.settle()
    label = gateway.infer("inf-iris-cache", only_label)
    assert cached(label) == "hit"
    assert [o["name"] for o in label.json()["outputs"]] == ["label"]
    assert label.json()["outputs"][0]["data"] == [0, 2]
    assert enqueued(redis_conn, v1) == 3

    # Another version of the same name has its own answers.
    v2 = serve("inf-iris-cache", build_mlp(4, [8], 3, seed=7), cache_ttl_seconds=60)
    assert cached(gateway.infer("inf-iris-cache", request, version=2)) == "miss"
    assert cached(gateway.infer("inf-iris-cache", request, version=1)) == "hit"
    assert enqueued(redis_conn, v2) == 1


def test_the_cache_is_off_by_default_and_turning_it_on_reaches_the_gateway_at_once(
    serve: Callable[..., Any], gateway: Gateway, redis_conn: redis.Redis, owner: Any
) -> None:
    version = serve("inf-nocache", build_mlp(4, [8], 3, seed=2))

    answers = [gateway.infer("inf-nocache", body()) for _ in range(3)]

    assert all(a.status == 200 for a in answers)
    assert all("x-turnout-cache" not in a.headers and "cache" not in a.json()["parameters"] for a in answers)
    assert enqueued(redis_conn, version) == 3
    assert not list(redis_conn.scan_iter(match=f"{redis_keys().prefix}:cache:v{version.id}:*"))

    services.update_version(version, actor=owner, cache_ttl_seconds=30)
    deadline = time.monotonic() + 2
    while (answer := gateway.infer("inf-nocache", body())).headers.get("x-turnout-cache") is None:
        assert time.monotonic() < deadline, "the gateway did not hear of the change"
        time.sleep(0.05)
    assert cache_of(answer) == ("miss", "miss")


def test_an_answer_expires_with_its_ttl(serve: Callable[..., Any], gateway: Gateway, redis_conn: redis.Redis) -> None:
    version = serve("inf-cache-ttl", build_mlp(4, [8], 3, seed=3), cache_ttl_seconds=1)

    first = gateway.infer("inf-cache-ttl", body())
    gateway.settle()
    second = gateway.infer("inf-cache-ttl", body())
    time.sleep(1.1)
    third = gateway.infer("inf-cache-ttl", body())

    assert [r.headers["x-turnout-cache"] for r in (first, second, third)] == ["miss", "hit", "miss"]
    assert third.json()["outputs"] == first.json()["outputs"]
    assert enqueued(redis_conn, version) == 2


def test_json_and_binary_requests_of_the_same_tensors_share_an_answer(
    serve: Callable[..., Any], gateway: Gateway, redis_conn: redis.Redis
) -> None:
    version = serve("inf-cache-bin", build_mlp(4, [8], 3, seed=4), cache_ttl_seconds=60)
    as_json = gateway.infer("inf-cache-bin", body())
    gateway.settle()
    header = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": 16}}],
        "parameters": {"binary_data_output": True},
    }
    raw, headers = binary_request(header, [ROWS.tobytes()])

    response = gateway.client.request("POST", infer_path("inf-cache-bin"), raw, headers)

    assert response.status == 200, response.body
    assert response.headers["x-turnout-cache"] == "hit"
    head, blobs = split_binary_response(response)
    assert head["parameters"]["cache"] == "hit"
    expected = np.array(as_json.json()["outputs"][0]["data"], dtype=np.float32)
    assert np.array_equal(np.frombuffer(blobs["output"], dtype="<f4"), expected)
    assert enqueued(redis_conn, version) == 1


def test_every_request_gets_exactly_one_answer_hit_or_miss(
    serve: Callable[..., Any], gateway: Gateway, redis_conn: redis.Redis
) -> None:
    version = serve("inf-cache-once", build_mlp(4, [8], 3, seed=5), cache_ttl_seconds=60)
    distinct = [body(ROWS + i, id=f"r{i}") for i in range(8)]
    repeated = [body(ROWS, id=f"s{i}") for i in range(24)]

    async def all_at_once(bodies: list[dict[str, Any]]) -> list[Any]:
        path = infer_path("inf-cache-once")
        headers = {"content-type": "application/json"}
        return await asyncio.gather(*(exchange(gateway.app, "POST", path, orjson.dumps(b), headers) for b in bodies))

    first = gateway.client.loop.run_until_complete(all_at_once(distinct))
    gateway.settle()
    second = gateway.client.loop.run_until_complete(all_at_once(repeated + distinct))

    for response, starts in [*first, *second]:
        assert starts == 1
        assert response.status == 200, response.body
    assert {r.headers["x-turnout-cache"] for r, _ in first} == {"miss"}
    assert {r.headers["x-turnout-cache"] for r, _ in second} == {"hit"}
    ids = [orjson.loads(r.body)["id"] for r, _ in second]
    assert ids == [b["id"] for b in repeated + distinct]
    assert enqueued(redis_conn, version) == 8
