"""A response-cache hit in the gateway, without a worker: it answers from the cache, still
counts against the key's rate limit (a refused hit is 429), and a miss counts once."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis
from django.conf import settings

from accounts import services
from controlplane.redis_client import redis_keys
from dataplane.priority import NORMAL
from dataplane.wire import WireReply
from gateway.protocol import parse_request
from gateway.response_cache import ResponseCache, digest
from registry.models import ModelVersion
from tests.support.asgi import AsgiClient
from tests.support.clients import bearer

# The gateway reads keys and models on its own connections: the data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
OTHER = {**BODY, "inputs": [{**BODY["inputs"][0], "data": [4, 3, 2, 1]}], "parameters": {"timeout": 100_000}}
ANSWER = np.array([[0.25, 0.75]], dtype=np.float32)


def store_answer(version: ModelVersion) -> None:
    """The answer a worker would have given, stored as the gateway stores one."""
    request = parse_request(orjson.dumps(BODY), None, version.signature or {}, version.max_batch_size)

    async def put() -> None:
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        cache = ResponseCache(client, redis_keys(), 10**6, 10**5)
        key = redis_keys().response_cache(version.id, digest(request))
        assert await cache.put(key, WireReply("x", outputs=[("output", "FP32", ANSWER)]), 60)
        await client.aclose()

    asyncio.run(put())


def test_a_hit_counts_against_the_rate_limit_and_a_miss_counts_once(
    keyed_gateway_client: AsgiClient, viewer: Any, ready_model: str, redis_client: Any
) -> None:
    version = ModelVersion.objects.get(model__name=ready_model)
    ModelVersion.objects.filter(pk=version.pk).update(cache_ttl_seconds=60)
    store_answer(version)
    key, secret = services.create_key(viewer, name="two", model_patterns=["*"], actions=["infer"])
    services.set_limits(key, actor=viewer, requests_per_window=3, window_seconds=3600, burst=3)
    headers = {**bearer(secret), "content-type": "application/json"}
    path = f"/v2/models/{ready_model}/infer"

    miss = keyed_gateway_client.post(path, orjson.dumps(OTHER), headers=headers)
    hits = [keyed_gateway_client.post(path, orjson.dumps(BODY), headers=headers) for _ in range(3)]

    assert miss.status == 504  # queued; no worker serves this model here
    assert miss.headers["x-turnout-cache"] == "miss"
    assert [h.status for h in hits] == [200, 200, 429]
    assert [h.headers["ratelimit"].split(";")[1] for h in hits] == ["r=1", "r=0", "r=0"]
    assert hits[0].headers["x-turnout-cache"] == "hit"
    assert hits[0].json()["outputs"][0]["data"] == [0.25, 0.75]
    assert hits[0].json()["parameters"]["cache"] == "hit"
    assert "rate limit" in hits[2].json()["error"]
    assert "x-turnout-cache" not in hits[2].headers  # refused before it was answered
    stream = redis_keys().request_stream(version.id, NORMAL)  # the level of a key without a plan
    assert redis_client.xinfo_stream(stream)["entries-added"] == 1  # only the miss


def test_a_traced_hit_has_a_cache_span_and_no_enqueue_or_wait(
    gateway: Any, ready_model: str, traced: Any, redis_client: Any
) -> None:
    version = ModelVersion.objects.get(model__name=ready_model)
    ModelVersion.objects.filter(pk=version.pk).update(cache_ttl_seconds=60)
    store_answer(version)
    exporter = traced(0.0)
    sampled = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}

    response = gateway.infer(ready_model, BODY, headers=sampled)

    assert response.status == 200, response.body
    assert response.headers["x-turnout-cache"] == "hit"
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert {"validate", "cache"} <= set(spans)
    assert not {"enqueue", "wait"} & set(spans)
    assert spans["validate"].end_time <= spans["cache"].start_time  # type: ignore[operator]
    assert redis_client.exists(*redis_keys().request_streams(version.id)) == 0
