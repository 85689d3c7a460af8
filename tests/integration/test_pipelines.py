"""Pipelines through a real worker: the `sentiment` demo answers strings end to end, a stage
past its deadline answers 504 naming it, a wiring that does not fit is refused before anything
runs, and canaries between pipeline versions are promoted or rolled back as a model's are."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from ops.demo_pipeline import register_sentiment
from registry import services
from registry.models import ModelKind
from registry.pipeline_services import PipelineRefused, StageSpec, create_pipeline_version
from rollouts import services as rollout_services
from rollouts.models import RolloutStatus
from tests.integration.conftest import AccessLog, as_json_line
from tests.integration.rollouts import FAST_STEPS, audit_actions, drive, wait_for_routing
from tests.support.pipeline_models import build_affine, build_slow
from tests.support.rollout_models import FEATURES, champion_model, fails_on_large_first_feature
from tests.support.serving import Registry, Workers
from tests.support.v2 import Gateway

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.timeout(180)]


def texts(*items: str) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(items)], "data": list(items)}]}


def timing(response: Any) -> dict[str, float]:
    parts = [part.strip().split(";") for part in response.headers["server-timing"].split(",")]
    return {part[0]: float(part[1].removeprefix("dur=")) for part in parts}


def test_the_sentiment_pipeline_labels_strings_end_to_end(
    registry: Registry, worker: Workers, gateway: Gateway, access_log: AccessLog
) -> None:
    # Given the demo pipeline, its stage models named so that no worker serves them on their own
    version, created = register_sentiment(registry.owner, name="inf-sentiment", stage_prefix="st-")
    assert created
    gateway.wait_loaded("inf-sentiment", version.number, worker)

    # When a client sends three strings, one empty and one not in English
    answer = gateway.infer("inf-sentiment", texts("What a great movie, I loved it!", "boring, awful and terrible", ""))

    # Then each string has its label, confidence and scores, row by row
    assert answer.status == 200, answer.body
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES"
    assert outputs["label"]["data"] == ["positive", "negative", "negative"]
    assert outputs["label"]["shape"] == [3]
    assert outputs["scores"]["shape"] == [3, 2]
    assert outputs["confidence"]["data"][0] > 0.9
    assert outputs["confidence"]["data"][2] == pytest.approx(0.5)
    # and every stage's time is in Server-Timing, between compute (their sum) and total
    figures = timing(answer)
    assert {"preprocess", "model", "postprocess", "compute", "total"} <= set(figures)
    stages = figures["preprocess"] + figures["model"] + figures["postprocess"]
    assert stages <= figures["compute"] + 0.01
    # and in the access log line, and in the stage histogram under each stage's name
    [record] = access_log()
    assert set(as_json_line(record)["stages_ms"]) == {"preprocess", "model", "postprocess"}
    gateway.app.recorder.apply_metrics()
    for stage in ("preprocess", "model", "postprocess"):
        labels = {"model": "inf-sentiment", "version": "1", "arm": "champion", "stage": stage}
        assert REGISTRY.get_sample_value("turnout_inference_stage_seconds_count", labels) == 1
    # and the metadata describes the pipeline's inputs and outputs, not a stage's
    meta = gateway.get("/v2/models/inf-sentiment").json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "confidence", "scores"]
    assert meta["platform"] == "turnout_pipeline"
    assert meta["parameters"]["stages"] == ["preprocess", "model", "postprocess"]


def test_concurrent_requests_share_one_batch_through_every_stage(
    registry: Registry, worker: Workers, gateway: Gateway
) -> None:
    version, _ = register_sentiment(registry.owner, name="inf-sentiment-batch", stage_prefix="st-")
    gateway.wait_loaded("inf-sentiment-batch", version.number, worker)
    sentences = [("a wonderful, delightful film", "positive"), ("dull and boring", "negative")] * 16

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(*(gateway.ainfer("inf-sentiment-batch", texts(s)) for s, _ in sentences))

    answers = gateway.client.loop.run_until_complete(all_at_once())
    assert [a.status for a in answers] == [200] * len(sentences)
    labels = [a.json()["outputs"][0]["data"][0] for a in answers]
    assert labels == [label for _, label in sentences]
    assert max(int(a.headers["x-turnout-batch-size"]) for a in answers) > 1


def test_a_stage_past_its_deadline_answers_504_naming_it_and_the_worker_goes_on(
    registry: Registry, worker: Workers, gateway: Gateway
) -> None:
    # Given a pipeline whose middle stage takes about half a second, and may take 100 ms
    first = registry.add("st-deadline-scale", build_affine(16, 1.0, 0.0), production=False, max_batch_size=2)
    slow = registry.add("st-deadline-slow", build_slow(16, 400_000), production=False, max_batch_size=2)
    version = registry.add_pipeline(
        "inf-deadline",
        [StageSpec("scale", first), StageSpec("slow", slow, {"x": "scale.y"}, timeout_ms=100)],
        outputs={"y": "slow.y"},
        max_batch_size=2,
    )
    gateway.wait_loaded("inf-deadline", version.number, worker, timeout=90)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [1.0] * 16}]}

    # When a request runs it
    answer = gateway.infer("inf-deadline", body)

    # Then the slow stage is stopped at its deadline and the answer names it
    assert answer.status == 504, answer.body
    assert answer.json()["error"] == "stage 'slow' passed its deadline of 100 ms"
    # and the worker still answers: a pipeline of the fast stage alone works
    fast = registry.add_pipeline("inf-deadline-fast", [StageSpec("scale", first)])
    gateway.wait_loaded("inf-deadline-fast", fast.number, worker)
    again = gateway.infer("inf-deadline-fast", body)
    assert again.status == 200, again.body
    assert again.json()["outputs"][0]["data"] == [1.0] * 16


def test_a_wiring_that_does_not_fit_is_refused_at_creation(registry: Registry, worker: Workers) -> None:
    wide = registry.add("st-wiring-wide", build_affine(4, 1.0, 0.0, out_dim=8), production=False)
    narrow = registry.add("st-wiring-narrow", build_affine(4, 1.0, 0.0), production=False)
    pipeline = services.create_model(name="inf-wiring", actor=registry.owner, kind=ModelKind.PIPELINE)
    with pytest.raises(PipelineRefused) as refused:
        create_pipeline_version(
            pipeline, [StageSpec("wide", wide), StageSpec("narrow", narrow, {"x": "wide.y"})], actor=registry.owner
        )
    assert str(refused.value) == (
        "stage 'narrow' input 'x' (FP32 [-1, 4]) cannot take 'wide.y' (FP32 [-1, 8]): dimension 1 is 4 there, 8 here"
    )
    assert not pipeline.versions.exists()


def start_pipeline_canary(registry: Registry, gateway: Gateway, worker: Workers, name: str, canary_stage: bytes) -> Any:
    """A pipeline whose v1 (in production) and v2 (the canary) differ in their one model stage,
    each fed by the same scaling stage."""
    scale = registry.add(f"st-{name}-scale", build_affine(FEATURES, 1.0, 0.0, y="input"), production=False)
    champion_stage = registry.add(f"st-{name}-champion", champion_model(), production=False)
    canary_version = registry.add(f"st-{name}-canary", canary_stage, production=False)
    first = [StageSpec("scale", scale, {"x": "input.input"})]
    champion = registry.add_pipeline(name, [*first, StageSpec("model", champion_stage)])
    canary = registry.add_pipeline(name, [*first, StageSpec("model", canary_version)], production=False)
    for version in (champion, canary):
        gateway.wait_loaded(name, version.number, worker)
    config = {**FAST_STEPS, "gates": {"min_requests": 20, "max_p95_ratio": 3.0}}
    rollout = rollout_services.start_canary(champion.model, canary, actor=registry.owner, config=config)
    wait_for_routing(gateway, name, lambda routing: routing is not None and routing.rollout_id == rollout.pk)
    return champion, canary, rollout


def test_a_canary_between_pipeline_versions_is_promoted_like_a_models(
    registry: Registry, worker: Workers, gateway: Gateway
) -> None:
    champion, canary, rollout = start_pipeline_canary(
        registry, gateway, worker, "inf-pipe-canary-ok", champion_model(seed=1)
    )

    sent = drive(gateway, "inf-pipe-canary-ok", rollout, bad_input=lambda i: False)

    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PROMOTED, rollout.outcome
    assert audit_actions(rollout)[-1] == "rollout.promoted"
    assert services.serving_version(champion.model) == canary
    assert [s for s in sent if s.status != 200] == []
    assert {s.arm for s in sent} == {"champion", "canary"}
    assert {(s.arm, s.version) for s in sent[-40:]} == {("champion", str(canary.number))}


def test_a_canary_pipeline_version_that_fails_on_some_inputs_is_rolled_back(
    registry: Registry, worker: Workers, gateway: Gateway
) -> None:
    champion, _canary, rollout = start_pipeline_canary(
        registry, gateway, worker, "inf-pipe-canary-bad", fails_on_large_first_feature()
    )

    sent = drive(gateway, "inf-pipe-canary-bad", rollout, bad_input=lambda i: i % 3 == 0)

    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ROLLED_BACK, rollout.outcome
    assert rollout.outcome["gate"] == "error_rate_increase"
    assert services.serving_version(champion.model) == champion
    assert audit_actions(rollout)[-1] == "rollout.rolled_back"
    refusals = [s for s in sent if s.status != 200]
    assert refusals
    assert all(s.bad_input for s in refusals)
    # the refusal names the stage that could not run the input
    assert all(s.error.startswith("stage 'model': the model could not run on this input") for s in refusals)
