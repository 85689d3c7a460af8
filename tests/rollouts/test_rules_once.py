"""Rules live once, in the rollouts service, and reads never write.

- A rule of starting a rollout (the canary's steps, an experiment's arms) is checked by
  `rollouts.services`; the API and the page only parse their input and show the
  service's one message next to the field at fault.
- Opening an experiment's report reads its always-valid p-values; the periodic analysis
  (beat's `rollouts.analyze`) is what keeps their running minimum.
"""

from __future__ import annotations

import html
from typing import Any

import pytest
import redis
from django.test import Client
from rest_framework.test import APIClient

from controlplane.htmx import sentence
from controlplane.redis_client import redis_keys
from registry.models import ModelVersion
from rollouts import services
from rollouts.analysis import update_experiment_p_values
from rollouts.models import Arm, Rollout
from rollouts.tasks import analyze
from tests.rollouts.conftest import Catalog
from tests.support.clients import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_redis(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


def service_message(steps: list[float]) -> str:
    with pytest.raises(services.RolloutError) as refused:
        services.check_steps(steps)
    assert refused.value.field == "steps"
    return str(refused.value)


@pytest.mark.parametrize("steps", [[10, 50], [50, 50, 100], [50, 10, 100], [0, 100]])
def test_the_api_and_the_page_refuse_bad_steps_with_the_services_one_message(
    catalog: Catalog, steps: list[float]
) -> None:
    message = service_message(steps)
    api = signed_in(catalog.owner, APIClient)
    page = signed_in(catalog.owner, Client)

    answer = api.post(
        "/api/rollouts/", {"kind": "canary", "model": "fraud", "version": 2, "steps": steps}, format="json"
    )
    form = page.post(
        "/rollouts/new/fraud/",
        {
            "kind": "canary",
            "version": "2",
            "steps": ", ".join(f"{s:g}" for s in steps),
            "step_seconds": "60",
            "analysis_interval_seconds": "10",
            "min_requests": "10",
            "routing_header": "x-routing-key",
        },
    )

    assert answer.status_code == 400, answer.content
    assert answer.json()["steps"] == [message]
    assert form.status_code == 200
    assert html.escape(sentence(message) + ".", quote=True) in form.content.decode()
    assert not Rollout.objects.exists()


def test_an_experiment_without_two_arms_is_refused_by_the_service_on_both_surfaces(catalog: Catalog) -> None:
    version = ModelVersion.objects.get(model__name="fraud", number=1)
    with pytest.raises(services.RolloutError) as refused:
        services.check_arms([("control", version, 1.0)], None)
    api = signed_in(catalog.owner, APIClient)

    answer = api.post(
        "/api/rollouts/",
        {"kind": "experiment", "model": "fraud", "arms": [{"name": "control", "version": 1, "weight": 1}]},
        format="json",
    )

    assert answer.status_code == 400
    assert answer.json()["arms"] == [str(refused.value)]
    assert not Rollout.objects.exists()


def add_rewards(client: redis.Redis, rollout: Rollout, arm: str, n: int, successes: int) -> None:
    key = redis_keys().reward_moments(rollout.pk, arm)
    client.hincrby(key, "n", n)
    client.hincrbyfloat(key, "sum", successes)
    client.hincrbyfloat(key, "sumsq", successes)


def stored_p(rollout: Rollout, arm: str) -> float:
    return Arm.objects.get(rollout=rollout, name=arm).p_value


def reported_p(api: APIClient, rollout: Rollout) -> Any:
    arms = {a["name"]: a for a in api.get(f"/api/rollouts/{rollout.pk}/").json()["report"]["arms"]}
    return arms["treatment"]["comparison"]["p_value"]


def test_opening_an_experiment_report_never_writes_and_the_periodic_analysis_keeps_the_minimum(
    catalog: Catalog, redis_client: redis.Redis
) -> None:
    fraud = catalog.registry
    versions = {v.number: v for v in ModelVersion.objects.filter(model__name="fraud")}
    rollout = services.start_experiment(
        versions[1].model, [("control", versions[1], 50), ("treatment", versions[2], 50)], actor=fraud.owner
    )
    add_rewards(redis_client, rollout, "control", 2_000, 200)
    add_rewards(redis_client, rollout, "treatment", 2_000, 300)
    api = signed_in(catalog.owner, APIClient)

    first, second = reported_p(api, rollout), reported_p(api, rollout)

    assert first == second < 0.01  # strong evidence, shown at once
    assert stored_p(rollout, "treatment") == 1.0  # but reading stored nothing

    analyze()  # beat's periodic task

    assert stored_p(rollout, "treatment") == pytest.approx(first, abs=1e-6)  # the report rounds to 6 places
    # More data that weakens the evidence: the always-valid p-value does not rise again.
    add_rewards(redis_client, rollout, "treatment", 20_000, 2_000)
    assert reported_p(api, rollout) == pytest.approx(first, abs=1e-6)  # the report rounds to 6 places
    assert update_experiment_p_values() == 0
    assert stored_p(rollout, "treatment") == pytest.approx(first, abs=1e-6)  # the report rounds to 6 places
