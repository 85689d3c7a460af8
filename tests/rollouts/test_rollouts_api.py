"""The rollouts API: `/api/rollouts/` (list, create), `/api/rollouts/{id}/` (with the live
report) and its actions pause, resume, promote, abort, stop and analysis.

The registry (`catalog` in conftest.py) is shared by the module: `fraud` (owner
olga) has v1 in production, v2 and v3 ready and v4 pending; `churn` belongs to
otto. Every test checks the answer and re-reads the database.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from rest_framework.test import APIClient

from audit.models import AuditEntry
from registry import services as registry_services
from registry.models import RegisteredModel
from rollouts import services
from rollouts.models import Rollout, RolloutStatus
from tests.rollouts.conftest import Catalog
from tests.support.clients import signed_in

pytestmark = pytest.mark.django_db

CANARY = {
    "kind": "canary",
    "model": "fraud",
    "version": 2,
    "steps": [10, 50, 100],
    "step_seconds": 60,
    "analysis_interval_seconds": 10,
    "gates": {"min_requests": 50, "max_p95_ratio": 1.5},
}
EXPERIMENT = {
    "kind": "experiment",
    "model": "fraud",
    "arms": [{"name": "control", "version": 1, "weight": 1}, {"name": "treatment", "version": 2, "weight": 3}],
    "metric": "binary",
    "minimum_effect": 0.02,
}
SHADOW = {"kind": "shadow", "model": "fraud", "version": 3, "fraction": 0.25, "routing_header": "X-User"}


@pytest.fixture(autouse=True)
def clean_redis(redis_client: redis.Redis) -> redis.Redis:
    # Rollout ids start again after each module's flush: no earlier module's rewards may linger.
    return redis_client


@pytest.fixture
def owner_api(catalog: Catalog) -> APIClient:
    return signed_in(catalog.owner, APIClient)


@pytest.fixture
def maintainer_api(catalog: Catalog) -> APIClient:
    return signed_in(catalog.maintainer, APIClient)


@pytest.fixture
def viewer_api(viewer: Any, catalog: Catalog) -> APIClient:
    return signed_in(viewer, APIClient)


def create(client: APIClient, payload: dict[str, Any], **changes: Any) -> Any:
    return client.post("/api/rollouts/", {**payload, **changes}, format="json")


def started(client: APIClient, payload: dict[str, Any]) -> Rollout:
    answer = create(client, payload)
    assert answer.status_code == 201, answer.content
    return Rollout.objects.get(pk=answer.json()["id"])


def actions(rollout: Rollout) -> list[tuple[str, str]]:
    entries = AuditEntry.objects.filter(object_type="rollouts.rollout", object_id=str(rollout.pk)).order_by("id")
    return list(entries.values_list("action", "actor_name"))


# --- Who may do what --------------------------------------------------------------------------------------------


def test_anonymous_cannot_list_rollouts(catalog: Catalog) -> None:
    answer = APIClient().get("/api/rollouts/")
    assert answer.status_code == 403
    assert "detail" in answer.json()


def test_a_viewer_cannot_start_a_rollout(viewer_api: APIClient) -> None:
    answer = create(viewer_api, CANARY)

    assert answer.status_code == 403
    assert "Only maintainers of model 'fraud'" in answer.json()["detail"]
    assert not Rollout.objects.exists()


def test_a_viewer_cannot_start_a_rollout_even_with_bad_input(viewer_api: APIClient) -> None:
    assert create(viewer_api, CANARY, version=99, steps="x").status_code == 403


def test_a_maintainer_of_another_model_cannot_start_or_steer_this_ones(
    owner_api: APIClient, maintainer_api: APIClient
) -> None:
    assert create(maintainer_api, CANARY).status_code == 403
    rollout = started(owner_api, CANARY)

    for verb in ("pause", "promote", "abort"):
        answer = maintainer_api.post(f"/api/rollouts/{rollout.pk}/{verb}/")
        assert answer.status_code == 403, verb
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.RUNNING
    assert registry_services.serving_version(rollout.model).number == 1


def test_a_viewer_reads_rollouts_with_their_report(owner_api: APIClient, viewer_api: APIClient) -> None:
    rollout = started(owner_api, CANARY)

    listed = viewer_api.get("/api/rollouts/")
    shown = viewer_api.get(f"/api/rollouts/{rollout.pk}/")
    analysed = viewer_api.get(f"/api/rollouts/{rollout.pk}/analysis/")

    assert listed.status_code == shown.status_code == analysed.status_code == 200
    assert [r["id"] for r in listed.json()["results"]] == [rollout.pk]
    assert listed.json()["results"][0]["report"] is None  # live figures only one at a time
    assert shown.json()["report"]["analysis"]["action"] == "wait"
    assert viewer_api.post(f"/api/rollouts/{rollout.pk}/pause/").status_code == 403


# --- Starting -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field", "phrase"),
    [
        ({**CANARY, "kind": "blue-green"}, "kind", "Choose one of canary, experiment, shadow"),
        ({k: v for k, v in CANARY.items() if k != "version"}, "version", "required"),
        ({**CANARY, "version": 99}, "version", "version 99 does not exist on model 'fraud'"),
        ({**CANARY, "model": "nope"}, "model", "does not exist"),
        ({**CANARY, "step_second": 5}, "step_second", "Unknown field"),
        ({**CANARY, "fraction": 0.5}, "fraction", "is a setting of a shadow rollout"),
        ({**CANARY, "steps": [10, 150]}, "steps", "less than or equal to 100"),
        ({**CANARY, "steps": [50, 50, 100]}, "steps", "larger than the one before"),
        ({**CANARY, "step_seconds": 0}, "step_seconds", "greater than or equal to 1"),
        ({**CANARY, "routing_header": "x user"}, "routing_header", "A header name"),
        ({**EXPERIMENT, "arms": EXPERIMENT["arms"][:1]}, "arms", "at least two arms"),
        ({**EXPERIMENT, "arms": [EXPERIMENT["arms"][0]] * 2}, "arms", "unique"),
        ({**EXPERIMENT, "control": "nobody"}, "control", "'nobody' is not the name of one of the arms"),
        ({**EXPERIMENT, "alpha": 0.7}, "alpha", "between 0 and 0.5"),
        ({**EXPERIMENT, "minimum_effect": -0.1}, "minimum_effect", "positive"),
        ({**EXPERIMENT, "metric": "revenue"}, "metric", "not a valid choice"),
        ({**SHADOW, "fraction": 0}, "fraction", "more than 0"),
        ({**SHADOW, "steps": [50, 100]}, "steps", "is a setting of a canary rollout"),
    ],
)
def test_bad_input_is_refused_field_by_field(
    owner_api: APIClient, payload: dict[str, Any], field: str, phrase: str
) -> None:
    answer = create(owner_api, payload)

    assert answer.status_code == 400, answer.content
    assert phrase in str(answer.json()[field]), answer.json()
    assert not Rollout.objects.exists()


def test_unknown_gates_and_arm_fields_are_refused(owner_api: APIClient) -> None:
    gates = create(owner_api, CANARY, gates={"max_p99_ratio": 2})
    arms = create(owner_api, EXPERIMENT, arms=[{**a, "colour": "red"} for a in EXPERIMENT["arms"]])
    body = owner_api.post("/api/rollouts/", [CANARY], format="json")

    assert gates.status_code == arms.status_code == body.status_code == 400
    assert "Unknown field" in str(gates.json()["gates"]["max_p99_ratio"])
    assert "Unknown field" in str(arms.json()["arms"])
    assert not Rollout.objects.exists()


@pytest.mark.parametrize(
    ("payload", "phrase"),
    [
        ({**CANARY, "version": 1}, "version 1 is already the production version"),
        ({**CANARY, "version": 4}, "version 4 is pending; only a ready version can take traffic"),
        ({**CANARY, "steps": [10, 50]}, "steps must be increasing percentages in (0, 100] ending at 100"),
        ({**SHADOW, "version": 4}, "only a ready version"),
    ],
)
def test_what_the_rollout_service_refuses_is_a_400_with_its_message(
    owner_api: APIClient, payload: dict[str, Any], phrase: str
) -> None:
    answer = create(owner_api, payload)

    assert answer.status_code == 400
    assert phrase in answer.json()["detail"]
    assert not Rollout.objects.exists()


def test_the_owner_starts_a_canary(owner_api: APIClient, catalog: Catalog) -> None:
    answer = create(owner_api, CANARY)

    assert answer.status_code == 201, answer.content
    data = answer.json()
    assert (data["kind"], data["status"], data["model"], data["step"]) == ("canary", "running", "fraud", 0)
    assert [(a["name"], a["version"], a["weight"]) for a in data["arms"]] == [("champion", 1, 90), ("canary", 2, 10)]
    rollout = Rollout.objects.get(pk=data["id"])
    assert rollout.config["steps"] == [10, 50, 100]
    assert rollout.config["gates"] == {
        "min_requests": 50,
        "max_error_rate_increase": 0.01,  # the defaults fill what was not sent
        "max_p95_ratio": 1.5,
        "min_reward_ratio": None,
    }
    assert rollout.created_by == catalog.owner
    assert actions(rollout) == [("rollout.canary_started", "olga")]
    assert services.routing_for(rollout.model) is not None


def test_the_owner_starts_an_experiment_with_weights_scaled_to_100(owner_api: APIClient) -> None:
    rollout = started(owner_api, EXPERIMENT)

    arms = {a.name: (a.version.number, a.weight, a.is_control) for a in rollout.arms.all()}
    assert arms == {"control": (1, 25.0, True), "treatment": (2, 75.0, False)}
    assert rollout.config == {"metric": "binary", "minimum_effect": 0.02, "alpha": 0.05}
    assert actions(rollout) == [("rollout.experiment_started", "olga")]


def test_the_owner_starts_a_shadow_pinned_by_its_own_header(owner_api: APIClient) -> None:
    rollout = started(owner_api, SHADOW)

    assert (rollout.kind, rollout.config, rollout.routing_header) == ("shadow", {"fraction": 0.25}, "x-user")
    routing = services.routing_for(rollout.model)
    assert routing is not None
    assert routing.shadow is not None
    assert routing.shadow.version == 3
    assert [(a.name, a.weight) for a in routing.arms] == [("champion", 100)]
    assert actions(rollout) == [("rollout.shadow_started", "olga")]


def test_a_model_has_one_active_rollout_at_a_time(owner_api: APIClient) -> None:
    first = started(owner_api, CANARY)

    second = create(owner_api, SHADOW)

    assert second.status_code == 400
    assert "already has an active rollout" in second.json()["detail"]
    assert list(Rollout.objects.values_list("pk", flat=True)) == [first.pk]
    # once it ended, another may start
    assert owner_api.post(f"/api/rollouts/{first.pk}/abort/").status_code == 200
    assert create(owner_api, SHADOW).status_code == 201


# --- Steering -----------------------------------------------------------------------------------------------------


def test_pause_resume_and_abort_are_audited_transitions(owner_api: APIClient) -> None:
    rollout = started(owner_api, CANARY)
    step_began = rollout.step_started_at

    paused = owner_api.post(f"/api/rollouts/{rollout.pk}/pause/")
    assert paused.status_code == 200
    assert paused.json()["status"] == "paused"
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PAUSED
    assert services.routing_for(rollout.model) is not None  # the split holds while paused

    resumed = owner_api.post(f"/api/rollouts/{rollout.pk}/resume/")
    assert resumed.status_code == 200
    assert resumed.json()["status"] == "running"
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.RUNNING
    assert rollout.step_started_at > step_began

    aborted = owner_api.post(f"/api/rollouts/{rollout.pk}/abort/", {"reason": "wrong version"}, format="json")
    assert aborted.status_code == 200
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ABORTED
    assert rollout.ended_at is not None
    assert rollout.outcome["reason"] == "wrong version"
    assert services.routing_for(rollout.model) is None
    assert registry_services.serving_version(rollout.model).number == 1
    assert actions(rollout) == [
        ("rollout.canary_started", "olga"),
        ("rollout.paused", "olga"),
        ("rollout.resumed", "olga"),
        ("rollout.aborted", "olga"),
    ]
    entry = AuditEntry.objects.get(action="rollout.paused", object_id=str(rollout.pk))
    assert (entry.before["status"], entry.after["status"]) == ("running", "paused")


def test_invalid_transitions_are_400_and_change_nothing(owner_api: APIClient) -> None:
    canary = started(owner_api, CANARY)

    for verb, phrase in [
        ("resume", "a running rollout cannot be resumed"),
        ("stop", "a canary ends with abort"),
    ]:
        answer = owner_api.post(f"/api/rollouts/{canary.pk}/{verb}/")
        assert answer.status_code == 400, verb
        assert phrase in answer.json()["detail"], (verb, answer.content)
    assert owner_api.post(f"/api/rollouts/{canary.pk}/promote/", {"arm": "nobody"}, format="json").status_code == 400
    assert owner_api.post(f"/api/rollouts/{canary.pk}/abort/", {"why": "x"}, format="json").status_code == 400
    canary.refresh_from_db()
    assert canary.status == RolloutStatus.RUNNING
    assert actions(canary) == [("rollout.canary_started", "olga")]

    assert owner_api.post(f"/api/rollouts/{canary.pk}/abort/").status_code == 200
    for verb in ("pause", "resume", "abort", "promote"):
        answer = owner_api.post(f"/api/rollouts/{canary.pk}/{verb}/")
        assert answer.status_code == 400, verb
        assert "aborted rollout cannot be" in answer.json()["detail"], verb
    canary.refresh_from_db()
    assert canary.status == RolloutStatus.ABORTED
    assert registry_services.serving_version(canary.model).number == 1
    assert owner_api.post("/api/rollouts/999999/pause/").status_code == 404


def test_an_experiment_promotes_the_arm_it_is_told_to(owner_api: APIClient) -> None:
    rollout = started(owner_api, EXPERIMENT)

    unnamed = owner_api.post(f"/api/rollouts/{rollout.pk}/promote/")
    assert unnamed.status_code == 400
    assert "Name the arm to promote: one of control, treatment" in str(unnamed.json())
    analysis = owner_api.get(f"/api/rollouts/{rollout.pk}/analysis/")
    assert analysis.status_code == 400
    assert "only a canary has gates" in analysis.json()["detail"]

    answer = owner_api.post(f"/api/rollouts/{rollout.pk}/promote/", {"arm": "treatment"}, format="json")

    assert answer.status_code == 200, answer.content
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PROMOTED
    assert rollout.outcome["winner"] == "treatment"
    assert registry_services.serving_version(rollout.model).number == 2
    assert actions(rollout)[-1] == ("rollout.promoted", "olga")


def test_a_canary_promoted_by_hand_moves_production(owner_api: APIClient) -> None:
    rollout = started(owner_api, CANARY)

    answer = owner_api.post(f"/api/rollouts/{rollout.pk}/promote/")

    assert answer.status_code == 200
    assert answer.json()["outcome"]["winner"] == "canary"
    assert answer.json()["outcome"]["version"] == 2
    model = RegisteredModel.objects.get(name="fraud")
    assert registry_services.serving_version(model).number == 2
    assert services.routing_for(model) is None
    moved = AuditEntry.objects.filter(action="alias.moved").latest("id")
    assert (moved.actor_name, moved.before, moved.after) == ("olga", {"version": 1}, {"version": 2})


def test_stopping_an_experiment_keeps_production(owner_api: APIClient) -> None:
    rollout = started(owner_api, EXPERIMENT)

    answer = owner_api.post(f"/api/rollouts/{rollout.pk}/stop/")

    assert answer.status_code == 200
    assert answer.json()["status"] == "stopped"
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.STOPPED
    assert rollout.outcome["reason"] == "stopped without promotion"
    assert registry_services.serving_version(rollout.model).number == 1
    assert actions(rollout)[-1] == ("rollout.stopped", "olga")


# --- Reading ------------------------------------------------------------------------------------------------------


def test_the_list_filters_by_model_status_and_kind(
    owner_api: APIClient, maintainer_api: APIClient, viewer_api: APIClient
) -> None:
    aborted = started(owner_api, CANARY)
    owner_api.post(f"/api/rollouts/{aborted.pk}/abort/")
    shadow = started(owner_api, SHADOW)
    churn = started(maintainer_api, {"kind": "shadow", "model": "churn", "version": 1})

    def ids(query: str) -> list[int]:
        answer = viewer_api.get(f"/api/rollouts/{query}")
        assert answer.status_code == 200, answer.content
        return [r["id"] for r in answer.json()["results"]]

    assert ids("") == [churn.pk, shadow.pk, aborted.pk]
    assert ids("?model=fraud") == [shadow.pk, aborted.pk]
    assert ids("?status=active") == [churn.pk, shadow.pk]
    assert ids("?status=aborted&model=fraud") == [aborted.pk]
    assert ids("?kind=canary") == [aborted.pk]
    unknown = viewer_api.get("/api/rollouts/?status=finished")
    assert unknown.status_code == 400
    assert unknown.json() == {
        "status": ["Unknown status; use one of " + ", ".join(RolloutStatus.values) + " or active."]
    }
    assert viewer_api.get("/api/rollouts/?kind=blue").status_code == 400


def test_a_canary_shows_its_gates_and_the_analysis_changes_nothing(owner_api: APIClient) -> None:
    rollout = started(owner_api, CANARY)

    shown = owner_api.get(f"/api/rollouts/{rollout.pk}/").json()
    analysis = owner_api.get(f"/api/rollouts/{rollout.pk}/analysis/")

    gates = {g["name"]: g for g in shown["report"]["analysis"]["gates"]}
    assert list(gates) == ["min_requests", "early_abort", "error_rate_increase", "p95_ratio"]
    assert (gates["min_requests"]["value"], gates["min_requests"]["threshold"]) == (0, 50)
    assert gates["min_requests"]["passed"] is None  # waiting for requests, not failed
    assert gates["early_abort"]["passed"] is None
    assert gates["p95_ratio"]["passed"] is None  # not enough data yet
    assert [a["figures"]["requests"] for a in shown["report"]["arms"]] == [0, 0]
    assert analysis.status_code == 200
    assert analysis.json()["action"] == "wait"
    rollout.refresh_from_db()
    assert (rollout.status, rollout.step, rollout.last_analysis) == (RolloutStatus.RUNNING, 0, None)


def test_an_experiment_report_has_rewards_and_comparisons_before_any_feedback(owner_api: APIClient) -> None:
    rollout = started(owner_api, EXPERIMENT)

    report = owner_api.get(f"/api/rollouts/{rollout.pk}/").json()["report"]

    arms = {a["name"]: a for a in report["arms"]}
    assert arms["control"]["comparison"] is None
    assert arms["treatment"]["reward"] == {"n": 0, "mean": None, "interval": None}
    assert arms["treatment"]["comparison"]["p_value"] == 1.0
    assert arms["treatment"]["comparison"]["significant"] is False
    assert report["analysis"] is None
    assert report["agreement"] is None


def test_the_schema_documents_the_rollouts_api(owner_api: APIClient) -> None:
    answer = owner_api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert answer.status_code == 200
    paths = answer.json()["paths"]
    for path in (
        "/api/rollouts/",
        "/api/rollouts/{id}/",
        "/api/rollouts/{id}/promote/",
        "/api/rollouts/{id}/analysis/",
    ):
        assert path in paths
    assert "RolloutStart" in str(paths["/api/rollouts/"]["post"]["requestBody"])
