"""Running a validation job: a version is checked in a child process with memory and
time limits (registry/validation.py), then moved to ready or failed. Called by the
Celery task (registry/tasks.py) and, for the quick start, in-process (services.validate_now)."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import record
from registry import storage
from registry.events import catalog_changed
from registry.models import JobStatus, ModelVersion, ValidationJob, VersionStatus

logger = logging.getLogger(__name__)


_slots: threading.BoundedSemaphore | None = None
_slots_lock = threading.Lock()


def validation_slots() -> threading.BoundedSemaphore:
    """At most TURNOUT_VALIDATION_CONCURRENCY children per process (validations and
    quantizations together): each may use TURNOUT_VALIDATION_MEMORY_BYTES, and the worker's
    thread pool would otherwise start as many as it has threads."""
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(int(settings.TURNOUT["VALIDATION_CONCURRENCY"]))
        return _slots


def run_validation(job_id: int) -> ValidationJob | None:
    """Validate a version in a child process with memory and time limits, one slot of
    TURNOUT_VALIDATION_CONCURRENCY at a time; see `_run` for what a run does."""
    with validation_slots():
        return _run(job_id)


def _run(job_id: int) -> ValidationJob | None:
    """Validate a version in a child process with memory and time limits.

    Safe to run twice for the same job (a redelivered message): only a job
    still queued or running is picked up, and only a version still pending or
    validating is moved to ready or failed.
    """
    # Here, not at the top: registry.validation imports onnxruntime, which web and beat
    # processes (that import this module through the registry services) never need.
    from registry.validation import run_in_child

    job = ValidationJob.objects.select_related("version__model").filter(pk=job_id).first()
    if job is None or job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        return job
    version = job.version
    claimed = ModelVersion.objects.filter(
        pk=version.pk, status__in=[VersionStatus.PENDING, VersionStatus.VALIDATING]
    ).update(status=VersionStatus.VALIDATING, updated_at=timezone.now())
    if not claimed:
        _finish_job(job, JobStatus.FAILED, f"version is {version.status}; nothing to validate")
        return job
    ValidationJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, started_at=timezone.now())

    conf = settings.TURNOUT
    if version.is_pipeline:
        return _run_pipeline(job, version)
    try:
        with storage.local_copy(version.artifact) as path:
            outcome = run_in_child(
                path,
                max_bytes=conf["MAX_ARTIFACT_BYTES"],
                timeout_s=conf["VALIDATION_TIMEOUT_SECONDS"],
                memory_bytes=conf["VALIDATION_MEMORY_BYTES"],
                max_batch_size=version.max_batch_size,
                run_memory_bytes=conf["WORKER_RUN_MEMORY_BYTES"],
            )
    except OSError as exc:
        # The artifact could not be read: a storage fault, not a bad model.
        logger.exception("validation of %s: cannot read artifact", version)
        _fail_version(version, job, f"the stored artifact could not be read: {exc}", [])
        return job

    _conclude(job, version, outcome)
    return job


def _run_pipeline(job: ValidationJob, version: ModelVersion) -> ValidationJob:
    """The chain as a whole, in a child: each stage is a ready version already."""
    # Here, not at the top: it imports onnxruntime (see `_run`).
    from registry.pipeline_validation import run_pipeline_in_child

    conf = settings.TURNOUT
    stages = list(version.stages.select_related("version__model").order_by("position"))
    unready = [s for s in stages if s.version.status != VersionStatus.READY]
    if unready:
        stage = unready[0]
        reason = f"stage '{stage.name}' runs {stage.version}, which is {stage.version.status}, not ready"
        _fail_version(version, job, reason, [])
        return job
    try:
        with contextlib.ExitStack() as files, tempfile.TemporaryDirectory(prefix="turnout-pipeline-") as scratch:
            spec: dict[str, Any] = {
                "stages": [
                    {
                        "name": stage.name,
                        "label": str(stage.version),
                        "path": files.enter_context(storage.local_copy(stage.version.artifact)),
                        "signature": stage.version.signature,
                        "inputs": stage.inputs,
                        "timeout_ms": stage.timeout_ms,
                    }
                    for stage in stages
                ],
                "outputs": dict(version.pipeline_outputs or []),
                "max_batch_size": version.max_batch_size,
            }
            outcome = run_pipeline_in_child(
                spec,
                str(Path(scratch) / "pipeline.json"),
                timeout_s=conf["VALIDATION_TIMEOUT_SECONDS"],
                memory_bytes=conf["VALIDATION_MEMORY_BYTES"],
                run_memory_bytes=conf["WORKER_RUN_MEMORY_BYTES"],
            )
    except OSError as exc:
        logger.exception("validation of %s: cannot read a stage's artifact", version)
        _fail_version(version, job, f"a stage's stored artifact could not be read: {exc}", [])
        return job
    _conclude(job, version, outcome)
    return job


def _conclude(job: ValidationJob, version: ModelVersion, outcome: Any) -> None:
    if outcome.ok:
        with transaction.atomic():
            done = ModelVersion.objects.filter(pk=version.pk, status=VersionStatus.VALIDATING).update(
                status=VersionStatus.READY,
                status_reason="",
                signature=outcome.signature,
                opset=outcome.opset,
                ir_version=outcome.ir_version,
                producer=outcome.producer[:200],
                max_batch_size=version.max_batch_size if outcome.signature and outcome.signature["batch_dim"] else 1,
                updated_at=timezone.now(),
            )
            version.refresh_from_db()
            if done:
                record(None, "version.validated", version, after={"status": version.status})
                catalog_changed(version.model.name)
            _finish_job(job, JobStatus.SUCCEEDED, "\n".join(outcome.log))
        logger.info("validation of %s: ready", version)
    else:
        _fail_version(version, job, outcome.reason, outcome.log)


def _fail_version(version: ModelVersion, job: ValidationJob, reason: str, log: list[str]) -> None:
    artifact = version.artifact
    with transaction.atomic():
        done = ModelVersion.objects.filter(pk=version.pk, status=VersionStatus.VALIDATING).update(
            status=VersionStatus.FAILED, status_reason=reason, artifact="", updated_at=timezone.now()
        )
        version.refresh_from_db()
        if done:
            record(None, "version.failed", version, after={"status": version.status, "reason": reason})
            catalog_changed(version.model.name)
        _finish_job(job, JobStatus.FAILED, "\n".join([*log, f"failed: {reason}"]))
    # A refused file must not linger, unless another version still uses the same bytes.
    if done and artifact and not ModelVersion.objects.filter(artifact=artifact).exists():
        storage.artifact_storage().delete(artifact)
    logger.info("validation of %s: failed: %s", version, reason)


def _finish_job(job: ValidationJob, status: str, log: str) -> None:
    ValidationJob.objects.filter(pk=job.pk).update(status=status, log=log, finished_at=timezone.now())
    job.refresh_from_db()
