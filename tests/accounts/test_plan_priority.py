"""A plan's priority level: set in the admin (audited, every key on the plan told to
drop its cached record), carried on the key record the gateway authenticates with;
keys without a plan take the default plan's level."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from accounts import services
from accounts.models import Plan, Priority
from audit.models import AuditEntry
from tests.accounts.steps import browser, csrf_token, notices

pytestmark = pytest.mark.django_db

PLANS = "/admin/accounts/plan/"


@pytest.fixture
def free() -> Plan:
    return Plan.objects.create(name="free", requests_per_window=10, window_seconds=1, burst=10)


def plan_form(plan: Plan, **values: str) -> dict[str, str]:
    form = {"name": plan.name, "requests_per_window": "10", "window_seconds": "1", "burst": "10", "daily_quota": ""}
    return {**form, "priority": plan.priority, **values}


def test_an_unknown_level_is_refused_next_to_the_field(admin: Any, free: Plan) -> None:
    client = browser(admin)
    page = f"{PLANS}{free.pk}/change/"
    token = csrf_token(client, page)

    response = client.post(page, {**plan_form(free, priority="urgent"), "csrfmiddlewaretoken": token})

    assert response.status_code == 200
    assert "Select a valid choice. urgent is not one of the available choices." in response.content.decode()
    free.refresh_from_db()
    assert free.priority == Priority.NORMAL
    assert not AuditEntry.objects.filter(action="plan.changed").exists()


def test_a_new_plan_is_normal_and_the_admin_list_shows_the_level(admin: Any, free: Plan) -> None:
    response = browser(admin).get(PLANS)

    assert response.status_code == 200
    assert free.priority == Priority.NORMAL
    assert "Normal" in response.content.decode()


def test_raising_a_plans_priority_reaches_its_keys_records_and_is_audited(
    admin: Any,
    viewer: Any,
    free: Plan,
    key_notices: redis.client.PubSub,
    django_capture_on_commit_callbacks: Any,
) -> None:
    key, _ = services.create_key(viewer, name="on-free", model_patterns=["*"], actions=["infer"])
    services.set_limits(key, actor=admin, plan=free)
    assert services.key_record(key.public_id).priority == "normal"  # type: ignore[union-attr]
    client = browser(admin)
    page = f"{PLANS}{free.pk}/change/"
    token = csrf_token(client, page)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(page, {**plan_form(free, priority="high"), "csrfmiddlewaretoken": token})

    assert response.status_code == 302
    free.refresh_from_db()
    assert free.priority == Priority.HIGH
    assert key.public_id in notices(key_notices)
    assert services.key_record(key.public_id).priority == "high"  # type: ignore[union-attr]
    entry = AuditEntry.objects.get(action="plan.changed")
    assert (entry.before["priority"], entry.after["priority"]) == ("normal", "high")  # type: ignore[index]


def test_moving_a_key_to_another_plan_changes_its_level(
    admin: Any, viewer: Any, free: Plan, key_notices: redis.client.PubSub, django_capture_on_commit_callbacks: Any
) -> None:
    low = Plan.objects.create(name="batch", priority=Priority.LOW)
    key, _ = services.create_key(viewer, name="k", model_patterns=["*"], actions=["infer"])
    services.set_limits(key, actor=admin, plan=free)

    with django_capture_on_commit_callbacks(execute=True):
        services.set_limits(key, actor=admin, plan=low)

    assert key.public_id in notices(key_notices)
    assert services.key_record(key.public_id).priority == "low"  # type: ignore[union-attr]


def test_a_key_without_a_plan_takes_the_default_plans_level(viewer: Any) -> None:
    key, _ = services.create_key(viewer, name="planless", model_patterns=["*"], actions=["infer"])
    default = services.default_plan()
    Plan.objects.filter(pk=default.pk).update(priority=Priority.LOW)

    assert services.key_record(key.public_id).priority == "low"  # type: ignore[union-attr]
