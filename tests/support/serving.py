"""Serving models in tests: registering them the way users do (per test, or committed once for
a whole module), and starting worker processes that serve them. tests/integration and
tests/rollouts use them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from registry import services
from registry.models import ModelKind, RegisteredModel
from registry.pipeline_services import StageSpec, create_pipeline_version
from tests.conftest import test_queue
from tests.factories import ModelVersionFactory, RegisteredModelFactory, UserFactory
from tests.support.processes import WorkerProcess, wait_for

# Workers started here serve only these models; `unserved-...` models have none.
SERVED_PATTERN = "inf-*"


def worker_queue() -> str:
    # Not the run's test queue: the validation messages that uploads enqueue stay
    # unconsumed, so `run_validation` in the test is the only validator and a
    # version uploaded without it stays pending.
    return f"{test_queue()}-inference"


def require_test_database() -> None:
    """Refuse to write, flush or start workers anywhere but the test database.

    pytest-django only sets up the test database when some collected test is
    marked `django_db`; without one, connections would reach the development
    database.
    """
    expected = settings.DATABASES["default"]["TEST"]["NAME"]
    if connection.settings_dict["NAME"] != expected or settings.DATABASES["default"]["NAME"] != expected:
        raise RuntimeError(
            f"not connected to the test database {expected!r} but to {connection.settings_dict['NAME']!r}: "
            "mark the tests that use these fixtures with pytest.mark.django_db"
        )


@contextlib.contextmanager
def committed_registry(django_db_blocker: Any, artifact_dir: Path) -> Iterator[Registry]:
    """A registry for a whole module, for tests that only read it (plain `django_db` mark).

    The rows are committed (the workers and the gateway's catalog thread read
    them through their own connections) and stay for the module; afterwards
    every table is flushed, as a transactional test does when it ends.
    """
    require_test_database()
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(artifact_dir)}}
    with django_db_blocker.unblock(), override_settings(STORAGES={**settings.STORAGES, "artifacts": backend}):
        # The `owner` persona of tests/conftest.py, committed for the module.
        user = UserFactory(username="olga", maintainer=True)
        try:
            yield Registry(user)
        finally:
            require_test_database()
            call_command("flush", interactive=False, verbosity=0)


@dataclass
class Workers:
    processes: list[WorkerProcess] = field(default_factory=list)

    def log(self) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.log()[-6000:]}" for w in self.processes)

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.processes if w.process.poll() is None]

    def stop(self) -> None:
        for worker in self.processes:
            worker.stop()


def start_workers(names: list[str], log_dir: Path, artifact_dir: Path, **env: str) -> Workers:
    """Real `celery -A controlplane worker` processes serving `inf-*`, started once ready."""
    require_test_database()
    workers = Workers()
    for name in names:
        workers.processes.append(
            WorkerProcess(
                name,
                log_dir / f"{name}.log",
                queues=worker_queue(),
                ARTIFACT_ROOT=str(artifact_dir),
                TURNOUT_WORKER_MODELS=SERVED_PATTERN,
                **env,
            )
        )
    if not wait_for(lambda: all(" ready." in w.log() for w in workers.processes), timeout=60):
        workers.stop()
        raise AssertionError(f"the workers did not start:\n{workers.log()}")
    return workers


@dataclass
class Registry:
    """Registers models the way users do: upload, validate, point `production` at the version."""

    owner: Any

    def add(
        self, name: str, onnx_bytes: bytes, *, validate: bool = True, production: bool = True, **fields: Any
    ) -> Any:
        require_test_database()
        model = RegisteredModel.objects.filter(name=name).first() or RegisteredModelFactory(name=name, actor=self.owner)
        return ModelVersionFactory(
            model=model, actor=self.owner, onnx_bytes=onnx_bytes, validate=validate, production=production, **fields
        )

    def add_pipeline(
        self,
        name: str,
        stages: list[StageSpec],
        *,
        outputs: dict[str, str] | None = None,
        production: bool = True,
        **fields: Any,
    ) -> Any:
        """A pipeline version of ready stage versions, validated as a whole; `production` points the alias at it."""
        require_test_database()
        pipeline = RegisteredModel.objects.filter(name=name).first() or services.create_model(
            name=name, actor=self.owner, kind=ModelKind.PIPELINE
        )
        version = create_pipeline_version(pipeline, stages, actor=self.owner, outputs=outputs, **fields).version
        services.run_validation(version.validation_jobs.get().pk)
        version.refresh_from_db()
        assert version.status == "ready", version.status_reason
        if production:
            services.set_alias(pipeline, services.PRODUCTION, version, actor=self.owner)
        return version
