"""A worker on a host of its own serves its metrics on TURNOUT_WORKER_METRICS_PORT."""

from __future__ import annotations

import io
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from registry import services
from registry.demo_models import build_mlp
from tests.support.processes import WorkerProcess, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_worker_serves_its_own_metrics_directory(
    admin: Any, tmp_path: Path, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    artifacts = tmp_path / "artifacts"
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(artifacts)}}
    settings.STORAGES = {**settings.STORAGES, "artifacts": backend}
    model = services.create_model(name="scraped", actor=admin)
    with django_capture_on_commit_callbacks(execute=False):
        version = services.upload_version(model, io.BytesIO(build_mlp(4, [8], 2)), actor=admin).version
    services.run_validation(version.validation_jobs.get().pk)
    port = free_port()
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    worker = WorkerProcess(
        "metrics",
        tmp_path / "worker.log",
        TURNOUT_WORKER_METRICS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        ARTIFACT_ROOT=str(artifacts),
    )
    families: dict[str, Any] = {}

    def loaded() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                families.update({f.name: f for f in text_string_to_metric_families(response.read().decode())})
        except OSError:
            return False
        # The loaded gauge is set as the session loads, the load time just after its warm-up.
        return {"turnout_model_loaded", "turnout_model_load_seconds"} <= families.keys()

    try:
        # The version is warmed up at start: its load time and loaded gauge appear on the worker's port.
        assert wait_for(loaded, timeout=90), worker.log()
    finally:
        worker.stop()
    samples = {(s.name, s.labels.get("model"), s.value) for s in families["turnout_model_loaded"].samples}
    assert ("turnout_model_loaded", "scraped", 1.0) in samples
    assert "turnout_model_load_seconds" in families
