"""The keys admin: revoke any key, change a key's plan and limits (audited, caches told),
edit plans (every key on the plan told); never add, delete, or show a digest."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from accounts import services
from accounts.models import ApiKey, Plan
from audit.models import AuditEntry
from tests.accounts.steps import browser, csrf_token, notices

pytestmark = pytest.mark.django_db

KEYS = "/admin/accounts/apikey/"
PLANS = "/admin/accounts/plan/"


@pytest.fixture
def pro() -> Plan:
    return Plan.objects.create(name="pro", requests_per_window=1000, window_seconds=1, burst=2000)


def _limits(plan: Plan | None = None, **values: Any) -> dict[str, Any]:
    form = {"plan": plan.pk if plan else "", "requests_per_window": "", "window_seconds": "", "burst": ""}
    return {**form, "daily_quota": "", **values}


def test_an_ordinary_user_cannot_reach_the_keys_admin(viewer: Any) -> None:
    response = browser(viewer).get(KEYS)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_the_list_shows_every_users_keys_but_never_a_digest(
    admin: Any, viewer_key: tuple[ApiKey, str], outsider: Any
) -> None:
    theirs, _ = services.create_key(outsider, name="otto's", model_patterns=["*"], actions=["read"])
    key, secret = viewer_key
    client = browser(admin)

    listing = client.get(KEYS).content.decode()
    detail = client.get(f"{KEYS}{key.pk}/change/").content.decode()
    search = client.get(KEYS, {"q": "otto"}).content.decode()
    revoked_filter = client.get(KEYS, {"status": "revoked"}).content.decode()

    assert key.prefix in listing
    assert theirs.prefix in listing
    assert theirs.prefix in search
    assert key.prefix not in search
    assert key.prefix not in revoked_filter
    for page in (listing, detail):
        assert key.digest not in page
        assert secret not in page
    assert "scoring job" in detail


def test_keys_cannot_be_added_or_deleted_in_the_admin(admin: Any, viewer_key: tuple[ApiKey, str]) -> None:
    key, _ = viewer_key
    client = browser(admin)

    assert client.get(f"{KEYS}add/").status_code == 403
    assert client.get(f"{KEYS}{key.pk}/delete/").status_code == 403
    assert ApiKey.objects.filter(pk=key.pk).exists()


def test_admin_revokes_selected_keys_audited_and_announced(
    admin: Any,
    viewer_key: tuple[ApiKey, str],
    outsider: Any,
    key_notices: redis.client.PubSub,
    django_capture_on_commit_callbacks: Any,
) -> None:
    key, _ = viewer_key
    theirs, _ = services.create_key(outsider, name="otto's", model_patterns=["*"], actions=["read"])
    client = browser(admin)
    token = csrf_token(client, KEYS)
    data = {"action": "revoke_selected", "_selected_action": [key.pk, theirs.pk], "csrfmiddlewaretoken": token}

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(KEYS, data)

    assert response.status_code == 302
    assert "Revoked 2 keys." in client.get(KEYS).content.decode()
    assert not ApiKey.objects.filter(revoked_at__isnull=True).exists()
    entries = AuditEntry.objects.filter(action="key.revoked")
    assert {entry.object_id for entry in entries} == {str(key.pk), str(theirs.pk)}
    assert {entry.actor for entry in entries} == {admin}
    assert notices(key_notices) == {key.public_id, theirs.public_id}


def test_admin_changes_a_keys_plan_and_limits_through_the_service(
    admin: Any,
    viewer_key: tuple[ApiKey, str],
    pro: Plan,
    key_notices: redis.client.PubSub,
    django_capture_on_commit_callbacks: Any,
) -> None:
    key, _ = viewer_key
    client = browser(admin)
    page = f"{KEYS}{key.pk}/change/"
    token = csrf_token(client, page)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(page, {**_limits(pro, burst="50", daily_quota="10000"), "csrfmiddlewaretoken": token})

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.plan == pro
    assert (key.burst, key.daily_quota, key.requests_per_window) == (50, 10000, None)
    policy = services.effective_policy(key)
    assert (policy.limit, policy.burst, policy.daily_quota) == (1000, 50, 10000)
    entry = AuditEntry.objects.get(action="key.limits_changed")
    assert entry.actor == admin
    assert entry.before is not None
    assert entry.after is not None
    assert (entry.before["plan"], entry.after["plan"]) == (None, "pro")
    assert notices(key_notices) == {key.public_id}


def test_limits_below_one_are_refused_next_to_the_field(admin: Any, viewer_key: tuple[ApiKey, str]) -> None:
    key, _ = viewer_key
    client = browser(admin)
    page = f"{KEYS}{key.pk}/change/"
    token = csrf_token(client, page)

    response = client.post(page, {**_limits(burst="0"), "csrfmiddlewaretoken": token})

    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 1." in response.content.decode()
    key.refresh_from_db()
    assert key.burst is None
    assert not AuditEntry.objects.filter(action="key.limits_changed").exists()


def test_saving_an_unchanged_key_records_nothing(admin: Any, viewer_key: tuple[ApiKey, str]) -> None:
    key, _ = viewer_key
    client = browser(admin)
    page = f"{KEYS}{key.pk}/change/"
    token = csrf_token(client, page)

    response = client.post(page, {**_limits(), "csrfmiddlewaretoken": token})

    assert response.status_code == 302
    assert not AuditEntry.objects.filter(action="key.limits_changed").exists()


def test_editing_a_plan_announces_every_key_on_it(
    admin: Any,
    viewer: Any,
    pro: Plan,
    key_notices: redis.client.PubSub,
    django_capture_on_commit_callbacks: Any,
) -> None:
    on_pro = [services.create_key(viewer, name=f"k{i}", model_patterns=["*"], actions=["read"])[0] for i in range(3)]
    for key in on_pro:
        services.set_limits(key, actor=admin, plan=pro)
    planless, _ = services.create_key(viewer, name="planless", model_patterns=["*"], actions=["read"])
    client = browser(admin)
    page = f"{PLANS}{pro.pk}/change/"
    token = csrf_token(client, page)
    edit = {"name": "pro", "requests_per_window": "10", "window_seconds": "1", "burst": "20", "daily_quota": ""}
    edit["priority"] = "normal"

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(page, {**edit, "csrfmiddlewaretoken": token})

    assert response.status_code == 302
    pro.refresh_from_db()
    assert pro.requests_per_window == 10
    assert notices(key_notices) == {key.public_id for key in on_pro}
    assert planless.public_id not in {key.public_id for key in on_pro}
    assert services.effective_policy(ApiKey.objects.get(pk=on_pro[0].pk)).limit == 10
    entry = AuditEntry.objects.get(action="plan.changed")
    assert entry.actor == admin
    assert entry.before is not None
    assert entry.after is not None
    assert (entry.before["requests_per_window"], entry.after["requests_per_window"]) == (1000, 10)


def test_making_a_plan_the_default_announces_the_keys_without_a_plan(
    admin: Any,
    viewer: Any,
    pro: Plan,
    key_notices: redis.client.PubSub,
    django_capture_on_commit_callbacks: Any,
) -> None:
    planless, _ = services.create_key(viewer, name="planless", model_patterns=["*"], actions=["read"])
    client = browser(admin)
    page = f"{PLANS}{pro.pk}/change/"
    token = csrf_token(client, page)
    edit = {"name": "pro", "requests_per_window": "7", "window_seconds": "1", "burst": "7", "is_default": "on"}
    edit["priority"] = "normal"

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(page, {**edit, "daily_quota": "", "csrfmiddlewaretoken": token})

    assert response.status_code == 302
    assert notices(key_notices) == {planless.public_id}
    assert services.effective_policy(planless).limit == 7
