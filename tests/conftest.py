"""The personas, and the fixtures that tests in more than one folder use.

Layout: tests/<app>/ mirrors the apps (accounts, audit, controlplane, dashboard,
dataplane, gateway, observability, ops, registry, rollouts), in-process: Django's
test client, the ASGI application driven by tests/support/asgi.py. Every test that
starts real processes (a `celery -A controlplane worker`, a uvicorn web process) is
in tests/integration/. tests/support/ holds the helpers several folders import,
tests/factories.py the factory_boy factories. A folder's conftest.py adds what only
its tests use.

Personas, defined here once (password "correct horse battery"; tests look for these
usernames):
- `admin` (ada): a superuser; may do everything: every page, every model, everyone's
  API keys in the admin, the metrics with a session.
- `owner` (olga): a maintainer (member of the `maintainers` group) who owns the models
  she creates in a test (`fraud`, `iris`, the integration tests' `inf-*`, ...), and so
  maintains them: uploads versions, moves aliases, starts, pauses, promotes and aborts
  their rollouts. Like any maintainer she may create models.
- `maintainer` (otto): `outsider` made a maintainer, who created a model of his own,
  `churn`; on the owner's models he is a viewer: he may neither change them, upload to
  them, move their aliases nor start or steer their rollouts.
- `viewer` (vic): signed in, no grants: reads every page, model and rollout and changes
  none; manages his own API keys only.
- `outsider` (otto): another ordinary user, no grants; owns keys of his own and must
  never see or change `viewer`'s.
- anonymous: no session at all; may sign up, log in and ask for a password reset.

`maintainer` and `outsider` are one person (the tests look for otto) with more or
fewer rights: a test takes the one it needs. Every user, admins included, manages
only their own keys on /keys/; admins reach everyone's in the admin.
`<persona>_api` is that persona's management API client, signed in without a login
form; `anonymous_api` has no session.

Tests talk to the real PostgreSQL and Redis configured in settings. Each test process
(each pytest-xdist worker) gets its own Redis key prefix and Celery queue, so parallel
runs never see each other's streams, heartbeats or tasks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from django.conf import settings
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rest_framework.test import APIClient

from controlplane.redis_client import redis_keys
from observability import recorder as recorder_module
from observability import tracing
from observability.recorder import Observation, Recorder
from registry import services as registry_services
from registry.demo_models import build_mlp
from registry.models import RegisteredModel
from registry.permissions import maintainers_group
from tests.factories import AdminFactory, ModelVersionFactory, RegisteredModelFactory, UserFactory
from tests.support.asgi import AsgiClient
from tests.support.clients import signed_in
from tests.support.v2 import Gateway


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


# --- The owner's models ---------------------------------------------------------------------------------------------


@pytest.fixture
def fraud(owner: Any) -> RegisteredModel:
    """A model `owner` created and so maintains; no version yet."""
    return RegisteredModelFactory(name="fraud", actor=owner, description="Card fraud scores", tags=["tabular"])


@pytest.fixture
def iris(owner: Any) -> RegisteredModel:
    """A model `owner` created and so maintains; no version yet."""
    return RegisteredModelFactory(name="iris", actor=owner, description="Iris flower classifier", tags=["tabular"])


@pytest.fixture
def register(owner: Any, artifact_root: Path) -> Callable[..., Any]:
    """Register a model as `owner`; with `ready`, upload a small MLP, validate it and point `production` at it."""

    def add(name: str, *, ready: bool = True, onnx_bytes: bytes | None = None) -> Any:
        model = RegisteredModel.objects.filter(name=name).first() or RegisteredModelFactory(name=name, actor=owner)
        if not ready:
            return model
        data = onnx_bytes or build_mlp(4, [8], 3)
        return ModelVersionFactory(model=model, actor=owner, onnx_bytes=data, validate=True, production=True)

    return add


# --- Services: Redis, artifact storage --------------------------------------------------------------------------


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


@pytest.fixture
def artifact_root(settings: Any, tmp_path: Path) -> Path:
    """Artifacts of this test in their own folder (local storage)."""
    root = tmp_path / "artifacts"
    root.mkdir()
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}}
    settings.STORAGES = {**settings.STORAGES, "artifacts": backend}
    return root


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Artifacts of this module, shared with the processes it starts (their ARTIFACT_ROOT)."""
    return tmp_path_factory.mktemp("artifacts")


