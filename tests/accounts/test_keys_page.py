"""The keys page: create (the secret shown once), list, rotate, revoke; only one's own keys."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone

from accounts import keyformat, services
from accounts.models import ApiKey
from audit.models import AuditEntry
from tests.accounts.steps import browser, csrf_token, htmx_post, secrets_in

pytestmark = pytest.mark.django_db

NEW_KEY = {"name": "nightly scoring", "model_patterns": "*", "actions": ["infer", "read"], "expires_on": ""}


def _row_values(key: ApiKey) -> str:
    """Every stored value of a key's row, as text."""
    return " ".join(str(getattr(key, field.attname)) for field in ApiKey._meta.concrete_fields)


# --- Negative cases first -----------------------------------------------------------


def test_the_pages_and_actions_require_login(viewer_key: tuple[ApiKey, str]) -> None:
    key, _ = viewer_key
    client = browser()

    page = client.get("/keys/")
    token = csrf_token(client, "/login/")
    revoke = client.post(f"/keys/{key.public_id}/revoke/", {"csrfmiddlewaretoken": token})

    assert page.status_code == 302
    assert page["Location"].startswith("/login/")
    assert revoke.status_code == 302
    assert revoke["Location"].startswith("/login/")
    key.refresh_from_db()
    assert key.revoked_at is None


def test_mutations_are_posts_with_a_csrf_token(viewer: Any, viewer_key: tuple[ApiKey, str]) -> None:
    key, _ = viewer_key
    client = browser(viewer)

    by_get = client.get(f"/keys/{key.public_id}/revoke/")
    without_token = client.post(f"/keys/{key.public_id}/revoke/", headers={"HX-Request": "true"})

    assert by_get.status_code == 405
    assert without_token.status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None


def test_invalid_input_is_shown_next_to_each_field_and_nothing_is_created(viewer: Any) -> None:
    client = browser(viewer)
    token = csrf_token(client, "/keys/")
    yesterday = (timezone.now() - dt.timedelta(days=1)).date().isoformat()
    bad = {"name": "", "model_patterns": " , ", "expires_on": yesterday}

    response = htmx_post(client, "/keys/new/", bad, token)

    text = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in text  # the form partial only
    assert text.startswith('<form id="key-form"')
    assert "This field is required." in text
    assert "Give at least one model name or pattern" in text
    assert "Choose at least one action." in text
    assert "Choose today or a later day." in text
    assert not ApiKey.objects.exists()


def test_another_user_can_neither_see_nor_change_my_key(
    viewer_key: tuple[ApiKey, str], outsider: Any, admin: Any
) -> None:
    key, _ = viewer_key
    client = browser(outsider)
    token = csrf_token(client, "/keys/")

    page = client.get("/keys/").content.decode()
    revoke = htmx_post(client, f"/keys/{key.public_id}/revoke/", {"confirm": "yes"}, token)
    rotate = htmx_post(client, f"/keys/{key.public_id}/rotate/", {"grace": "3600"}, token)
    admins_page = browser(admin).get("/keys/").content.decode()

    assert key.public_id not in page
    assert "No keys yet." in page
    assert revoke.status_code == 404
    assert rotate.status_code == 404
    # Admins too see only their own keys here; everyone's are in the admin.
    assert key.public_id not in admins_page
    assert "/admin/accounts/apikey/" in admins_page
    before = key.digest
    key.refresh_from_db()
    assert key.revoked_at is None
    assert key.digest == before
    assert not AuditEntry.objects.filter(action__in=["key.revoked", "key.rotated"]).exists()


# --- Create ---------------------------------------------------------------------------


def test_empty_page_says_how_to_use_a_key(viewer: Any) -> None:
    text = browser(viewer).get("/keys/").content.decode()

    assert "No keys yet. Create one above" in text
    assert "Authorization: Bearer &lt;key&gt;" in text
    assert 'href="/keys/"' in text  # the nav link


