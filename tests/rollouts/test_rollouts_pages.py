"""The rollout pages: start one from a model's page (errors next to the fields),
watch it live (an htmx partial refreshed every 5 s), steer it, and the history
of ended rollouts with their outcome.

Shares the module registry of conftest.py (`catalog`): `fraud` (owner olga) has
v1 in production, v2 and v3 ready, v4 pending; `churn` belongs to otto.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.test import Client

from audit.models import AuditEntry
from registry import services as registry_services
from registry.models import ModelVersion, RegisteredModel
from rollouts import services
from rollouts.models import Rollout, RolloutStatus
from tests.rollouts.conftest import Catalog
from tests.support.clients import signed_in

pytestmark = pytest.mark.django_db

CANARY_FORM = {
    "kind": "canary",
    "version": "2",
    "steps": "10, 50, 100",
    "step_seconds": "60",
    "analysis_interval_seconds": "10",
    "min_requests": "50",
    "max_error_rate_increase": "0.01",
    "max_p95_ratio": "1.25",
    "min_reward_ratio": "",
    "routing_header": "x-routing-key",
}
EXPERIMENT_FORM = {
    "kind": "experiment",
    "arms": "control 1 50\ntreatment 2 50",
    "control": "",
    "metric": "binary",
    "minimum_effect": "0.02",
    "alpha": "0.05",
    "routing_header": "x-routing-key",
}
SHADOW_FORM = {"kind": "shadow", "version": "3", "fraction": "0.5", "routing_header": "x-user"}


@pytest.fixture(autouse=True)
def clean_redis(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


@pytest.fixture
def owner_page(catalog: Catalog) -> Client:
    return signed_in(catalog.owner)


@pytest.fixture
def viewer_page(viewer: Any, catalog: Catalog) -> Client:
    return signed_in(viewer)


def fraud() -> RegisteredModel:
    return RegisteredModel.objects.get(name="fraud")


def version(number: int, model: str = "fraud") -> ModelVersion:
    return ModelVersion.objects.get(model__name=model, number=number)


def field_html(page: str, name: str) -> str:
    """The `<div class="field">` holding the input named `name`."""
    for block in page.split('<div class="field">')[1:]:
        if f'name="{name}"' in block:
            return block
    raise AssertionError(f"no field {name!r} on the page")


def text(response: Any) -> str:
    return response.content.decode()


# --- Who may do what --------------------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_log_in(catalog: Catalog) -> None:
    answer = Client().get("/rollouts/")
    assert answer.status_code == 302
    assert "/login" in answer["Location"]


def test_a_viewer_cannot_start_or_steer_a_rollout(viewer_page: Client, catalog: Catalog) -> None:
    form = viewer_page.get("/rollouts/new/fraud/")
    posted = viewer_page.post("/rollouts/new/fraud/", CANARY_FORM)
    assert form.status_code == posted.status_code == 403
    assert "You may not start a rollout" in text(posted)
    assert not Rollout.objects.exists()

    rollout = services.start_canary(fraud(), version(2), actor=catalog.owner)
    paused = viewer_page.post(f"/rollouts/{rollout.pk}/pause/")
    assert paused.status_code == 403
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.RUNNING
    page = text(viewer_page.get(f"/rollouts/{rollout.pk}/"))
    assert "Canary #" in page
    assert "Pause" not in page


# --- Starting from a model's page --------------------------------------------------------------------------------


def test_the_model_page_loads_its_rollout_section(owner_page: Client, viewer_page: Client, catalog: Catalog) -> None:
    page = text(owner_page.get("/models/fraud/"))
    assert 'hx-get="/rollouts/models/fraud/section/"' in page
    assert 'href="/rollouts/new/fraud/"' in page

    section = text(owner_page.get("/rollouts/models/fraud/section/", HTTP_HX_REQUEST="true"))
    assert "No rollout is running" in section
    assert "Start a rollout" in section
    assert "Start a rollout" not in text(viewer_page.get("/rollouts/models/fraud/section/", HTTP_HX_REQUEST="true"))
    without_htmx = owner_page.get("/rollouts/models/fraud/section/")
    assert without_htmx.status_code == 302
    assert without_htmx["Location"] == "/rollouts/?model=fraud"

    rollout = services.start_canary(fraud(), version(2), actor=catalog.owner)
    section = text(owner_page.get("/rollouts/models/fraud/section/", HTTP_HX_REQUEST="true"))
    assert f'href="/rollouts/{rollout.pk}/"' in section
    assert "canary v2 5 %" in section


def test_each_kind_has_its_form_with_sensible_defaults(owner_page: Client) -> None:
    canary = text(owner_page.get("/rollouts/new/fraud/?kind=canary"))
    experiment = text(owner_page.get("/rollouts/new/fraud/?kind=experiment"))
    shadow = text(owner_page.get("/rollouts/new/fraud/?kind=shadow"))

    assert 'value="5, 25, 50, 100"' in field_html(canary, "steps")
    assert '<option value="3" selected>' in field_html(canary, "version")  # newest not in production
    assert "control 1 50\ntreatment 3 50" in field_html(experiment, "arms")
    assert 'name="fraction"' in shadow
    assert "v4" not in field_html(shadow, "version")


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({**CANARY_FORM, "steps": "10, 50"}, "steps", "The last step must be 100"),
        ({**CANARY_FORM, "steps": "50, 10, 100"}, "steps", "Steps must increase"),
        ({**CANARY_FORM, "steps": "ten, 100"}, "steps", "&#x27;ten&#x27; is not a number"),
        ({**CANARY_FORM, "version": "4"}, "version", "Choose a ready version of this model"),
        ({**CANARY_FORM, "step_seconds": "0"}, "step_seconds", "greater than or equal to 1"),
        ({**CANARY_FORM, "routing_header": "x user"}, "routing_header", "Letters, digits and"),
        ({**EXPERIMENT_FORM, "arms": "control 1 50"}, "arms", "at least two arms"),
        ({**EXPERIMENT_FORM, "arms": "control 1 50\ntreatment 9 50"}, "arms", "Line 2: &#x27;9&#x27; is not a ready"),
        ({**EXPERIMENT_FORM, "arms": "control 1\ntreatment 2 50"}, "arms", "Line 1: write"),
        ({**EXPERIMENT_FORM, "control": "nobody"}, "control", "&#x27;nobody&#x27; is not the name of one of the arms"),
        ({**EXPERIMENT_FORM, "alpha": "0.9"}, "alpha", "between 0 and 0.5"),
        ({**SHADOW_FORM, "fraction": "2"}, "fraction", "at most 1"),
    ],
)
def test_the_form_says_what_is_wrong_next_to_the_field(
    owner_page: Client, form: dict[str, str], field: str, message: str
) -> None:
    answer = owner_page.post("/rollouts/new/fraud/", form)

    assert answer.status_code == 200
    block = field_html(text(answer), field)
    assert 'class="error"' in block, block
    assert message in block, block
    assert not Rollout.objects.exists()


def test_what_the_service_refuses_is_shown_above_the_form(owner_page: Client, catalog: Catalog) -> None:
    services.start_shadow(fraud(), version(3), actor=catalog.owner)

    answer = owner_page.post("/rollouts/new/fraud/", CANARY_FORM)

    assert answer.status_code == 200
    page = text(answer)
    assert (
        '<p class="error" role="alert">Model &#x27;fraud&#x27; already has an active rollout; end it first.</p>' in page
    )
    assert "shadow #" in page  # and the page says which one, before the form
    assert Rollout.objects.count() == 1


@pytest.mark.parametrize(
    ("form", "kind", "arms"),
    [
        (CANARY_FORM, "canary", {"champion": (1, 90.0), "canary": (2, 10.0)}),
        (EXPERIMENT_FORM, "experiment", {"control": (1, 50.0), "treatment": (2, 50.0)}),
        (SHADOW_FORM, "shadow", {"champion": (1, 100.0), "shadow": (3, 0.0)}),
    ],
)
def test_the_owner_starts_each_kind_and_lands_on_its_live_page(
    owner_page: Client, form: dict[str, str], kind: str, arms: dict[str, tuple[int, float]]
) -> None:
    answer = owner_page.post("/rollouts/new/fraud/", form)

    rollout = Rollout.objects.get()
    assert answer.status_code == 302
    assert answer["Location"] == f"/rollouts/{rollout.pk}/"
    assert rollout.kind == kind
    assert rollout.status == RolloutStatus.RUNNING
    assert {a.name: (a.version.number, a.weight) for a in rollout.arms.all()} == arms
    assert AuditEntry.objects.filter(action=f"rollout.{kind}_started", actor_name="olga").count() == 1


# --- Watching and steering -----------------------------------------------------------------------------------------


def test_the_live_page_refreshes_its_figures_every_5_seconds(owner_page: Client, catalog: Catalog) -> None:
    rollout = services.start_canary(fraud(), version(2), actor=catalog.owner)

    page = text(owner_page.get(f"/rollouts/{rollout.pk}/"))
    partial = text(owner_page.get(f"/rollouts/{rollout.pk}/", HTTP_HX_REQUEST="true"))

    assert f'hx-get="/rollouts/{rollout.pk}/" hx-trigger="every 5s"' in page
    assert "<html" in page
    assert "<html" not in partial
    for part in ("Step 1 of 4", "Gates", "min_requests", "p95_ratio", "waiting", "p95 ms", "Transitions"):
        assert part in partial, part
    assert "rollout.canary_started" in partial


def test_pause_resume_and_abort_from_the_page(owner_page: Client, catalog: Catalog) -> None:
    rollout = services.start_canary(fraud(), version(2), actor=catalog.owner)

    for verb, status in [("pause", "paused"), ("resume", "running"), ("abort", "aborted")]:
        answer = owner_page.post(f"/rollouts/{rollout.pk}/{verb}/", {"confirm": "yes"} if verb == "abort" else {})
        assert answer.status_code == 302
        assert answer["Location"] == f"/rollouts/{rollout.pk}/"
        rollout.refresh_from_db()
        assert rollout.status == status

    assert rollout.outcome["reason"] == "aborted by olga"
    actions = AuditEntry.objects.filter(object_id=str(rollout.pk), object_type="rollouts.rollout")
    assert list(actions.order_by("id").values_list("action", flat=True)) == [
        "rollout.canary_started",
        "rollout.paused",
        "rollout.resumed",
        "rollout.aborted",
    ]
    ended = text(owner_page.get(f"/rollouts/{rollout.pk}/"))
    assert "hx-trigger" not in ended
    assert "Aborted: v1 serves 100 % of the traffic." in ended
    assert "Aborted: aborted by olga" in ended
    assert "Traffic" not in ended  # an ended rollout states its outcome, not its last split


def test_a_refused_transition_is_explained_and_changes_nothing(owner_page: Client, catalog: Catalog) -> None:
    rollout = services.start_canary(fraud(), version(2), actor=catalog.owner)

    answer = owner_page.post(f"/rollouts/{rollout.pk}/resume/", follow=True)

    assert "Not done: A running rollout cannot be resumed." in text(answer)
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.RUNNING
    assert owner_page.post(f"/rollouts/{rollout.pk}/explode/").status_code == 404
    assert owner_page.get(f"/rollouts/{rollout.pk}/pause/").status_code == 405


def test_an_experiment_is_stopped_and_its_winner_promoted_after_confirmation(
    owner_page: Client, catalog: Catalog
) -> None:
    rollout = services.start_experiment(
        fraud(), [("control", version(1), 50), ("treatment", version(2), 50)], actor=catalog.owner
    )
    page = text(owner_page.get(f"/rollouts/{rollout.pk}/"))
    assert "Stop and promote treatment (v2)" in page
    assert "Feedback" in page

    # The button asks first: the confirmation names the effect, nothing changed yet
    asked = text(owner_page.get(f"/rollouts/{rollout.pk}/promote/", {"arm": "treatment"}))
    assert "Production moves from v1 to v2 at once" in asked
    assert 'name="confirm" value="yes"' in asked
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.RUNNING

    answer = owner_page.post(f"/rollouts/{rollout.pk}/promote/", {"arm": "treatment", "confirm": "yes"})

    assert answer.status_code == 302
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PROMOTED
    assert registry_services.serving_version(fraud()) == version(2)


# --- History -------------------------------------------------------------------------------------------------------


def test_the_history_lists_ended_rollouts_with_their_outcome(owner_page: Client, catalog: Catalog) -> None:
    # Given rollouts that ended every way, and one still running on another model
    rolled_back = services.start_canary(fraud(), version(2), actor=catalog.owner)
    gate = {"name": "p95_ratio", "passed": False, "value": 1.93, "threshold": 1.25, "detail": ""}
    services.rollback(rolled_back, gate="p95_ratio", figures={"gates": [gate]})
    aborted = services.start_shadow(fraud(), version(3), actor=catalog.owner)
    services.abort(aborted, actor=catalog.owner, reason="not needed")
    promoted = services.start_experiment(
        fraud(), [("control", version(1), 50), ("treatment", version(2), 50)], actor=catalog.owner
    )
    services.promote(promoted, actor=catalog.owner, arm_name="treatment")
    running = services.start_shadow(
        RegisteredModel.objects.get(name="churn"), version(1, "churn"), actor=catalog.maintainer
    )

    # When the owner opens the history
    page = text(owner_page.get("/rollouts/"))
    only_fraud = text(owner_page.get("/rollouts/?model=fraud"))

    # Then each ended one says how it ended, and the running one is listed as active
    active, history = page.split("<h2>History</h2>")
    assert f'href="/rollouts/{running.pk}/"' in active
    assert "rolled back: gate p95_ratio failed (1.93 against a limit of 1.25)" in history
    assert "aborted: not needed" in history
    assert "treatment (v2) promoted to production" in history
    assert f'href="/rollouts/{running.pk}/"' not in only_fraud
    assert "Start a rollout of fraud" in only_fraud
    assert owner_page.get("/rollouts/?model=nope").status_code == 404


def test_the_navigation_links_to_the_rollouts(owner_page: Client) -> None:
    assert '<a href="/rollouts/">Rollouts</a>' in text(owner_page.get("/models/"))


def test_the_admin_shows_rollouts_read_only(admin: Any, catalog: Catalog) -> None:
    rollout = services.start_canary(fraud(), version(2), actor=catalog.owner)
    client = signed_in(admin)

    listed = client.get("/admin/rollouts/rollout/")
    shown = client.get(f"/admin/rollouts/rollout/{rollout.pk}/change/")
    changed = client.post(f"/admin/rollouts/rollout/{rollout.pk}/change/", {"status": "promoted"})

    assert listed.status_code == shown.status_code == 200
    assert "Canary #" in text(listed)
    assert client.get("/admin/rollouts/rollout/add/").status_code == 403
    assert changed.status_code == 403
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.RUNNING
