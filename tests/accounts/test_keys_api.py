"""`/api/keys/` and `/api/plans/`: everyone manages their own keys (another user's is a 404),
admins see every key and manage plans and limits; secrets are answered once. Each test
checks the status and re-reads the database (and the audit log or Redis notices)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import redis
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import keyformat, services
from accounts.models import ApiKey, Plan
from audit.models import AuditEntry
from tests.support.asgi import AsgiClient
from tests.support.clients import bearer
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks: Any) -> Any:
    """Runs the on-commit callbacks (the key change notices) of the requests made inside it."""
    return django_capture_on_commit_callbacks


def _notices(pubsub: redis.client.PubSub) -> list[str]:
    seen = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        seen.append(message["data"].decode())
    return seen


# --- Negative cases first ----------------------------------------------------------------------------------------


def test_anonymous_requests_are_refused(anonymous_api: APIClient, viewer_key: tuple[ApiKey, str]) -> None:
    key, _ = viewer_key
    assert anonymous_api.get("/api/keys/").status_code == 403
    assert anonymous_api.post("/api/keys/", {"name": "x"}, format="json").status_code == 403
    assert anonymous_api.post(f"/api/keys/{key.public_id}/revoke/").status_code == 403
    assert anonymous_api.get("/api/plans/").status_code == 403
    key.refresh_from_db()
    assert key.status == "active"
    assert ApiKey.objects.count() == 1


def test_another_users_key_is_a_404_for_every_verb(
    outsider: Any, viewer_key: tuple[ApiKey, str], key_notices: redis.client.PubSub
) -> None:
    key, _ = viewer_key
    api = APIClient()
    api.force_login(outsider)

    assert api.get(f"/api/keys/{key.public_id}/").status_code == 404
    assert api.post(f"/api/keys/{key.public_id}/revoke/").status_code == 404
    assert api.post(f"/api/keys/{key.public_id}/rotate/", {}, format="json").status_code == 404
    assert api.patch(f"/api/keys/{key.public_id}/", {"burst": 5}, format="json").status_code == 404
    listed = api.get("/api/keys/")
    assert listed.status_code == 200
    assert listed.json()["count"] == 0

    before = key.digest
    key.refresh_from_db()
    assert (key.status, key.digest, key.burst) == ("active", before, None)
    assert not AuditEntry.objects.filter(action__in=["key.revoked", "key.rotated", "key.limits_changed"]).exists()
    assert _notices(key_notices) == []


def test_a_user_cannot_change_the_plan_or_limits_of_their_own_key(
    viewer_api: APIClient, viewer_key: tuple[ApiKey, str]
) -> None:
    key, _ = viewer_key
    gold = Plan.objects.create(name="gold", requests_per_window=1000)

    response = viewer_api.patch(f"/api/keys/{key.public_id}/", {"plan": "gold", "burst": 10_000}, format="json")

    assert response.status_code == 403
    assert response.json() == {"detail": "Only an admin may change a key's plan and limits."}
    key.refresh_from_db()
    assert (key.plan, key.burst) == (None, None)
    assert gold.keys.count() == 0


def test_a_non_admin_cannot_create_change_or_delete_plans(viewer_api: APIClient) -> None:
    free = Plan.objects.create(name="free", requests_per_window=5)

    created = viewer_api.post("/api/plans/", {"name": "mine", "requests_per_window": 10**6}, format="json")
    changed = viewer_api.patch("/api/plans/free/", {"requests_per_window": 10**6}, format="json")
    deleted = viewer_api.delete("/api/plans/free/")

    assert [created.status_code, changed.status_code, deleted.status_code] == [403, 403, 403]
    assert created.json() == {"detail": "Only an admin may create, change or delete plans."}
    free.refresh_from_db()
    assert free.requests_per_window == 5
    assert list(Plan.objects.values_list("name", flat=True)) == ["free"]
    assert viewer_api.get("/api/plans/").json()["results"][0]["name"] == "free"  # reading is allowed


def test_a_key_limited_to_some_models_cannot_manage_keys(viewer: Any, viewer_key: tuple[ApiKey, str]) -> None:
    _, secret = services.create_key(viewer, name="fraud ops", model_patterns=["fraud-*"], actions=["manage"])
    api = APIClient(headers=bearer(secret))

    listed = api.get("/api/keys/")
    created = api.post("/api/keys/", {"name": "everything", "actions": ["manage"]}, format="json")

    assert listed.status_code == created.status_code == 403
    assert "limited to some models" in created.json()["detail"]
    assert ApiKey.objects.filter(user=viewer).count() == 2


def test_create_refuses_bad_input_naming_the_field(viewer_api: APIClient, viewer: Any) -> None:
    cases = [
        ({"name": "job", "actions": ["fly"]}, {"actions": {"0": ['"fly" is not a valid choice.']}}),
        ({"name": "job", "scopes": ["infer"]}, None),
        ({"name": "  ", "model_patterns": ["*"]}, None),
        ({"name": "job", "model_patterns": []}, None),
        ({"name": "job", "expires_at": "2001-01-01T00:00:00Z"}, {"detail": "the expiry must be in the future"}),
    ]
    for body, expected in cases:
        response = viewer_api.post("/api/keys/", body, format="json")
        assert response.status_code == 400, (body, response.json())
        if expected is not None:
            assert response.json() == expected
    assert "Unknown field" in viewer_api.post("/api/keys/", cases[1][0], format="json").json()["scopes"][0]
    assert ApiKey.objects.filter(user=viewer).count() == 0


def test_a_pattern_that_matches_no_model_is_refused_unless_meant_for_models_to_come(
    viewer_api: APIClient, viewer: Any
) -> None:
    refused = viewer_api.post("/api/keys/", {"name": "job", "model_patterns": ["frod-*"]}, format="json")
    assert refused.status_code == 400
    assert "'frod-*' matches no model" in refused.json()["detail"]
    assert ApiKey.objects.filter(user=viewer).count() == 0

    body = {"name": "job", "model_patterns": ["frod-*"], "future_models": True}
    created = viewer_api.post("/api/keys/", body, format="json")
    assert created.status_code == 201, created.json()
    assert ApiKey.objects.get(user=viewer).model_patterns == ["frod-*"]


def test_a_revoked_key_cannot_be_rotated(viewer_api: APIClient, viewer_key: tuple[ApiKey, str]) -> None:
    key, _ = viewer_key
    services.revoke_key(key, actor=key.user)
    digest = ApiKey.objects.get(pk=key.pk).digest

    response = viewer_api.post(f"/api/keys/{key.public_id}/rotate/", {"grace_seconds": 60}, format="json")

    assert response.status_code == 400
    assert response.json() == {"detail": "a revoked key cannot be rotated; create a new one"}
    assert ApiKey.objects.get(pk=key.pk).digest == digest


def test_an_admin_cannot_rotate_someone_elses_key_but_may_revoke_it(
    admin_api: APIClient, viewer_key: tuple[ApiKey, str], key_notices: redis.client.PubSub, on_commit: Any
) -> None:
    key, _ = viewer_key

    rotated = admin_api.post(f"/api/keys/{key.public_id}/rotate/", {}, format="json")
    with on_commit(execute=True):
        revoked = admin_api.post(f"/api/keys/{key.public_id}/revoke/")

    assert rotated.status_code == 403
    assert "Only the key's owner may rotate it" in rotated.json()["detail"]
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    assert "secret" not in revoked.json()
    key.refresh_from_db()
    assert key.status == "revoked"
    entry = AuditEntry.objects.get(action="key.revoked")
    assert entry.actor_name == "ada"
    assert key.public_id in _notices(key_notices)


def test_bad_plan_and_limits_are_refused(admin_api: APIClient, viewer_key: tuple[ApiKey, str]) -> None:
    key, _ = viewer_key

    unknown_plan = admin_api.patch(f"/api/keys/{key.public_id}/", {"plan": "platinum"}, format="json")
    zero = admin_api.patch(f"/api/keys/{key.public_id}/", {"burst": 0}, format="json")
    bad_plan = admin_api.post("/api/plans/", {"name": "Not A Slug!", "burst": -1}, format="json")

    assert unknown_plan.status_code == zero.status_code == bad_plan.status_code == 400
    assert unknown_plan.json() == {"plan": ["Object with name=platinum does not exist."]}
    assert set(bad_plan.json()) == {"name", "burst"}
    key.refresh_from_db()
    assert (key.plan, key.burst) == (None, None)
    assert not Plan.objects.filter(name__iexact="not a slug!").exists()


def test_a_plan_in_use_is_not_deleted(admin_api: APIClient, viewer_key: tuple[ApiKey, str]) -> None:
    key, _ = viewer_key
    gold = Plan.objects.create(name="gold")
    services.set_limits(key, actor=None, plan=gold)

    response = admin_api.delete("/api/plans/gold/")

    assert response.status_code == 400
    assert response.json() == {"detail": "plan 'gold' is the plan of 1 key(s); move them to another plan first"}
    assert Plan.objects.filter(name="gold").exists()


# --- What works ----------------------------------------------------------------------------------------------------


def test_a_user_creates_lists_rotates_and_revokes_their_key(viewer_api: APIClient, viewer: Any) -> None:
    expires = (timezone.now() + dt.timedelta(days=7)).replace(microsecond=0)
    created = viewer_api.post(
        "/api/keys/",
        {"name": "ci", "model_patterns": ["fraud-*"], "actions": ["manage", "read"], "expires_at": expires.isoformat()},
        format="json",
    )

    assert created.status_code == 201
    assert "no-store" in created["Cache-Control"]
    body = created.json()
    secret = body["secret"]
    key = ApiKey.objects.get(public_id=body["id"])
    assert key.user == viewer
    assert keyformat.digest(secret, services.pepper()) == key.digest
    assert (key.model_patterns, key.actions, key.expires_at) == (["fraud-*"], ["manage", "read"], expires)
    assert body["limits"] == {"requests_per_window": 100, "window_seconds": 1, "burst": 200, "daily_quota": None}
    assert body["owner"] == "vic"
    assert body["status"] == "active"

    listed = viewer_api.get("/api/keys/").json()
    assert [k["id"] for k in listed["results"]] == [key.public_id]
    assert "secret" not in listed["results"][0]
    assert "secret" not in viewer_api.get(f"/api/keys/{key.public_id}/").json()

    rotated = viewer_api.post(f"/api/keys/{key.public_id}/rotate/", {"grace_seconds": 3600}, format="json")

    assert rotated.status_code == 200
    assert "no-store" in rotated["Cache-Control"]
    new_secret = rotated.json()["secret"]
    assert new_secret != secret
    key.refresh_from_db()
    assert keyformat.digest(new_secret, services.pepper()) == key.digest
    assert keyformat.digest(secret, services.pepper()) == key.previous_digest
    assert key.previous_valid_until is not None
    assert 3590 < (key.previous_valid_until - timezone.now()).total_seconds() <= 3600

    revoked = viewer_api.post(f"/api/keys/{key.public_id}/revoke/")

    assert revoked.status_code == 200
    key.refresh_from_db()
    assert key.status == "revoked"
    assert key.previous_digest == ""
    assert viewer_api.get("/api/keys/?status=revoked").json()["count"] == 1
    assert viewer_api.get("/api/keys/?status=active").json()["count"] == 0
    actions = list(AuditEntry.objects.filter(object_type="accounts.apikey").values_list("action", flat=True))
    assert sorted(actions) == ["key.created", "key.revoked", "key.rotated"]


def test_a_key_with_the_manage_action_manages_its_users_keys(viewer: Any) -> None:
    _, secret = services.create_key(viewer, name="ci", model_patterns=["*"], actions=["manage"])
    api = APIClient(headers=bearer(secret))

    created = api.post("/api/keys/", {"name": "scoring"}, format="json")

    assert created.status_code == 201
    key = ApiKey.objects.get(public_id=created.json()["id"])
    assert (key.user, key.actions, key.model_patterns) == (viewer, ["infer", "read"], ["*"])
    assert AuditEntry.objects.get(action="key.created", object_id=str(key.pk)).actor_name == "vic"


def test_an_admin_sees_every_key_and_sets_a_plan_and_limits(
    admin_api: APIClient,
    viewer_key: tuple[ApiKey, str],
    outsider: Any,
    key_notices: redis.client.PubSub,
    on_commit: Any,
) -> None:
    key, _ = viewer_key
    services.create_key(outsider, name="otto's", model_patterns=["*"], actions=["read"])
    gold = Plan.objects.create(name="gold", requests_per_window=1000, burst=2000, priority="high")

    everyone = admin_api.get("/api/keys/").json()
    only_vic = admin_api.get("/api/keys/?owner=vic").json()
    with on_commit(execute=True):
        changed = admin_api.patch(f"/api/keys/{key.public_id}/", {"plan": "gold", "daily_quota": 5000}, format="json")

    assert everyone["count"] == 2
    assert {k["owner"] for k in everyone["results"]} == {"vic", "otto"}
    assert [k["id"] for k in only_vic["results"]] == [key.public_id]
    assert changed.status_code == 200
    assert changed.json()["limits"] == {
        "requests_per_window": 1000,
        "window_seconds": 1,
        "burst": 2000,
        "daily_quota": 5000,
    }
    key.refresh_from_db()
    assert (key.plan, key.daily_quota, key.burst) == (gold, 5000, None)
    record = services.key_record(key.public_id)
    assert record is not None
    assert (record.policy.limit, record.policy.daily_quota, record.priority) == (1000, 5000, "high")
    assert AuditEntry.objects.get(action="key.limits_changed").actor_name == "ada"
    assert key.public_id in _notices(key_notices)

    cleared = admin_api.patch(f"/api/keys/{key.public_id}/", {"daily_quota": None}, format="json")

    assert cleared.status_code == 200
    key.refresh_from_db()
    assert (key.plan, key.daily_quota) == (gold, None)


def test_an_admin_creates_changes_and_deletes_plans(
    admin_api: APIClient, viewer_key: tuple[ApiKey, str], key_notices: redis.client.PubSub, on_commit: Any
) -> None:
    key, _ = viewer_key  # on no plan: it follows the default plan
    old_default = services.default_plan()

    created = admin_api.post(
        "/api/plans/",
        {"name": "team", "requests_per_window": 50, "window_seconds": 10, "burst": 50, "priority": "low"},
        format="json",
    )
    assert created.status_code == 201
    assert created.json()["keys"] == 0
    team = Plan.objects.get(name="team")
    assert (team.requests_per_window, team.window_seconds, team.priority, team.is_default) == (50, 10, "low", False)
    _notices(key_notices)

    with on_commit(execute=True):
        made_default = admin_api.patch("/api/plans/team/", {"is_default": True}, format="json")

    assert made_default.status_code == 200
    # the flag moved: one default, and the planless key now follows the new one
    assert list(Plan.objects.filter(is_default=True)) == [team]
    old_default.refresh_from_db()
    assert old_default.is_default is False
    record = services.key_record(key.public_id)
    assert record is not None
    assert (record.policy.limit, record.policy.window_seconds, record.priority) == (50, 10, "low")
    assert key.public_id in _notices(key_notices)
    plan_actions = {e.action for e in AuditEntry.objects.filter(object_type="accounts.plan")}
    assert plan_actions == {"plan.created", "plan.changed"}

    deleted = admin_api.delete(f"/api/plans/{old_default.name}/")

    assert deleted.status_code == 204
    assert not Plan.objects.filter(pk=old_default.pk).exists()
    assert AuditEntry.objects.filter(action="plan.deleted").count() == 1


def test_the_schema_describes_keys_and_plans(anonymous_api: APIClient) -> None:
    schema = anonymous_api.get("/api/schema/", {"format": "json"}).json()

    for path in ("/api/keys/", "/api/keys/{public_id}/rotate/", "/api/keys/{public_id}/revoke/", "/api/plans/{name}/"):
        assert path in schema["paths"], path
    assert "secret" in schema["components"]["schemas"]["ApiKeyWithSecret"]["properties"]
    assert "secret" not in schema["components"]["schemas"]["ApiKey"]["properties"]


@pytest.mark.django_db(transaction=True)  # the gateway reads keys on its own connections
def test_a_key_revoked_through_the_api_is_refused_by_v2_within_a_second(
    keyed_gateway_client: AsgiClient, viewer: Any
) -> None:
    api = APIClient()
    api.force_login(viewer)
    created = api.post("/api/keys/", {"name": "job", "actions": ["read"]}, format="json").json()

    def status() -> int:
        return keyed_gateway_client.get("/v2/models/not-deployed", headers=bearer(created["secret"])).status

    assert status() == 404  # authenticated: the model is unknown

    revoked = api.post(f"/api/keys/{created['id']}/revoke/")

    assert revoked.status_code == 200
    assert wait_for(lambda: status() == 401, timeout=1.0)
    assert ApiKey.objects.get(public_id=created["id"]).status == "revoked"
