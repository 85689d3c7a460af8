"""A key's model patterns must reach a model (a typo is caught when the key is made, not as
404s later), and revoking asks first, saying that a revoked key has no grace period."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from accounts import services
from accounts.models import ApiKey
from audit.models import AuditEntry
from registry.models import RegisteredModel
from tests.accounts.steps import browser, csrf_token, htmx_post

pytestmark = pytest.mark.django_db


def test_a_pattern_that_matches_no_model_is_refused_naming_it(viewer: Any, fraud: RegisteredModel) -> None:
    with pytest.raises(services.ApiKeyError) as refused:
        services.create_key(viewer, name="k", model_patterns=["fraud", "frod", "iris-*"], actions=["infer"])

    assert str(refused.value) == (
        "'frod', 'iris-*' match no model (models are: fraud); check the spelling, "
        "or allow models not created yet if the key is meant for them"
    )
    assert refused.value.field == "model_patterns"
    assert not ApiKey.objects.exists()
    assert not AuditEntry.objects.filter(action="key.created").exists()


def test_the_page_shows_the_refusal_next_to_the_models_field(viewer: Any, fraud: RegisteredModel) -> None:
    client = browser(viewer)
    token = csrf_token(client, "/keys/")

    response = htmx_post(client, "/keys/new/", {"name": "k", "model_patterns": "frod", "actions": ["infer"]}, token)

    text = response.content.decode()
    assert response.status_code == 200
    assert "&#x27;frod&#x27; matches no model (models are: fraud)" in text
    assert text.index("matches no model") > text.index('name="model_patterns"')  # next to the field
    assert not ApiKey.objects.exists()


def test_a_key_for_models_to_come_or_for_every_model_is_accepted(viewer: Any, owner: Any) -> None:
    later, _ = services.create_key(
        viewer, name="later", model_patterns=["churn-*"], actions=["infer"], future_models=True
    )
    every, _ = services.create_key(viewer, name="all", model_patterns=["*"], actions=["infer"])
    manager, _ = services.create_key(owner, name="maker", model_patterns=["new-*"], actions=["manage"])
    client = browser(viewer)
    token = csrf_token(client, "/keys/")
    posted = {"name": "p", "model_patterns": "churn-*", "actions": ["infer"], "future_models": "on"}
    page = htmx_post(client, "/keys/new/", posted, token)

    assert page.status_code == 200
    assert ApiKey.objects.filter(name="p", model_patterns=["churn-*"]).exists()
    assert [k.model_patterns for k in (later, every, manager)] == [["churn-*"], ["*"], ["new-*"]]


def test_revoking_without_js_asks_first_and_names_the_grace_period(viewer: Any) -> None:
    key, _ = services.create_key(viewer, name="scoring job", model_patterns=["*"], actions=["infer"])
    services.rotate_key(key, actor=viewer, grace=dt.timedelta(hours=1))
    key.refresh_from_db()
    client = browser(viewer)
    token = csrf_token(client, "/keys/")

    asked = client.post(f"/keys/{key.public_id}/revoke/", {"csrfmiddlewaretoken": token})

    text = asked.content.decode()
    assert asked.status_code == 200
    assert "are refused at once: a revoked key has no grace period" in text
    assert "and its previous secret, which still worked until" in text
    assert '<button type="submit" class="danger">Yes, revoke it now</button>' in text
    key.refresh_from_db()
    assert key.revoked_at is None


def test_the_keys_page_confirm_dialogs_name_the_grace_periods(viewer: Any) -> None:
    services.create_key(viewer, name="scoring job", model_patterns=["*"], actions=["infer"])

    page = browser(viewer).get("/keys/").content.decode()

    assert "revoking has no grace period" in page
    assert "keeps working for the grace period chosen in the list (24 hours unless you changed it)" in page
    assert 'hx-vals=\'{"confirm": "yes"}\'' in page
