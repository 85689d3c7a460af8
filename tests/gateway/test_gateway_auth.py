"""API keys on the inference path: one 401 for every bad key, scopes, rate limits."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from typing import Any

import pytest
from django.utils import timezone

from accounts import services
from dataplane.priority import NORMAL
from tests.support.asgi import AsgiClient
from tests.support.clients import bearer

# The gateway reads keys and models on its own connections: the data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


def test_missing_malformed_unknown_revoked_and_expired_keys_get_the_same_401(
    keyed_gateway_client: AsgiClient, viewer: Any, ready_model: str
) -> None:
    revoked, revoked_secret = services.create_key(viewer, name="r", model_patterns=["*"], actions=["read"])
    services.revoke_key(revoked, actor=viewer)
    _, expired_secret = services.create_key(
        viewer, name="e", model_patterns=["*"], actions=["read"], expires_at=timezone.now() + dt.timedelta(seconds=1)
    )
    _, good = services.create_key(viewer, name="g", model_patterns=["*"], actions=["read"])
    unknown = good[:8] + "ZZZZZZZZZZZZ" + good[20:-6]
    from accounts.keyformat import checksum

    unknown += checksum(unknown)
    time.sleep(1.1)
    cases = {
        "missing": {},
        "malformed": bearer("not-a-key"),
        "wrong scheme": {"authorization": f"Basic {good}"},
        "unknown": bearer(unknown),
        "revoked": bearer(revoked_secret),
        "expired": bearer(expired_secret),
    }
    answers = {}
    for case, headers in cases.items():
        response = keyed_gateway_client.get(f"/v2/models/{ready_model}", headers=headers)
        answers[case] = (response.status, response.body, response.headers.get("www-authenticate"))

    assert len(set(answers.values())) == 1, answers
    status, body, challenge = answers["missing"]
    assert status == 401
    assert challenge is not None
    assert challenge.startswith("Bearer")
    assert b"valid API key is required" in body
    assert keyed_gateway_client.get(f"/v2/models/{ready_model}", headers=bearer(good)).status == 200
    assert keyed_gateway_client.get(f"/v2/models/{ready_model}", headers={"x-api-key": good}).status == 200


def test_a_key_outside_its_model_scope_sees_404_and_without_the_action_403(
    keyed_gateway_client: AsgiClient, viewer: Any, ready_model: str
) -> None:
    _, other_models = services.create_key(
        viewer, name="o", model_patterns=["fraud-*"], actions=["read", "infer"], future_models=True
    )
    _, read_only = services.create_key(viewer, name="ro", model_patterns=["*"], actions=["read"])

    hidden = keyed_gateway_client.get(f"/v2/models/{ready_model}", headers=bearer(other_models))
    missing = keyed_gateway_client.get("/v2/models/does-not-exist", headers=bearer(other_models))
    forbidden = keyed_gateway_client.post(f"/v2/models/{ready_model}/infer", b"{}", headers=bearer(read_only))

    assert (hidden.status, hidden.json()) == (404, {"error": f"unknown model '{ready_model}'"})
    assert missing.status == 404
    assert forbidden.status == 403
    assert "'infer' scope" in forbidden.json()["error"]


def test_200_concurrent_requests_against_a_limit_of_50_let_exactly_50_through(
    keyed_gateway_client: AsgiClient, viewer: Any, ready_model: str, redis_client: Any
) -> None:
    key, secret = services.create_key(viewer, name="limited", model_patterns=["*"], actions=["read"])
    # One new request per 72 s after the burst: none can sneak in while the test runs.
    services.set_limits(key, actor=viewer, requests_per_window=50, window_seconds=3600, burst=50)

    async def burst() -> list[Any]:
        return await asyncio.gather(
            *[
                keyed_gateway_client.arequest("GET", f"/v2/models/{ready_model}", headers=bearer(secret))
                for _ in range(200)
            ]
        )

    responses = keyed_gateway_client.loop.run_until_complete(burst())

    statuses = Counter(r.status for r in responses)
    assert statuses == {200: 50, 429: 150}
    refused = next(r for r in responses if r.status == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-policy"] == '"burst";q=50;w=3600'
    assert refused.headers["ratelimit"].startswith('"burst";r=0;')
    assert "rate limit" in refused.json()["error"]
    passed = [r for r in responses if r.status == 200]
    assert sorted(int(r.headers["ratelimit"].split("r=")[1].split(";")[0]) for r in passed) == list(range(50))


def test_a_daily_quota_refuses_with_429_once_used_up(
    keyed_gateway_client: AsgiClient, viewer: Any, ready_model: str, redis_client: Any
) -> None:
    key, secret = services.create_key(viewer, name="quota", model_patterns=["*"], actions=["read"])
    services.set_limits(key, actor=viewer, requests_per_window=1000, window_seconds=1, burst=1000, daily_quota=3)

    statuses = [keyed_gateway_client.get(f"/v2/models/{ready_model}", headers=bearer(secret)).status for _ in range(5)]

    assert statuses == [200, 200, 200, 429, 429]
    refused = keyed_gateway_client.get(f"/v2/models/{ready_model}", headers=bearer(secret))
    assert "daily quota" in refused.json()["error"]
    assert '"daily";q=3;w=86400' in refused.headers["ratelimit-policy"]


def test_inference_is_rate_limited_in_the_enqueue_and_a_refused_request_is_never_queued(
    keyed_gateway_client: AsgiClient, viewer: Any, ready_model: str, redis_client: Any
) -> None:
    from controlplane.redis_client import redis_keys
    from registry.models import ModelVersion

    key, secret = services.create_key(viewer, name="one", model_patterns=["*"], actions=["infer"])
    services.set_limits(key, actor=viewer, requests_per_window=1, window_seconds=3600, burst=1)
    body = (
        b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],'
        b'"parameters":{"timeout":100000}}'
    )
    headers = {**bearer(secret), "content-type": "application/json"}

    first = keyed_gateway_client.post(f"/v2/models/{ready_model}/infer", body, headers=headers)
    second = keyed_gateway_client.post(f"/v2/models/{ready_model}/infer", body, headers=headers)

    assert first.status == 504  # admitted and queued; no worker serves this model here
    assert second.status == 429
    assert second.headers["ratelimit-policy"] == '"burst";q=1;w=3600'
    assert int(second.headers["retry-after"]) >= 1
    version = ModelVersion.objects.get(model__name=ready_model)
    stream = redis_keys().request_stream(version.id, NORMAL)
    assert redis_client.xinfo_stream(stream)["entries-added"] == 1
