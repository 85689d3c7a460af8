"""Fallbacks through a real worker: a version that fails on some inputs answers them through a
fallback version, then through human review when that fails too; a version too slow for the
request's deadline answers through a faster one within it; a full queue answers through the chain;
the client's own mistakes never fall back; and no request is answered twice."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
import redis
from django.conf import settings
from prometheus_client import REGISTRY

from registry.fallback_services import set_fallback
from registry.models import RegisteredModel
from rollouts import services as rollouts
from tests.integration.conftest import AccessLog, as_json_line
from tests.integration.rollouts import wait_for_routing
from tests.support.processes import wait_for
from tests.support.rollout_models import (
    body,
    champion_model,
    fails_on_large_first_feature,
    slow_on_large_first_feature,
)
from tests.support.serving import Registry, Workers
from tests.support.v2 import Gateway

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.timeout(180)]


def fall_back(registry: Registry, gateway: Gateway, name: str, policy: dict[str, Any]) -> None:
    set_fallback(RegisteredModel.objects.get(name=name), policy, actor=registry.owner)
    gateway.app.catalog.invalidate(name)  # the change notice would do it a moment later


def fallbacks_counted(model: str, version: str, fallback: str, reason: str) -> float:
    labels = {"model": model, "version": version, "fallback": fallback, "reason": reason}
    return REGISTRY.get_sample_value("turnout_fallback_answers_total", labels) or 0.0


def test_a_failing_version_answers_through_the_fallback_version_then_through_human_review(
    registry: Registry, worker: Workers, gateway: Gateway, access_log: AccessLog
) -> None:
    # Given v3 in production, which fails on a first feature of 10 or more, v2 which fails from 20 on,
    # and a chain: v2, then human review
    registry.add("inf-fb-errors", champion_model(), production=False)
    wide = registry.add("inf-fb-errors", fails_on_large_first_feature(table_rows=20), production=False)
    failing = registry.add("inf-fb-errors", fails_on_large_first_feature(table_rows=10))
    for version in (wide, failing):
        gateway.wait_loaded("inf-fb-errors", version.number, worker)
    chain = [{"kind": "version", "version": wide.number}, {"kind": "human_review"}]
    fall_back(registry, gateway, "inf-fb-errors", {"on": ["model_error"], "chain": chain})
    before = fallbacks_counted("inf-fb-errors", "3", "version", "model_error")

    # When one request runs fine, one fails on v3 only, and one fails on both
    fine = gateway.infer("inf-fb-errors", body(first=3.0, request_id="fine"))
    rescued = gateway.infer("inf-fb-errors", body(first=15.0, request_id="rescued"))
    reviewed = gateway.infer("inf-fb-errors", body(first=50.0, request_id="reviewed"))

    # Then the first is v3's own answer, with no fallback
    assert fine.status == 200, fine.body
    assert "x-turnout-fallback" not in fine.headers
    assert "fallback" not in fine.json()["parameters"]
    # and the second is v2's answer (row 15 of its table), saying so
    assert rescued.status == 200, rescued.body
    assert rescued.headers["x-turnout-fallback"] == "version"
    assert rescued.headers["x-turnout-fallback-reason"] == "model_error"
    assert rescued.headers["x-turnout-model-version"] == str(wide.number)
    answer = rescued.json()
    assert answer["model_version"] == str(wide.number)
    assert answer["id"] == "rescued"
    assert answer["parameters"] == {"arm": "champion", "fallback": "version", "fallback_reason": "model_error"}
    assert answer["outputs"][0]["data"] == [45.0, 46.0, 47.0]
    # and the third needs a person: 200, no outputs
    assert reviewed.status == 200, reviewed.body
    assert reviewed.headers["x-turnout-fallback"] == "human_review"
    review = reviewed.json()
    assert review["outputs"] == []
    assert review["parameters"]["human_review_required"] is True
    assert review["parameters"]["fallback_reason"] == "model_error"
    # and each answer is counted under the version that failed, once
    gateway.app.recorder.apply_metrics()
    assert fallbacks_counted("inf-fb-errors", "3", "version", "model_error") == before + 1
    assert fallbacks_counted("inf-fb-errors", "3", "human_review", "model_error") >= 1
    lines = [as_json_line(record) for record in access_log()]
    assert [(line["request_id"], line["status"], line.get("fallback")) for line in lines][-3:] == [
        (fine.headers["x-request-id"], 200, None),
        (rescued.headers["x-request-id"], 200, "version"),
        (reviewed.headers["x-request-id"], 200, "human_review"),
    ]


def test_without_a_covering_trigger_or_for_the_clients_own_mistake_the_error_reaches_the_client(
    registry: Registry, worker: Workers, gateway: Gateway
) -> None:
    # Given a failing version whose fallback only covers timeouts
    registry.add("inf-fb-narrow", champion_model(), production=False)
    failing = registry.add("inf-fb-narrow", fails_on_large_first_feature(table_rows=10))
    gateway.wait_loaded("inf-fb-narrow", failing.number, worker)
    fall_back(registry, gateway, "inf-fb-narrow", {"on": ["timeout"], "chain": [{"kind": "human_review"}]})

    # When the model fails, and when a client sends the wrong shape
    failed = gateway.infer("inf-fb-narrow", body(first=50.0))
    malformed = gateway.infer(
        "inf-fb-narrow", {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    )

    # Then both are errors, unchanged by the chain
    assert failed.status == 400
    assert "could not run on this input" in failed.json()["error"]
    assert "x-turnout-fallback" not in failed.headers
    assert malformed.status == 400
    assert "dimension 1 is 3" in malformed.json()["error"]


def test_a_version_too_slow_for_the_deadline_answers_through_a_faster_one_within_it(
    registry: Registry, worker: Workers, gateway: Gateway
) -> None:
    # Given a fast v1 and, in production, a v2 that takes about a second on large inputs, and a 300 ms
    # reserve for the chain
    fast = registry.add("inf-fb-slow", champion_model(), production=False)
    slow = registry.add("inf-fb-slow", slow_on_large_first_feature(), default_timeout_ms=800)
    for version in (fast, slow):
        gateway.wait_loaded("inf-fb-slow", version.number, worker)
    fall_back(
        registry, gateway, "inf-fb-slow", {"chain": [{"kind": "version", "version": fast.number}], "reserve_ms": 300}
    )
    expected = gateway.infer("inf-fb-slow", body(first=5e5), version=fast.number).json()["outputs"]

    # When a client asks with the default deadline of 800 ms
    started = time.monotonic()
    answer = gateway.infer("inf-fb-slow", body(first=5e5))
    elapsed_ms = (time.monotonic() - started) * 1000

    # Then v1 answers, for a timeout, within the deadline (the slow version had 500 ms of it)
    assert answer.status == 200, answer.body
    assert answer.headers["x-turnout-fallback"] == "version"
    assert answer.headers["x-turnout-fallback-reason"] == "timeout"
    assert answer.json()["outputs"] == expected
    assert elapsed_ms < 800 + 400, elapsed_ms  # the deadline, and room for a loaded machine
    total = float(answer.headers["server-timing"].split("total;dur=")[1].split(",")[0])
    assert 500 <= total < 800 + 400


def test_a_slow_version_answers_from_the_kept_answer_within_the_deadline_and_without_one_goes_on(
    registry: Registry, worker: Workers, gateway: Gateway, redis_conn: redis.Redis
) -> None:
    # Given v1 in production, a chain of the kept answer then human review, and one good answer of v1's
    registry.add("inf-fb-cached", champion_model())
    gateway.wait_loaded("inf-fb-cached", 1, worker)
    chain = [{"kind": "cache", "ttl_seconds": 60}, {"kind": "human_review"}]
    fall_back(registry, gateway, "inf-fb-cached", {"chain": chain, "reserve_ms": 200})
    first = gateway.infer("inf-fb-cached", body(first=5e5))
    assert first.status == 200, first.body
    assert "x-turnout-fallback" not in first.headers
    kept = f"{settings.TURNOUT['REDIS_PREFIX']}:cache:fb:inf-fb-cached:*"

    def kept_yet() -> bool:
        gateway.client.loop.run_until_complete(asyncio.sleep(0.05))  # the gateway's loop keeps it after answering
        return any(redis_conn.scan_iter(match=kept))

    assert wait_for(kept_yet, timeout=5), "the answer was not kept"

    # When production moves to a v2 that takes about a second on that input (deadline 800 ms)
    slow = registry.add("inf-fb-cached", slow_on_large_first_feature(), default_timeout_ms=800)
    gateway.wait_loaded("inf-fb-cached", slow.number, worker)
    gateway.app.catalog.invalidate("inf-fb-cached")
    started = time.monotonic()
    again = gateway.infer("inf-fb-cached", body(first=5e5))
    elapsed_ms = (time.monotonic() - started) * 1000
    other = gateway.infer("inf-fb-cached", body(first=4e5))

    # Then the same input gets v1's kept answer, for a timeout, within the deadline
    assert again.status == 200, again.body
    assert again.headers["x-turnout-fallback"] == "cache"
    assert again.headers["x-turnout-fallback-reason"] == "timeout"
    assert again.json()["model_version"] == "1"
    assert again.json()["outputs"] == first.json()["outputs"]
    assert again.json()["parameters"]["fallback"] == "cache"
    assert elapsed_ms < 800 + 400, elapsed_ms
    # and another input, with no kept answer, goes on to human review
    assert other.status == 200, other.body
    assert other.headers["x-turnout-fallback"] == "human_review"
    assert other.json()["outputs"] == []


def test_a_full_queue_answers_through_the_chain_and_nothing_is_answered_twice(
    registry: Registry, worker: Workers, gateway: Gateway, access_log: AccessLog
) -> None:
    # Given a slow version (about 0.1 s a request here) whose queue holds one request, with human review
    # for overload
    registry.add("inf-fb-full", slow_on_large_first_feature(), max_queue_size=1, max_batch_size=1)
    gateway.wait_loaded("inf-fb-full", 1, worker)
    fall_back(
        registry, gateway, "inf-fb-full", {"on": ["overload"], "chain": [{"kind": "human_review", "status": 202}]}
    )

    # When eight clients ask at once
    async def burst() -> list[Any]:
        return await asyncio.gather(
            *(gateway.ainfer("inf-fb-full", body(first=5e4, request_id=f"r{n}")) for n in range(8))
        )

    answers = gateway.client.loop.run_until_complete(burst())

    # Then those that found the queue full get human review (202), the others the model's answer
    statuses = sorted(a.status for a in answers)
    assert set(statuses) <= {200, 202}, [a.body for a in answers]
    assert 202 in statuses
    assert 200 in statuses
    for answer in answers:
        if answer.status == 202:
            assert answer.headers["x-turnout-fallback"] == "human_review"
            assert answer.headers["x-turnout-fallback-reason"] == "overload"
            assert answer.json()["parameters"]["human_review_required"] is True
        else:
            assert len(answer.json()["outputs"]) == 1
    # and each request was answered exactly once, under its own id
    assert sorted(a.json()["id"] for a in answers) == [f"r{n}" for n in range(8)]
    ids = [as_json_line(record)["request_id"] for record in access_log()]
    assert len(ids) == len(set(ids)) == 8


def test_in_an_experiment_an_answer_from_the_chain_takes_no_feedback(
    registry: Registry, worker: Workers, gateway: Gateway, redis_conn: redis.Redis
) -> None:
    # Given an experiment between a working control and a treatment that fails on large inputs,
    # and human review as the model's fallback
    control = registry.add("inf-fb-exp", champion_model())
    treatment = registry.add("inf-fb-exp", fails_on_large_first_feature(table_rows=10), production=False)
    for version in (control, treatment):
        gateway.wait_loaded("inf-fb-exp", version.number, worker)
    rollouts.start_experiment(
        control.model, [("control", control, 50), ("treatment", treatment, 50)], actor=registry.owner
    )
    wait_for_routing(gateway, "inf-fb-exp", lambda routing: routing is not None)
    fall_back(registry, gateway, "inf-fb-exp", {"chain": [{"kind": "human_review"}]})

    # When clients send inputs the treatment cannot run, each routed by its own key
    answers = [
        gateway.infer("inf-fb-exp", body(first=50.0, request_id=f"exp-{n}"), headers={"x-routing-key": f"user-{n}"})
        for n in range(16)
    ]
    for _ in range(20):  # the arms are remembered on the gateway's loop, after answering
        gateway.client.loop.run_until_complete(asyncio.sleep(0.05))

    # Then the control's answers take feedback, and the treatment's, given by the chain, do not
    by_arm: dict[str, list[str]] = {"control": [], "treatment": []}
    for answer in answers:
        assert answer.status == 200, answer.body
        by_arm[answer.headers["x-turnout-arm"]].append(answer.json()["id"])
        assert ("x-turnout-fallback" in answer.headers) == (answer.headers["x-turnout-arm"] == "treatment")
    assert by_arm["control"]
    assert by_arm["treatment"]
    for request_id in by_arm["control"]:
        assert feedback(gateway, "inf-fb-exp", request_id).status == 200
    for request_id in by_arm["treatment"]:
        refused = feedback(gateway, "inf-fb-exp", request_id)
        assert refused.status == 404
        assert "awaits feedback" in refused.json()["error"]


def feedback(gateway: Gateway, model: str, request_id: str) -> Any:
    raw = orjson.dumps({"id": request_id, "reward": 1})
    return gateway.client.request("POST", f"/v2/models/{model}/feedback", raw, {"content-type": "application/json"})