def test_the_secret_is_shown_once_and_only_its_digest_is_stored(viewer: Any) -> None:
    client = browser(viewer)
    token = csrf_token(client, "/keys/")

    created = htmx_post(client, "/keys/new/", NEW_KEY, token)

    text = created.content.decode()
    shown = secrets_in(text)
    assert created.status_code == 200
    assert len(set(shown)) == 1
    secret = shown[0]
    assert "it will not be shown again" in text
    assert 'data-copy="key-secret-value"' in text
    assert 'hx-swap-oob="true"' in text  # the list and the panel, out of band
    assert "no-store" in created["Cache-Control"]
    key = ApiKey.objects.get(user=viewer)
    assert key.name == "nightly scoring"
    assert key.actions == ["infer", "read"]
    assert key.model_patterns == ["*"]
    assert key.expires_at is None
    assert key.digest == keyformat.digest(secret, services.pepper())
    assert secret not in _row_values(key)
    assert secret[:-6][-32:] not in _row_values(key)  # not even the secret part
    assert AuditEntry.objects.get(action="key.created").actor == viewer

    later = client.get("/keys/").content.decode()

    assert secrets_in(later) == []
    assert secret not in later
    assert key.prefix in later
    assert "nightly scoring" in later
    assert all(secret not in str(s.get_decoded()) for s in Session.objects.all())
    assert all(secret not in str(e.after) for e in AuditEntry.objects.all())


def test_without_htmx_the_whole_page_shows_the_secret(viewer: Any) -> None:
    client = browser(viewer)
    token = csrf_token(client, "/keys/")

    response = client.post("/keys/new/", {**NEW_KEY, "csrfmiddlewaretoken": token})

    text = response.content.decode()
    assert response.status_code == 200
    assert "<html" in text
    assert len(secrets_in(text)) == 1
    assert "no-store" in response["Cache-Control"]


def test_patterns_actions_and_expiry_are_stored_as_chosen(viewer: Any) -> None:
    client = browser(viewer)
    token = csrf_token(client, "/keys/")
    day = (timezone.now() + dt.timedelta(days=10)).date()
    chosen = {"name": "ops", "model_patterns": "fraud-*, iris,,iris ", "actions": ["manage"], "expires_on": day}

    htmx_post(client, "/keys/new/", chosen, token)

    key = ApiKey.objects.get(user=viewer)
    assert key.model_patterns == ["fraud-*", "iris"]
    assert key.actions == ["manage"]
    # The key works until the end of the chosen day, UTC.
    assert key.expires_at == dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    row = client.get("/keys/").content.decode()
    assert "<code>fraud-*</code> <code>iris</code>" in row
    assert "manage" in row


# --- Revoke and rotate ----------------------------------------------------------------


def test_revoke_rerenders_the_row_as_revoked(viewer: Any, viewer_key: tuple[ApiKey, str]) -> None:
    key, secret = viewer_key
    client = browser(viewer)
    page = client.get("/keys/").content.decode()
    token = client.cookies["csrftoken"].value
    assert 'hx-confirm="Revoke' in page

    response = htmx_post(client, f"/keys/{key.public_id}/revoke/", {"confirm": "yes"}, token)

    text = response.content.decode()
    assert response.status_code == 200
    assert text.startswith(f'<tr id="key-{key.public_id}">')
    assert ">revoked<" in text
    assert "Revoke</button>" not in text
    key.refresh_from_db()
    assert key.status == "revoked"
    assert AuditEntry.objects.get(action="key.revoked").actor == viewer
    record = services.key_record(key.public_id)
    assert record is not None
    assert not record.accepts(keyformat.digest(secret, services.pepper()), timezone.now().timestamp())