# --- The gateway, in-process ----------------------------------------------------------------------------------------


@pytest.fixture
def gateway_client() -> Iterator[AsgiClient]:
    """The full ASGI application (gateway + Django) with a fresh gateway, driven in-process.

    API keys are not required here, so that protocol and batching tests need no
    key set-up; tests/gateway/test_gateway_auth.py covers authentication with
    `keyed_gateway_client`.
    """
    yield from _gateway_client(require_key=False)


@pytest.fixture
def keyed_gateway_client() -> Iterator[AsgiClient]:
    """As `gateway_client`, with API keys required on model endpoints (the default in production)."""
    yield from _gateway_client(require_key=True)


def _gateway_client(require_key: bool) -> Iterator[AsgiClient]:
    from controlplane.asgi import build_application
    from gateway.app import Gateway as GatewayApp

    gateway = GatewayApp()
    gateway.models.require_key = require_key
    client = AsgiClient(build_application(gateway))
    client.gateway = gateway  # type: ignore[attr-defined]
    yield client
    client.loop.run_until_complete(gateway.close())
    client.close()


@pytest.fixture
def gateway(gateway_client: AsgiClient) -> Gateway:
    """The V2 endpoints of a fresh in-process gateway (API keys not required)."""
    return Gateway(gateway_client, gateway_client.gateway)  # type: ignore[attr-defined]


@pytest.fixture
def ready_model(admin: Any, settings: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any) -> str:
    """`scored`, created by `admin`, its version 1 validated and in production; no worker serves it."""
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}
    settings.STORAGES = {**settings.STORAGES, "artifacts": backend}
    model = registry_services.create_model(name="scored", actor=admin)
    with django_capture_on_commit_callbacks(execute=True):
        version = registry_services.upload_version(model, io.BytesIO(build_mlp(4, [8], 2)), actor=admin).version
    registry_services.run_validation(version.validation_jobs.get().pk)
    version.refresh_from_db()
    registry_services.set_alias(model, "production", version, actor=admin)
    return model.name


# --- Tracing --------------------------------------------------------------------------------------------------------


@pytest.fixture
def traced() -> Iterator[Callable[..., InMemorySpanExporter]]:
    """`traced(ratio)` turns tracing on in this process (as the gateway's service, new traces sampled
    with probability `ratio`) and returns the exporter that keeps every span in memory; off again
    after the test. Request it after `gateway`: creating a gateway configures tracing from the settings."""

    def on(ratio: float = 1.0, service: str = tracing.GATEWAY_SERVICE) -> InMemorySpanExporter:
        exporter = InMemorySpanExporter()
        tracing.configure(service, enabled=True, ratio=ratio, endpoint="", exporter=exporter)
        return exporter

    yield on
    tracing.shutdown()


# --- Latency figures ------------------------------------------------------------------------------------------------


@pytest.fixture
def inject(redis_client: redis.Redis) -> Callable[..., list[Observation]]:
    """Record observations as the gateway does, with the recorder's clock at `at`, and flush them to Redis.

    Minutes are injected into the past by pinning the clock the recorder reads; everything else
    (the hash fields, the index set, the TTLs) is the recorder's own.
    """

    def record(items: Iterable[Observation], at: dt.datetime) -> list[Observation]:
        batch = list(items)

        async def run() -> None:
            client = aioredis.Redis.from_url(settings.REDIS_URL)
            recorder = Recorder(client, redis_keys())
            for obs in batch:
                recorder.record(obs)
            await recorder.close()
            await client.aclose()

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(recorder_module, "time", SimpleNamespace(time=lambda: at.timestamp()))
            asyncio.run(run())
        return batch

    return record
