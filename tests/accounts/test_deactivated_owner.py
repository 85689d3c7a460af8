"""A deactivated or deleted user's keys, in the admin: the change is audited with the admin
who made it, every one of the user's keys is announced to the gateways, and the keys
pages show such keys as not usable ("owner deactivated")."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.test import Client

from accounts import keyformat, services
from accounts.models import ApiKey
from audit.models import AuditEntry
from tests.accounts.steps import browser, csrf_token, notices

pytestmark = pytest.mark.django_db

KEYS = "/admin/accounts/apikey/"
USERS = "/admin/auth/user/"


def _user_form(user: Any, token: str, **changes: Any) -> dict[str, Any]:
    """The admin's user change form as a browser submits it, unchanged but for `changes`."""
    form = {
        "csrfmiddlewaretoken": token,
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on" if user.is_active else "",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "initial-date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "initial-date_joined_1": user.date_joined.strftime("%H:%M:%S"),
    }
    form.update(changes)
    return {name: value for name, value in form.items() if value != ""}


def test_saving_a_user_without_deactivating_them_announces_and_audits_nothing(
    admin: Any,
    viewer: Any,
    viewer_key: tuple[ApiKey, str],
    key_notices: redis.client.PubSub,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = browser(admin)
    token = csrf_token(client, f"{USERS}{viewer.pk}/change/")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{USERS}{viewer.pk}/change/", _user_form(viewer, token, first_name="Vic"))

    assert response.status_code == 302, response.content.decode()[:2000]
    viewer.refresh_from_db()
    assert (viewer.first_name, viewer.is_active) == ("Vic", True)
    assert not AuditEntry.objects.filter(action__startswith="user.").exists()
    assert notices(key_notices, timeout=0.3) == set()


def test_deactivating_a_user_in_the_admin_is_audited_and_announces_each_of_their_keys(
    admin: Any,
    viewer: Any,
    viewer_key: tuple[ApiKey, str],
    outsider: Any,
    key_notices: redis.client.PubSub,
    django_capture_on_commit_callbacks: Any,
) -> None:
    key, _ = viewer_key
    second, _ = services.create_key(viewer, name="second", model_patterns=["*"], actions=["read"])
    services.create_key(outsider, name="otto's", model_patterns=["*"], actions=["read"])
    client = browser(admin)
    token = csrf_token(client, f"{USERS}{viewer.pk}/change/")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{USERS}{viewer.pk}/change/", _user_form(viewer, token, is_active=""))

    assert response.status_code == 302
    viewer.refresh_from_db()
    assert viewer.is_active is False
    entry = AuditEntry.objects.get(action="user.deactivated")
    assert (entry.actor, entry.object_id) == (admin, str(viewer.pk))
    assert entry.after == {"is_active": False, "keys": [key.public_id, second.public_id]}
    assert notices(key_notices) == {key.public_id, second.public_id}
    # Not revoked: reactivating the user makes the keys usable again.
    assert ApiKey.objects.filter(user=viewer, revoked_at__isnull=True).count() == 2


def test_the_keys_admin_shows_a_deactivated_owners_keys_as_not_usable(
    admin: Any, viewer: Any, viewer_key: tuple[ApiKey, str], outsider: Any
) -> None:
    key, _ = viewer_key
    theirs, _ = services.create_key(outsider, name="otto's", model_patterns=["*"], actions=["read"])
    viewer.is_active = False
    viewer.save()
    client = browser(admin)

    listing = client.get(KEYS).content.decode()
    detail = client.get(f"{KEYS}{key.pk}/change/").content.decode()
    deactivated = client.get(KEYS, {"status": "owner_deactivated"}).content.decode()
    active = client.get(KEYS, {"status": "active"}).content.decode()

    assert "owner deactivated" in listing
    assert "owner deactivated" in detail
    assert key.prefix in deactivated
    assert theirs.prefix not in deactivated
    assert key.prefix not in active
    assert theirs.prefix in active
    assert ApiKey.objects.get(pk=key.pk).shown_status == "owner deactivated"
    assert ApiKey.objects.get(pk=key.pk).status == "active"


def test_deleting_a_user_is_audited_and_announces_their_keys(
    admin: Any,
    viewer: Any,
    viewer_key: tuple[ApiKey, str],
    key_notices: redis.client.PubSub,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # (The admin refuses to delete a user who has keys, since keys are never deleted
    # there: deactivate instead. A script deletes through the ORM, as here.)
    key, _ = viewer_key

    with django_capture_on_commit_callbacks(execute=True), services.acting_as(admin):
        viewer.delete()

    assert not ApiKey.objects.filter(public_id=key.public_id).exists()
    entry = AuditEntry.objects.get(action="user.deleted")
    assert (entry.actor, entry.before) == (admin, {"username": "vic", "keys": [key.public_id]})
    assert notices(key_notices) == {key.public_id}


def test_a_script_that_deactivates_a_user_is_audited_as_the_system(
    viewer: Any,
    viewer_key: tuple[ApiKey, str],
    key_notices: redis.client.PubSub,
    django_capture_on_commit_callbacks: Any,
) -> None:
    key, _ = viewer_key
    viewer.is_active = False

    with django_capture_on_commit_callbacks(execute=True):
        viewer.save()

    entry = AuditEntry.objects.get(action="user.deactivated")
    assert (entry.actor, entry.actor_name) == (None, "system")
    assert notices(key_notices) == {key.public_id}


def test_the_management_api_tells_a_deactivated_owners_key_why_it_is_refused(viewer: Any) -> None:
    _, secret = services.create_key(viewer, name="script", model_patterns=["*"], actions=["manage"])
    viewer.is_active = False
    viewer.save()
    client = Client()

    own = client.get("/api/models/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    wrong_secret = client.get("/api/models/", HTTP_AUTHORIZATION=f"Bearer {forged_secret(secret)}")

    assert (own.status_code, own.json()["detail"]) == (401, "the user of this key is deactivated")
    assert (wrong_secret.status_code, wrong_secret.json()["detail"]) == (401, "invalid, expired or revoked API key")
    assert ApiKey.objects.get(user=viewer).status == "active"


def forged_secret(secret: str) -> str:
    """The same public id with another secret (and a valid checksum)."""
    body = secret[: -keyformat.CHECKSUM_LENGTH - keyformat.SECRET_LENGTH] + "B" * keyformat.SECRET_LENGTH
    return body + keyformat.checksum(body)