def test_rotate_shows_the_new_secret_once_and_until_when_the_old_one_works(
    viewer: Any, viewer_key: tuple[ApiKey, str]
) -> None:
    key, old = viewer_key
    client = browser(viewer)
    token = csrf_token(client, "/keys/")

    response = htmx_post(client, f"/keys/{key.public_id}/rotate/", {"grace": "3600"}, token)

    text = response.content.decode()
    shown = set(secrets_in(text))
    assert response.status_code == 200
    assert len(shown) == 1
    new = shown.pop()
    assert new != old
    assert new.startswith(f"tk_live_{key.public_id}_")
    assert "The previous secret keeps working until" in text
    assert "no-store" in response["Cache-Control"]
    key.refresh_from_db()
    assert key.previous_valid_until is not None
    left = key.previous_valid_until - timezone.now()
    assert dt.timedelta(minutes=59) < left <= dt.timedelta(hours=1)
    record = services.key_record(key.public_id)
    assert record is not None
    now = timezone.now().timestamp()
    assert record.accepts(keyformat.digest(new, services.pepper()), now)
    assert record.accepts(keyformat.digest(old, services.pepper()), now)
    later = client.get("/keys/").content.decode()
    assert secrets_in(later) == []
    assert "previous secret works until" in later


def test_rotate_without_grace_stops_the_old_secret_now(viewer: Any, viewer_key: tuple[ApiKey, str]) -> None:
    key, old = viewer_key
    client = browser(viewer)
    token = csrf_token(client, "/keys/")

    text = htmx_post(client, f"/keys/{key.public_id}/rotate/", {"grace": "0"}, token).content.decode()

    assert "The previous secret no longer works." in text
    key.refresh_from_db()
    assert key.previous_digest == ""
    record = services.key_record(key.public_id)
    assert record is not None
    assert not record.accepts(keyformat.digest(old, services.pepper()), timezone.now().timestamp())


def test_the_grace_periods_offered_default_to_24_hours(viewer: Any, viewer_key: tuple[ApiKey, str]) -> None:
    text = browser(viewer).get("/keys/").content.decode()

    assert '<option value="0">' in text
    assert '<option value="3600">1 hour</option>' in text
    assert '<option value="86400" selected>24 hours</option>' in text
    assert '<option value="604800">7 days</option>' in text


def test_the_default_grace_period_follows_the_setting(
    viewer: Any, viewer_key: tuple[ApiKey, str], settings: Any
) -> None:
    settings.TURNOUT = {**settings.TURNOUT, "KEY_ROTATION_GRACE_HOURS": 168.0}

    text = browser(viewer).get("/keys/").content.decode()

    assert '<option value="604800" selected>7 days</option>' in text


def test_without_htmx_revoke_returns_to_the_page_with_a_message(viewer: Any, viewer_key: tuple[ApiKey, str]) -> None:
    key, _ = viewer_key
    client = browser(viewer)
    token = csrf_token(client, "/keys/")

    response = client.post(
        f"/keys/{key.public_id}/revoke/", {"csrfmiddlewaretoken": token, "confirm": "yes"}, follow=True
    )

    assert response.redirect_chain == [("/keys/", 302)]
    assert "Key &#x27;scoring job&#x27; revoked" in response.content.decode()
    key.refresh_from_db()
    assert key.status == "revoked"


def test_a_refused_rotation_is_shown_in_the_keys_row(viewer: Any, viewer_key: tuple[ApiKey, str]) -> None:
    key, _ = viewer_key
    client = browser(viewer)
    token = csrf_token(client, "/keys/")
    digest = key.digest

    odd = htmx_post(client, f"/keys/{key.public_id}/rotate/", {"grace": "999"}, token)
    services.revoke_key(key, actor=viewer)
    revoked = htmx_post(client, f"/keys/{key.public_id}/rotate/", {"grace": "3600"}, token)

    assert odd["HX-Retarget"] == f"#key-{key.public_id}"
    assert odd["HX-Reswap"] == "outerHTML"
    assert "Choose one of the offered grace periods." in odd.content.decode()
    assert "A revoked key cannot be rotated; create a new one." in revoked.content.decode()
    assert secrets_in(odd.content.decode() + revoked.content.decode()) == []
    key.refresh_from_db()
    assert key.digest == digest
    assert not AuditEntry.objects.filter(action="key.rotated").exists()
