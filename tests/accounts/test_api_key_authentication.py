"""API keys on the management API: a `manage` key authenticates as its user; anything else is a 401."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from rest_framework.test import APIClient

from accounts import api, services
from accounts.models import ApiKey
from registry import services as registry
from registry.models import RegisteredModel
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def fraud(admin: Any) -> RegisteredModel:
    """`fraud`, created here by `admin` (not tests/conftest.py's, which `owner` creates)."""
    return registry.create_model(name="fraud", actor=admin)


@pytest.fixture
def manage_key(viewer: Any) -> tuple[ApiKey, str]:
    return services.create_key(viewer, name="script", model_patterns=["*"], actions=["manage"])


def _script() -> APIClient:
    """A client with no session, as a script is; CSRF is enforced as for a browser."""
    return APIClient(enforce_csrf_checks=True)


def test_a_malformed_key_is_refused_without_touching_the_database(
    fraud: RegisteredModel, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(0):
        response = _script().get("/api/models/", HTTP_AUTHORIZATION="Bearer tk_live_not-a-key")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="turnout"'
    assert response.json() == {"detail": "malformed API key"}


def test_an_infer_only_key_lacks_the_manage_scope(viewer_key: tuple[ApiKey, str], fraud: RegisteredModel) -> None:
    _, secret = viewer_key

    response = _script().get("/api/models/", HTTP_AUTHORIZATION=f"Bearer {secret}")

    assert response.status_code == 401
    assert response.json() == {"detail": "this key lacks the manage scope"}


def test_a_revoked_key_is_refused(viewer: Any, manage_key: tuple[ApiKey, str], fraud: RegisteredModel) -> None:
    key, secret = manage_key
    services.revoke_key(key, actor=viewer)

    response = _script().get("/api/models/", HTTP_X_API_KEY=secret)

    assert response.status_code == 401
    assert response.json() == {"detail": "invalid, expired or revoked API key"}


def test_no_key_at_all_is_still_the_anonymous_403(fraud: RegisteredModel) -> None:
    plain = _script().get("/api/models/")
    other_scheme = _script().get("/api/models/", HTTP_AUTHORIZATION="Basic dmljOnNlY3JldA==")

    assert plain.status_code == 403
    assert other_scheme.status_code == 403


def test_a_manage_key_lists_models_by_either_header_and_its_use_is_recorded(
    manage_key: tuple[ApiKey, str], fraud: RegisteredModel, redis_client: redis.Redis
) -> None:
    key, secret = manage_key

    bearer = _script().get("/api/models/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    x_api_key = _script().get("/api/models/", HTTP_X_API_KEY=secret)

    assert bearer.status_code == 200
    assert [model["name"] for model in bearer.json()["results"]] == ["fraud"]
    assert x_api_key.status_code == 200
    assert services.flush_last_used() == 1
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_a_manage_key_has_its_users_rights_and_no_more(manage_key: tuple[ApiKey, str]) -> None:
    _, secret = manage_key

    # No CSRF token: a key is not a cookie, so the request is not forgeable cross-site.
    response = _script().post("/api/models/", {"name": "spam"}, format="json", HTTP_AUTHORIZATION=f"Bearer {secret}")

    assert response.status_code == 403
    assert "maintainers" in response.json()["detail"]
    assert not RegisteredModel.objects.filter(name="spam").exists()


def test_a_key_of_a_deactivated_user_is_refused(viewer: Any, manage_key: tuple[ApiKey, str]) -> None:
    _, secret = manage_key
    viewer.is_active = False
    viewer.save()

    response = _script().get("/api/models/", HTTP_AUTHORIZATION=f"Bearer {secret}")

    assert response.status_code == 401
    assert viewer.api_keys.get().status == "active"


def test_the_schema_describes_the_bearer_scheme(viewer: Any) -> None:
    client = APIClient()
    client.force_login(viewer)

    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


@pytest.fixture
def limited_key(admin: Any, manage_key: tuple[ApiKey, str], redis_client: redis.Redis) -> tuple[ApiKey, str]:
    """A manage key allowed 3 requests a minute, with a burst of 3."""
    key, secret = manage_key
    services.set_limits(key, actor=admin, requests_per_window=3, window_seconds=60, burst=3)
    return key, secret


def test_a_key_over_its_rate_limit_gets_429_with_the_rate_limit_headers(
    limited_key: tuple[ApiKey, str], fraud: RegisteredModel
) -> None:
    _, secret = limited_key

    answers = [_script().get("/api/models/", HTTP_AUTHORIZATION=f"Bearer {secret}") for _ in range(4)]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    # Every answer tells the key where it stands.
    assert [answer["RateLimit"].split(";")[1] for answer in answers] == ["r=2", "r=1", "r=0", "r=0"]
    assert {answer["RateLimit-Policy"] for answer in answers} == {'"burst";q=3;w=60'}
    refused = answers[-1]
    assert 1 <= int(refused["Retry-After"]) <= 20
    assert refused["RateLimit-Policy"] == '"burst";q=3;w=60'
    assert refused["RateLimit"].startswith('"burst";r=0;t=')
    assert refused.json() == {"detail": f"this key is over its rate limit; retry in {refused['Retry-After']} s"}


def test_the_dashboards_session_does_not_spend_a_keys_limit(
    viewer: Any, limited_key: tuple[ApiKey, str], fraud: RegisteredModel
) -> None:
    _, secret = limited_key
    browser = APIClient()
    browser.force_login(viewer)

    answers = [browser.get("/api/models/") for _ in range(5)]
    assert [answer.status_code for answer in answers] == [200] * 5
    assert not any(answer.has_header("RateLimit") for answer in answers)
    assert _script().get("/api/models/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200


def test_with_redis_unreachable_a_key_is_not_limited(
    limited_key: tuple[ApiKey, str], fraud: RegisteredModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, secret = limited_key
    nowhere = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    monkeypatch.setattr(api, "get_redis", lambda: nowhere)

    answers = [_script().get("/api/models/", HTTP_AUTHORIZATION=f"Bearer {secret}") for _ in range(5)]

    assert [answer.status_code for answer in answers] == [200] * 5
