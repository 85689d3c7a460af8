"""From sign-up to a revoked key, as a new user does it, checked against the real V2 gateway.

With no model registered, the gateway answers a valid key with 404 "unknown model"
and anything else with 401: enough to tell whether a key authenticates.
"""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import ApiKey
from tests.accounts.steps import browser, csrf_token, htmx_post, secrets_in
from tests.support.asgi import AsgiClient
from tests.support.processes import wait_for

# The gateway reads keys on its own database connections: the rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

MODEL_URL = "/v2/models/not-deployed"


def _status(gateway: AsgiClient, secret: str) -> int:
    return gateway.get(MODEL_URL, headers={"authorization": f"Bearer {secret}"}).status


def test_a_new_user_creates_uses_rotates_and_revokes_a_key(keyed_gateway_client: AsgiClient) -> None:
    gateway = keyed_gateway_client
    client = browser()
    token = csrf_token(client, "/signup/")
    signup = {"username": "sam", "email": "sam@example.com", "password1": "a fine long phrase"}
    signed_up = client.post("/signup/", {**signup, "password2": signup["password1"], "csrfmiddlewaretoken": token})
    assert signed_up.status_code == 302
    token = csrf_token(client, "/keys/")

    created = htmx_post(client, "/keys/new/", {"name": "job", "model_patterns": "*", "actions": ["read"]}, token)
    [secret] = set(secrets_in(created.content.decode()))
    key = ApiKey.objects.get(user__username="sam")

    assert secret not in client.get("/keys/").content.decode()
    with_key = gateway.get(MODEL_URL, headers={"authorization": f"Bearer {secret}"})
    assert with_key.status == 404
    assert with_key.json() == {"error": "unknown model 'not-deployed'"}
    assert gateway.get(MODEL_URL, headers={"x-api-key": secret}).status == 404
    assert _status(gateway, secret[:-1] + ("A" if secret[-1] != "A" else "B")) == 401

    rotated = htmx_post(client, f"/keys/{key.public_id}/rotate/", {"grace": "86400"}, token)
    [new] = set(secrets_in(rotated.content.decode()))

    assert new != secret
    # Gateways drop their cached copy on the change notice, within milliseconds.
    assert wait_for(lambda: _status(gateway, new) == 404, timeout=1.0)
    assert _status(gateway, secret) == 404  # the old secret, within its grace period

    revoked = htmx_post(client, f"/keys/{key.public_id}/revoke/", {"confirm": "yes"}, token)

    assert revoked.status_code == 200
    assert wait_for(lambda: _status(gateway, new) == 401, timeout=1.0)
    assert _status(gateway, secret) == 401
    key.refresh_from_db()
    assert key.status == "revoked"


def test_another_users_key_page_cannot_revoke_my_key(
    keyed_gateway_client: AsgiClient, viewer: Any, outsider: Any
) -> None:
    client = browser(viewer)
    token = csrf_token(client, "/keys/")
    created = htmx_post(client, "/keys/new/", {"name": "mine", "model_patterns": "*", "actions": ["read"]}, token)
    [secret] = set(secrets_in(created.content.decode()))
    key = ApiKey.objects.get(user=viewer)
    other = browser(outsider)
    other_token = csrf_token(other, "/keys/")

    response = htmx_post(other, f"/keys/{key.public_id}/revoke/", {"confirm": "yes"}, other_token)

    assert response.status_code == 404
    assert _status(keyed_gateway_client, secret) == 404
    key.refresh_from_db()
    assert key.status == "active"
