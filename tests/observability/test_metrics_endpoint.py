"""`/metrics` access control, with Django's test client: an admin's session or
the configured bearer token; anyone else gets 401. The exposition parses and
carries the figures read at scrape time (queue depth, live workers)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.prometheus import families

pytestmark = pytest.mark.django_db

TOKEN = "endpoint-test-token-abcdef"


@pytest.fixture
def token(settings: Any) -> str:
    settings.TURNOUT = {**settings.TURNOUT, "METRICS_TOKEN": TOKEN}
    return TOKEN


def test_without_credentials_it_is_401_with_a_bearer_challenge(client: Any, token: str) -> None:
    response = client.get("/metrics")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer ")
    assert b"turnout_" not in response.content


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ", f"Basic {TOKEN}", TOKEN],
    ids=["longer", "shorter", "empty", "wrong-scheme", "no-scheme"],
)
def test_a_wrong_token_is_401(client: Any, token: str, authorization: str) -> None:
    assert client.get("/metrics", HTTP_AUTHORIZATION=authorization).status_code == 401


def test_an_unset_token_lets_no_bearer_in(client: Any, settings: Any) -> None:
    settings.TURNOUT = {**settings.TURNOUT, "METRICS_TOKEN": ""}

    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer").status_code == 401


def test_a_logged_in_user_who_is_not_staff_is_401(client: Any, viewer: Any, token: str) -> None:
    client.force_login(viewer)

    assert client.get("/metrics").status_code == 401


def test_an_admin_session_reads_the_metrics(client: Any, admin: Any, token: str) -> None:
    client.force_login(admin)

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    names = families(response.content.decode())
    assert {"turnout_queue_depth", "turnout_workers_alive"} <= names


def test_the_right_token_reads_the_metrics(client: Any, token: str) -> None:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200
    names = families(response.content.decode())
    assert {"turnout_queue_depth", "turnout_workers_alive"} <= names


def test_only_get_is_allowed(client: Any, token: str) -> None:
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405
