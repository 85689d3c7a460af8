"""The model page of a pipeline: a Stages table per version, in the order the stages run,
with the window selector's figures; an empty state before any successful request; nothing
new on a plain model's page."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from django.test import Client

from observability import queries, rollup
from registry import services
from registry.models import ModelKind, ModelVersion, RegisteredModel
from registry.pipeline_services import StageSpec, create_pipeline_version
from tests.factories import ModelVersionFactory, RegisteredModelFactory
from tests.support.figures import MODEL, STAGES, observations, pipeline_observations
from tests.support.pipeline_models import build_affine

pytestmark = pytest.mark.django_db

PIPELINE = "sentiment"
HTMX = {"HX-Request": "true"}


def embedded(html: bytes, element_id: str) -> Any:
    found = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html.decode(), re.S)
    assert found, f"no JSON named {element_id}"
    return json.loads(found.group(1))


@pytest.fixture
def browser(client: Client, viewer: Any, redis_client: redis.Redis) -> Client:
    """The viewer, signed in: any signed-in user reads the dashboard."""
    client.force_login(viewer)
    return client


@pytest.fixture
def pipeline(owner: Any, artifact_root: Path) -> RegisteredModel:
    """`sentiment`, a pipeline of `owner` whose version 1 runs preprocess, model, postprocess
    (not the alphabetical order), each a ready version of a model of its own."""
    pipeline = services.create_model(name=PIPELINE, actor=owner, kind=ModelKind.PIPELINE)
    specs, source = [], "input.x"
    for stage in STAGES:
        model = RegisteredModelFactory(name=f"st-{stage}", actor=owner)
        version: ModelVersion = ModelVersionFactory(
            model=model, actor=owner, onnx_bytes=build_affine(4, 1.0, 0.5), validate=True
        )
        specs.append(StageSpec(stage, version, {"x": source}))
        source = f"{stage}.y"
    create_pipeline_version(pipeline, specs, actor=owner)
    return pipeline


def stage_rows(html: bytes, version: str) -> list[list[str]]:
    """The Stages table of one version's section, as cell texts per row."""
    section = re.search(rf'<section class="version" id="version-{version}">(.*?)</section>', html.decode(), re.S)
    assert section, f"no section for version {version}"
    table = re.search(r'<figure class="stages">.*?<tbody>(.*?)</tbody>', section.group(1), re.S)
    assert table, f"no Stages table in version {version}"
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)]


def test_a_plain_models_page_has_no_stages(
    browser: Client, register: Callable[..., Any], inject: Callable[..., Any]
) -> None:
    register(MODEL)
    inject(observations(100, seed=1), dt.datetime.now(dt.UTC))

    response = browser.get(f"/dashboard/models/{MODEL}/?window=5m")

    assert response.status_code == 200
    assert b'class="stages"' not in response.content
    assert b"No stage times" not in response.content
    assert "stages" not in embedded(response.content, "model-summary")


def test_a_pipeline_version_without_a_success_says_where_stage_times_come_from(
    browser: Client, pipeline: RegisteredModel, inject: Callable[..., Any]
) -> None:
    inject(pipeline_observations(30, model=PIPELINE, seed=1, error_share=1.0), dt.datetime.now(dt.UTC))

    response = browser.get(f"/dashboard/models/{PIPELINE}/?window=1h", headers=HTMX)

    assert response.status_code == 200
    assert b"No stage times in the last 1h yet: they come from successful requests" in response.content
    assert embedded(response.content, "model-summary")["stages"] == {"1": []}


def test_a_pipeline_page_shows_each_versions_stages_in_the_order_they_run(
    browser: Client, pipeline: RegisteredModel, inject: Callable[..., Any]
) -> None:
    moment = dt.datetime.now(dt.UTC)
    inject(pipeline_observations(200, model=PIPELINE, seed=1, error_share=0.1), moment - dt.timedelta(minutes=20))
    inject(pipeline_observations(100, model=PIPELINE, seed=2), moment)
    # Version 2 is not in the registry (deleted, or another control plane's): its stages by name.
    inject(pipeline_observations(50, model=PIPELINE, version="2", seed=3), moment)
    rollup.roll_up_minutes(moment)

    hour = browser.get(f"/dashboard/models/{PIPELINE}/?window=1h")
    five = browser.get(f"/dashboard/models/{PIPELINE}/?window=5m", headers=HTMX)
    day = browser.get(f"/dashboard/models/{PIPELINE}/?window=24h", headers=HTMX)  # stages from hour bins

    assert hour.status_code == five.status_code == day.status_code == 200
    for response, window in ((hour, "1h"), (five, "5m"), (day, "24h")):
        expected = queries.stage_summary(window, model=PIPELINE, version="1", now=moment)
        by_stage = {f.stage: f for f in expected}
        rows = stage_rows(response.content, "1")
        assert [row[0] for row in rows] == list(STAGES)
        for stage, requests, p50, p95, p99, share in rows:
            figures = by_stage[stage]
            assert int(requests) == figures.requests
            assert (p50, p95, p99) == tuple(f"{value:.2f}" for value in (figures.p50, figures.p95, figures.p99))
            assert share == f"{figures.share_percent:.1f} %"
        summary = embedded(response.content, "model-summary")["stages"]
        assert [s["stage"] for s in summary["1"]] == list(STAGES)
        assert [s["stage"] for s in summary["2"]] == sorted(STAGES)
    assert stage_rows(day.content, "1") == stage_rows(hour.content, "1")
    assert sum(int(row[1]) for row in stage_rows(hour.content, "1")) == 3 * (
        sum(o.code == 200 for o in pipeline_observations(200, seed=1, error_share=0.1)) + 100
    )
    assert [row[0] for row in stage_rows(five.content, "2")] == sorted(STAGES)
    assert b'hx-get="/dashboard/models/sentiment/?window=5m"' in five.content
