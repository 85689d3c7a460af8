"""Rollouts are safe by default: a version whose signature does not fit production's takes
none of its traffic (service, API, page), irreversible actions ask first and name their
effect, and an arm that fails far more often than production is not promoted.

Shares the module registry of conftest.py (`catalog`): `fraud` (owner olga) has v1 in
production, v2 and v3 ready, v4 pending. The incompatible version (v5, five features where
production takes four) is uploaded and validated inside the test that needs it.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEntry
from registry import services as registry_services
from registry.demo_models import build_mlp
from registry.models import ModelVersion, RegisteredModel
from rollouts import services
from rollouts.models import Rollout, RolloutStatus
from tests.rollouts.conftest import Catalog
from tests.support.clients import signed_in
from tests.support.figures import observations

pytestmark = pytest.mark.django_db

WIDER = "input 'input' has shape [-1, 5] in v5, [-1, 4] in production (v1)"


@pytest.fixture(autouse=True)
def clean_redis(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


@pytest.fixture
def wider(catalog: Catalog) -> ModelVersion:
    """fraud v5: ready, but it takes five features where production (v1) takes four."""
    version = catalog.registry.add("fraud", build_mlp(5, [8], 3, seed=7), production=False)
    assert (version.number, version.status) == (5, "ready")
    return version


def text(answer: Any) -> str:
    return html.unescape(answer.content.decode())


def fraud() -> RegisteredModel:
    return RegisteredModel.objects.get(name="fraud")


def version(number: int) -> ModelVersion:
    return ModelVersion.objects.get(model__name="fraud", number=number)


# --- A version that does not fit production's signature ---------------------------------------------------------


def test_an_incompatible_version_cannot_be_a_canary_a_shadow_or_an_experiment_arm(
    catalog: Catalog, wider: ModelVersion
) -> None:
    attempts: list[Callable[[], Any]] = [
        lambda: services.start_canary(fraud(), wider, actor=catalog.owner),
        lambda: services.start_shadow(fraud(), wider, actor=catalog.owner),
        lambda: services.start_experiment(
            fraud(), [("control", version(1), 50), ("treatment", wider, 50)], actor=catalog.owner
        ),
    ]
    for attempt in attempts:
        with pytest.raises(services.RolloutError) as refused:
            attempt()
        assert WIDER in str(refused.value)
    assert not Rollout.objects.filter(model__name="fraud").exists()
    assert not AuditEntry.objects.filter(action__startswith="rollout.").exists()


def test_the_api_refuses_an_incompatible_canary_naming_the_tensor(catalog: Catalog, wider: ModelVersion) -> None:
    api = signed_in(catalog.owner, APIClient)
    payload = {"kind": "canary", "model": "fraud", "version": 5}

    answer = api.post("/api/rollouts/", payload, format="json")

    message = f"version 5 cannot take production's traffic (v1): {WIDER}"
    assert answer.status_code == 400
    assert answer.json() == {"detail": message, "version": [message]}
    assert not Rollout.objects.filter(model__name="fraud").exists()


def test_the_page_marks_incompatible_versions_and_preselects_none_of_them(
    catalog: Catalog, wider: ModelVersion
) -> None:
    page = signed_in(catalog.owner)

    shown = page.get("/rollouts/new/fraud/?kind=canary").content.decode()
    posted = page.post("/rollouts/new/fraud/", {"kind": "shadow", "version": "5", "fraction": "1"})

    assert '<option value="5" disabled>' in shown
    assert "v5: its signature does not fit production&#x27;s" in shown
    assert '<option value="3" selected>' in shown  # the newest version that fits
    assert "cannot take production&#x27;s traffic (v1): " in shown  # the note says why
    assert posted.status_code == 200
    assert not Rollout.objects.filter(model__name="fraud").exists()


def test_a_compatible_version_still_starts(catalog: Catalog) -> None:
    rollout = services.start_canary(fraud(), version(2), actor=catalog.owner)

    assert rollout.status == RolloutStatus.RUNNING


# --- Irreversible actions ask first -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "verb", "effect"),
    [
        ("canary", "promote", "Production moves from v1 to v2 at once: v2 answers 100 % of fraud's requests"),
        ("canary", "abort", "All of fraud's traffic goes back to v1 at once"),
        ("shadow", "promote", "v2, which has only answered copies so far, answers every request to fraud at once"),
        ("shadow", "stop", "The shadow stops receiving copies and ends; v1 keeps answering every request."),
    ],
)
def test_an_irreversible_action_names_its_effect_and_waits_for_confirmation(
    catalog: Catalog, kind: str, verb: str, effect: str
) -> None:
    start = services.start_canary if kind == "canary" else services.start_shadow
    rollout = start(fraud(), version(2), actor=catalog.owner)
    page = signed_in(catalog.owner)

    asked = page.get(f"/rollouts/{rollout.pk}/{verb}/")
    posted_without = page.post(f"/rollouts/{rollout.pk}/{verb}/")

    for answer in (asked, posted_without):
        assert answer.status_code == 200
        assert effect in text(answer)
        assert 'name="confirm" value="yes"' in text(answer)
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.RUNNING
    assert registry_services.serving_version(fraud()) == version(1)

    done = page.post(f"/rollouts/{rollout.pk}/{verb}/", {"confirm": "yes"})

    assert done.status_code == 302
    rollout.refresh_from_db()
    assert rollout.status != RolloutStatus.RUNNING


def test_a_viewer_gets_no_confirmation_page(catalog: Catalog, viewer: Any) -> None:
    rollout = services.start_canary(fraud(), version(2), actor=catalog.owner)

    answer = signed_in(viewer).get(f"/rollouts/{rollout.pk}/promote/")

    assert answer.status_code == 403
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.RUNNING


def test_the_live_page_offers_the_actions_as_distinct_buttons(catalog: Catalog) -> None:
    rollout = services.start_canary(fraud(), version(2), actor=catalog.owner)

    page = signed_in(catalog.owner).get(f"/rollouts/{rollout.pk}/").content.decode()

    assert '<button type="submit" class="primary">Promote the canary now…</button>' in page
    assert '<button type="submit" class="danger">Abort: all traffic back to production…</button>' in page


# --- A failing arm is not promoted ----------------------------------------------------------------------------------


def test_a_shadow_failing_every_request_is_not_promoted(catalog: Catalog, inject: Callable[..., Any]) -> None:
    rollout = services.start_shadow(fraud(), version(2), actor=catalog.owner)
    now = timezone.now()
    inject(observations(200, model="fraud", version="1", arm="champion", seed=1), now)
    inject(observations(40, model="fraud", version="2", arm="shadow", seed=2, error_share=1.0), now)
    page = signed_in(catalog.owner)

    with pytest.raises(services.RolloutError) as refused:
        services.promote(rollout, actor=catalog.owner)
    live = text(page.get(f"/rollouts/{rollout.pk}/"))
    confirmed = text(page.post(f"/rollouts/{rollout.pk}/promote/", {"confirm": "yes"}, follow=True))

    assert "shadow (v2) failed 100.0 % of its 40 requests against 0.0 % for champion (v1)" in str(refused.value)
    assert "Promote the shadow…" not in live
    assert "Promotion of shadow (v2) not offered" in live
    assert "Not done: Shadow (v2) failed 100.0 %" in confirmed
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.RUNNING
    assert registry_services.serving_version(fraud()) == version(1)


def test_a_healthy_shadow_is_still_promoted(catalog: Catalog, inject: Callable[..., Any]) -> None:
    rollout = services.start_shadow(fraud(), version(2), actor=catalog.owner)
    now = timezone.now()
    inject(observations(200, model="fraud", version="1", arm="champion", seed=1, error_share=0.02), now)
    inject(observations(40, model="fraud", version="2", arm="shadow", seed=2, error_share=0.02), now)

    services.promote(rollout, actor=catalog.owner)

    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PROMOTED
    assert registry_services.serving_version(fraud()) == version(2)
