"""Fixtures for the metrics tests: real web and worker processes sharing one
fresh Prometheus multiprocess directory, and ready models in the registry.

Persona: `owner` is a maintainer who registers the models (as in tests/inference).

The processes are started once per module (each costs seconds) and serve only
models whose name starts with `met-`. Tests that use them are transactional:
the processes read the registry through their own connections.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import test_queue
from tests.support.processes import WebProcess, WorkerProcess, wait_for

SERVED_PATTERN = "met-*"
METRICS_TOKEN = "metrics-test-token-0123456789"
NOT_LOADED = "not loaded (loads on first use)"


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Artifacts of this module, shared with its processes (ARTIFACT_ROOT)."""
    return tmp_path_factory.mktemp("artifacts")


@dataclass
class Registry:
    """Registers models the way users do: upload, validate, point `production` at the version."""

    owner: Any

    def add(self, name: str, onnx_bytes: bytes, **fields: Any) -> Any:
        from registry import services
        from registry.models import RegisteredModel, VersionStatus

        model = RegisteredModel.objects.filter(name=name).first() or services.create_model(name=name, actor=self.owner)
        version = services.upload_version(model, io.BytesIO(onnx_bytes), actor=self.owner, **fields).version
        services.run_validation(version.validation_jobs.get().pk)
        version.refresh_from_db()
        assert version.status == VersionStatus.READY, version.status_reason
        services.set_alias(model, services.PRODUCTION, version, actor=self.owner)
        return version


@pytest.fixture
def registry(owner: Any, settings: Any, artifact_dir: Path) -> Registry:
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(artifact_dir)}}
    settings.STORAGES = {**settings.STORAGES, "artifacts": backend}
    return Registry(owner)


@dataclass
class Stack:
    """Two web processes and two workers writing to one multiprocess directory."""

    multiproc_dir: Path
    webs: list[WebProcess] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)

    def log(self) -> str:
        processes: list[Any] = [*self.webs, *self.workers]
        return "\n".join(f"--- {p.log_path.name}\n{p.log()[-6000:]}" for p in processes)

    def scrape(self, web: WebProcess) -> str:
        status, body, headers = web.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert status == 200, body
        assert headers["content-type"].startswith("text/plain"), headers
        return body.decode()

    def wait_loaded(self, model: str, version: int, timeout: float = 60) -> None:
        """Until every web process answers ready and both workers have loaded the version."""
        path = f"/v2/models/{model}/versions/{version}/ready"

        def loaded(web: WebProcess) -> bool:
            status, body, _ = web.request("GET", path)
            if status != 200:
                return False
            providers = json.loads(body)["execution_providers"]
            return len(providers) == len(self.workers) and NOT_LOADED not in providers.values()

        for web in self.webs:
            assert wait_for(functools.partial(loaded, web), timeout), f"{model} v{version} not loaded\n{self.log()}"

    def stop(self) -> None:
        for web in self.webs:
            web.stop()
        for worker in self.workers:
            worker.stop()


@pytest.fixture(scope="module")
def stack(django_db_setup: Any, artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("logs")
    stack = Stack(tmp_path_factory.mktemp("prometheus-multiproc"))
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(stack.multiproc_dir),
        "TURNOUT_REQUIRE_API_KEY": "false",
        "TURNOUT_METRICS_TOKEN": METRICS_TOKEN,
        "TURNOUT_METRICS_ENABLED": "true",
        "TURNOUT_ACCESS_LOG": "true",
        "ARTIFACT_ROOT": str(artifact_dir),
    }
    try:
        for index in range(2):
            stack.workers.append(
                WorkerProcess(
                    f"met{index}",
                    logs / f"worker{index}.log",
                    # Not the run's test queue: the validation messages that uploads
                    # enqueue stay unconsumed; the test validates in-process.
                    queues=f"{test_queue()}-metrics",
                    TURNOUT_WORKER_MODELS=SERVED_PATTERN,
                    **env,
                )
            )
        stack.webs = [WebProcess(logs / f"web{index}.log", **env) for index in range(2)]
        started = wait_for(lambda: all(" ready." in w.log() for w in stack.workers), timeout=60)
        assert started, f"the workers did not start\n{stack.log()}"
        for web in stack.webs:
            assert web.wait_ready(), f"a web process did not start\n{stack.log()}"
    except BaseException:
        stack.stop()
        raise
    yield stack
    stack.stop()


@pytest.fixture
def serve(registry: Registry, stack: Stack) -> Callable[..., Any]:
    """Register a model as ready in production and wait until both workers have loaded it."""

    def add(name: str, onnx_bytes: bytes, **fields: Any) -> Any:
        version = registry.add(name, onnx_bytes, **fields)
        stack.wait_loaded(name, version.number)
        return version

    return add
