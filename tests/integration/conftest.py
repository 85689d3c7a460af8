"""Fixtures for the tests that start real processes: Celery workers serving ready
models from the registry, uvicorn web processes; traffic mostly goes through an
in-process V2 gateway (`gateway`, from tests/conftest.py).

The processes read the registry through their own connections, so they only see
committed rows: tests here are transactional (`django_db(transaction=True)`), except
the modules whose module fixture commits its rows once and flushes them at the end
(`tests.support.serving.committed_registry`, as test_malformed.py does).

`worker` is one worker process per module (one costs seconds to start) serving only
models whose name starts with `inf-`; a test that needs a model nobody drains names it
`unserved-...`. A worker follows registry changes through Redis pub/sub, so each test's
new versions are picked up without a restart, and the rows a finished test's flush
removed are dropped. Modules with other processes start them in a fixture of their own.

`registry` registers models the way users do, as the `owner` persona (olga).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from tests.support.serving import Registry, Workers, start_workers
from tests.support.v2 import Gateway


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here starts real processes: `-m "not integration"` leaves them all out."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


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


AccessLog = Callable[[], list[logging.LogRecord]]


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> Iterator[AccessLog]:
    """The records of `turnout.access` so far; that logger does not propagate to the root logger caplog watches."""
    logger = logging.getLogger("turnout.access")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="turnout.access"):
            yield lambda: [record for record in caplog.records if record.name == "turnout.access"]
    finally:
        logger.removeHandler(caplog.handler)


def as_json_line(record: logging.LogRecord) -> dict[str, Any]:
    """The record as the configured access handler writes it: one JSON object on one line."""
    [handler] = logging.getLogger("turnout.access").handlers[:1]
    assert handler.formatter is not None
    line = handler.formatter.format(record)
    assert "\n" not in line
    return dict(json.loads(line))
