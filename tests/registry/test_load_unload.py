"""Loading and unloading a version on every worker, from the API and the version page.

Personas: `owner` maintains `fraud` (tests/registry/conftest.py); `viewer` reads
only; anonymous has no session. The control stream and the workers' liveness
are the real Redis keys; a "worker" here is the heartbeat and served_by entry a
worker process writes (tests/integration/test_worker_control.py runs real ones).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rest_framework.test import APIClient

from audit.models import AuditEntry
from controlplane.redis_client import get_redis, redis_keys
from dataplane.liveness import NOT_LOADED, record_heartbeat
from registry import services
from registry.demo_models import build_mlp
from registry.models import ModelVersion
from tests.support.clients import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(owner: Any, artifact_root: Path, django_capture_on_commit_callbacks: Any) -> ModelVersion:
    """A ready version 1 of `fraud`, validated in this process."""
    model = services.create_model(name="fraud", actor=owner)
    with django_capture_on_commit_callbacks(execute=False):
        uploaded = services.upload_version(model, io.BytesIO(build_mlp(4, [8], 2)), actor=owner).version
    services.run_validation(uploaded.validation_jobs.get().pk)
    uploaded.refresh_from_db()
    assert uploaded.status == "ready", uploaded.status_reason
    return uploaded


@pytest.fixture
def pending(owner: Any, artifact_root: Path, django_capture_on_commit_callbacks: Any) -> ModelVersion:
    model = services.create_model(name="churn", actor=owner)
    with django_capture_on_commit_callbacks(execute=False):
        return services.upload_version(model, io.BytesIO(build_mlp(4, [8], 2, seed=5)), actor=owner).version


def commands(client: redis.Redis) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in client.xrange(redis_keys().control_stream())
    ]


def live_worker(client: redis.Redis, name: str, version: ModelVersion, state: str) -> None:
    """What a live worker process writes: its heartbeat, and its session of the version."""
    record_heartbeat(client, redis_keys(), name, {"pid": 1}, 10.0)
    client.hset(redis_keys().served_by(version.pk), name, state)


@pytest.fixture
def unreachable_redis(settings: Any) -> Iterator[None]:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    get_redis.cache_clear()
    yield
    get_redis.cache_clear()


# --- API: refusals first -----------------------------------------------------------------------------------------


def test_anonymous_and_viewer_cannot_load(version: ModelVersion, viewer: Any, redis_client: redis.Redis) -> None:
    anonymous = APIClient().post("/api/models/fraud/versions/1/load/")
    as_viewer = signed_in(viewer, APIClient).post("/api/models/fraud/versions/1/unload/")

    assert anonymous.status_code == 403
    assert as_viewer.status_code == 403
    assert "maintainers of model 'fraud'" in as_viewer.json()["detail"]
    assert commands(redis_client) == []
    assert not AuditEntry.objects.filter(action__endswith="_requested").exists()


def test_unknown_version_is_404(version: ModelVersion, owner: Any, redis_client: redis.Redis) -> None:
    response = signed_in(owner, APIClient).post("/api/models/fraud/versions/9/load/")

    assert response.status_code == 404
    assert commands(redis_client) == []


def test_a_version_that_is_not_ready_cannot_be_loaded(
    pending: ModelVersion, owner: Any, redis_client: redis.Redis
) -> None:
    response = signed_in(owner, APIClient).post("/api/models/churn/versions/1/load/")

    assert response.status_code == 400
    assert response.json() == {"detail": "version 1 is pending; only a ready version can be loaded"}
    assert commands(redis_client) == []


def test_redis_down_is_503_and_nothing_is_audited(version: ModelVersion, owner: Any, unreachable_redis: None) -> None:
    api = signed_in(owner, APIClient)

    response = api.post("/api/models/fraud/versions/1/load/")
    detail = api.get("/api/models/fraud/versions/1/")

    assert response.status_code == 503
    assert response.json()["detail"].startswith("the workers cannot be reached")
    assert not AuditEntry.objects.filter(action="version.load_requested").exists()
    assert detail.status_code == 200
    assert detail.json()["workers"] is None


# --- API: what works -----------------------------------------------------------------------------------------------


def test_load_sends_one_command_for_every_worker_and_is_audited(
    version: ModelVersion, owner: Any, redis_client: redis.Redis
) -> None:
    live_worker(redis_client, "w1@host", version, NOT_LOADED)
    live_worker(redis_client, "w2@host", version, "CPUExecutionProvider")

    response = signed_in(owner, APIClient).post("/api/models/fraud/versions/1/load/")

    assert response.status_code == 202
    assert response.json() == {
        "detail": "asked 2 live worker(s) to load version 1",
        "workers": [
            {"worker": "w1@host", "loaded": False, "provider": None},
            {"worker": "w2@host", "loaded": True, "provider": "CPUExecutionProvider"},
        ],
    }
    assert commands(redis_client) == [{"action": "load", "version": str(version.pk)}]
    entry = AuditEntry.objects.get(action="version.load_requested")
    assert entry.actor_name == "olga"
    assert entry.after == {"workers": ["w1@host", "w2@host"]}


def test_unload_without_live_workers_says_there_is_nothing_to_do(
    version: ModelVersion, owner: Any, redis_client: redis.Redis
) -> None:
    # A worker that stopped heartbeating long ago does not count.
    redis_client.hset(redis_keys().served_by(version.pk), "gone@host", "CPUExecutionProvider")

    response = signed_in(owner, APIClient).post("/api/models/fraud/versions/1/unload/")

    assert response.status_code == 202
    assert response.json() == {
        "detail": "no live worker serves version 1 now: there is nothing to unload",
        "workers": [],
    }
    assert commands(redis_client) == [{"action": "unload", "version": str(version.pk)}]
    assert AuditEntry.objects.filter(action="version.unload_requested").count() == 1


def test_version_detail_shows_each_live_workers_session(
    version: ModelVersion, viewer: Any, redis_client: redis.Redis
) -> None:
    live_worker(redis_client, "w1@host", version, "CPUExecutionProvider")

    response = signed_in(viewer, APIClient).get("/api/models/fraud/versions/1/")

    assert response.status_code == 200
    assert response.json()["workers"] == [{"worker": "w1@host", "loaded": True, "provider": "CPUExecutionProvider"}]
    assert "workers" not in signed_in(viewer, APIClient).get("/api/models/fraud/versions/").json()["results"][0]


# --- The version page ------------------------------------------------------------------------------------------------


def test_page_shows_workers_to_everyone_and_buttons_to_maintainers(
    version: ModelVersion, owner: Any, viewer: Any, redis_client: redis.Redis
) -> None:
    live_worker(redis_client, "w1@host", version, NOT_LOADED)

    as_viewer = signed_in(viewer).get("/models/fraud/versions/1/").content.decode()
    as_owner = signed_in(owner).get("/models/fraud/versions/1/").content.decode()

    assert "<code>w1@host</code></td><td>not loaded (loads on first use)" in as_viewer
    assert "Load on every worker" not in as_viewer
    assert 'action="/models/fraud/versions/1/load/"' in as_owner
    assert 'action="/models/fraud/versions/1/unload/"' in as_owner


def test_viewer_cannot_load_from_the_page(version: ModelVersion, viewer: Any, redis_client: redis.Redis) -> None:
    response = signed_in(viewer).post("/models/fraud/versions/1/load/")

    assert response.status_code == 403
    assert commands(redis_client) == []


def test_unknown_page_action_is_404(version: ModelVersion, owner: Any, redis_client: redis.Redis) -> None:
    assert signed_in(owner).post("/models/fraud/versions/1/explode/").status_code == 404
    assert signed_in(owner).get("/models/fraud/versions/1/load/").status_code == 405
    assert commands(redis_client) == []


def test_maintainer_loads_from_the_page(version: ModelVersion, owner: Any, redis_client: redis.Redis) -> None:
    live_worker(redis_client, "w1@host", version, NOT_LOADED)
    browser = signed_in(owner)

    response = browser.post("/models/fraud/versions/1/load/", follow=True)

    assert response.redirect_chain == [("/models/fraud/versions/1/", 302)]
    assert "Asked 1 live worker(s) to load version 1" in response.content.decode()
    assert commands(redis_client) == [{"action": "load", "version": str(version.pk)}]
    assert AuditEntry.objects.filter(action="version.load_requested", actor_name="olga").count() == 1


def test_page_says_when_the_workers_cannot_be_reached(
    version: ModelVersion, owner: Any, unreachable_redis: None
) -> None:
    page = signed_in(owner).get("/models/fraud/versions/1/")
    done = signed_in(owner).post("/models/fraud/versions/1/unload/", follow=True)

    assert page.status_code == 200
    assert "The workers cannot be reached" in page.content.decode()
    assert "Not done: The workers cannot be reached" in done.content.decode()
    assert not AuditEntry.objects.filter(action="version.unload_requested").exists()
