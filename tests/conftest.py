"""Shared fixtures.

Personas (used across the suite, rights explained once):
- `admin`: a superuser; may do everything.
- `viewer`: an ordinary logged-in user with no grants.
- anonymous: no session at all.

Tests talk to the real PostgreSQL and Redis configured in settings. Each
pytest-xdist worker gets its own Redis key prefix so parallel runs never see
each other's streams or heartbeats.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from registry.permissions import maintainers_group
from tests.factories import AdminFactory, RegisteredModelFactory, UserFactory
from tests.support.asgi import AsgiClient
from tests.support.clients import signed_in


def test_queue() -> str:
    # One per test process: concurrent runs (and xdist workers) never share a
    # queue or a key prefix, so none consumes or deletes another's messages.
    return f"turnout-test-{os.getpid()}"


def pytest_configure(config: pytest.Config) -> None:
    from controlplane.celery import app

    settings.TURNOUT["REDIS_PREFIX"] = test_queue()
    # Tasks the code under test enqueues go to this run's own queue, which only
    # the worker processes started by integration tests consume.
    app.conf.task_default_queue = test_queue()
    redis.Redis.from_url(app.conf.broker_url).delete(test_queue())


def pytest_unconfigure(config: pytest.Config) -> None:
    from controlplane.celery import app

    client = redis.Redis.from_url(app.conf.broker_url)
    client.delete(test_queue())
    for key in client.scan_iter(match=f"{test_queue()}:*", count=1000):
        client.delete(key)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """The real Redis, with this test run's keys removed before and after each test."""
    client = redis.Redis.from_url(settings.REDIS_URL)

    def clean() -> None:
        for key in client.scan_iter(match=f"{settings.TURNOUT['REDIS_PREFIX']}:*", count=1000):
            client.delete(key)

    clean()
    yield client
    clean()
    client.close()


# --- Personas ---------------------------------------------------------------------------------------------------
# Their rights are explained once, in this module's docstring.


@pytest.fixture
def admin(db: None) -> Any:
    return AdminFactory(username="ada")


@pytest.fixture
def owner(db: None) -> Any:
    return UserFactory(username="olga", maintainer=True)


@pytest.fixture
def outsider(db: None) -> Any:
    return UserFactory(username="otto")


@pytest.fixture
def maintainer(outsider: Any) -> Any:
    """The outsider, made a maintainer, with a model of his own."""
    outsider.groups.add(maintainers_group())
    RegisteredModelFactory(name="churn", actor=outsider)
    return outsider


@pytest.fixture
def viewer(db: None) -> Any:
    return UserFactory(username="vic")


# Each persona's management API client, signed in without a login form.


@pytest.fixture
def admin_api(admin: Any) -> APIClient:
    return signed_in(admin, APIClient)


@pytest.fixture
def owner_api(owner: Any) -> APIClient:
    return signed_in(owner, APIClient)


@pytest.fixture
def maintainer_api(maintainer: Any) -> APIClient:
    return signed_in(maintainer, APIClient)


@pytest.fixture
def viewer_api(viewer: Any) -> APIClient:
    return signed_in(viewer, APIClient)


@pytest.fixture
def anonymous_api() -> APIClient:
    return APIClient()


@pytest.fixture
def gateway_client() -> Iterator[AsgiClient]:
    """The full ASGI application (gateway + Django) with a fresh gateway, driven in-process.

    API keys are not required here, so that protocol and batching tests need no
    key set-up; tests/accounts covers authentication with `keyed_gateway_client`.
    """
    yield from _gateway_client(require_key=False)


@pytest.fixture
def keyed_gateway_client() -> Iterator[AsgiClient]:
    """As `gateway_client`, with API keys required on model endpoints (the default in production)."""
    yield from _gateway_client(require_key=True)


def _gateway_client(require_key: bool) -> Iterator[AsgiClient]:
    from controlplane.asgi import build_application
    from gateway.app import Gateway

    gateway = Gateway()
    gateway.models.require_key = require_key
    client = AsgiClient(build_application(gateway))
    client.gateway = gateway  # type: ignore[attr-defined]
    yield client
    client.loop.run_until_complete(gateway.close())
    client.close()
