"""Fixtures for the inference acceptance tests: ready models in the registry,
real worker processes that serve them, and an in-process V2 gateway.

Persona: `owner` is a maintainer who registers the models (as in tests/registry).

The worker processes read the registry through their own connections, so they
only see committed rows: tests here are transactional (`django_db(transaction=True)`),
except test_malformed.py, whose module fixture commits its rows once (see
`serving.committed_registry`). Worker processes are started once per module (one costs
seconds to start) and serve only models whose name starts with `inf-`; a test
that needs a model nobody drains names it `unserved-...`. A worker follows
registry changes through Redis pub/sub, so each test's new versions are picked
up without a restart, and the rows a finished test's flush removed are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from tests.support.asgi import AsgiClient
from tests.support.serving import Registry, Workers, start_workers
from tests.support.v2 import Gateway


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Artifacts of this module, shared with its worker processes (ARTIFACT_ROOT)."""
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture
def artifacts(settings: Any, artifact_dir: Path) -> Path:
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(artifact_dir)}}
    settings.STORAGES = {**settings.STORAGES, "artifacts": backend}
    return artifact_dir


@pytest.fixture
def registry(owner: Any, artifacts: Path) -> Registry:
    return Registry(owner)


@pytest.fixture(scope="module")
def worker(django_db_setup: Any, artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    """One worker process for the whole module."""
    workers = start_workers(["inf1"], tmp_path_factory.mktemp("logs"), artifact_dir)
    yield workers
    workers.stop()


@pytest.fixture
def gateway(gateway_client: AsgiClient) -> Gateway:
    """A fresh in-process gateway (API keys not required; tests/accounts covers them)."""
    return Gateway(gateway_client, gateway_client.gateway)  # type: ignore[attr-defined]


@pytest.fixture
def redis_conn() -> Iterator[redis.Redis]:
    """The real Redis, without the prefix clean-up of `redis_client`: the module's
    workers keep their heartbeats and serving records there."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def serve(registry: Registry, worker: Workers, gateway: Gateway) -> Callable[..., Any]:
    """Register a model as ready in production and wait until the worker has loaded it."""

    def add(name: str, onnx_bytes: bytes, **fields: Any) -> Any:
        version = registry.add(name, onnx_bytes, **fields)
        gateway.wait_loaded(name, version.number, worker)
        return version

    return add
