"""Running a quantization job: the source version's artifact is converted in a child process
under the validator's limits (registry/quantization.py), then stored as a new version of the
same model through the upload service, which validates it like any upload. Called by the
Celery task (registry/tasks.py)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from audit.services import record
from registry import storage
from registry.models import JobStatus, QuantizationJob, VersionStatus
from registry.validation_jobs import validation_slots

logger = logging.getLogger(__name__)

FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED)


def run_quantization(job_id: int) -> QuantizationJob | None:
    """Convert, then upload the result as a child version. Safe to run twice for the same job
    (a redelivered message): a finished job is left alone, and the same bytes uploaded again
    are the same version."""
    # Here, not at the top: registry.quantization imports onnxruntime, which web processes
    # never need, and registry.services imports the tasks module that imports this one.
    from registry import quantization, services

    job = QuantizationJob.objects.select_related("version__model", "actor").filter(pk=job_id).first()
    if job is None or job.status in FINISHED:
        return job
    claimed = QuantizationJob.objects.filter(pk=job.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
        status=JobStatus.RUNNING,
        started_at=timezone.now(),
        progress=f"converting to {job.get_method_display()} with {quantization.TOOL}",
    )
    if not claimed:
        return job
    source = job.version
    if source.status != VersionStatus.READY or not source.artifact:
        return _fail(job, [], f"version {source.number} is {source.status} now, not ready: nothing was converted")

    conf = settings.TURNOUT
    log: list[str] = []
    try:
        with storage.local_copy(source.artifact) as path, tempfile.TemporaryDirectory(prefix="turnout-q-") as scratch:
            with open(path, "rb") as stored:
                sha256, _ = storage.hash_stream(stored)
            if sha256 != source.sha256:
                return _fail(
                    job,
                    [],
                    f"the stored artifact of version {source.number} no longer matches its sha256 (the file in "
                    "storage was changed or damaged): restore it from a backup or upload the model again",
                )
            target = str(Path(scratch) / "converted.onnx")
            with validation_slots():  # the validator's memory budget, shared with validations
                outcome = quantization.run_in_child(
                    path,
                    target,
                    job.method,
                    timeout_s=conf["VALIDATION_TIMEOUT_SECONDS"],
                    memory_bytes=conf["VALIDATION_MEMORY_BYTES"],
                )
            log = outcome.log
            if not outcome.ok:
                return _fail(job, log, outcome.reason)
            QuantizationJob.objects.filter(pk=job.pk).update(progress="storing the result as a new version")
            with open(target, "rb") as converted:
                upload = services.upload_version(
                    source.model,
                    converted,
                    actor=job.actor,
                    parent_number=source.number,
                    description=f"{job.get_method_display()} quantization of version {source.number}.",
                    metadata={
                        "quantization": {
                            "method": job.method,
                            "source_version": source.number,
                            "tool": quantization.TOOL,
                        }
                    },
                    tags=list(source.tags),
                    **{field: getattr(source, field) for field in services.SERVING_FIELDS},
                )
    except OSError as exc:
        logger.exception("quantization job %s: cannot read or write an artifact", job.pk)
        return _fail(job, [], f"the stored artifact could not be read, or the result written: {exc}")
    except services.RegistryError as exc:
        return _fail(job, log, f"the converted model was refused: {exc}")

    result = upload.version
    if upload.created:
        done = f"created version {result.number}; its validation follows"
    else:
        done = f"the converted bytes are already version {result.number}: nothing new was stored"
    QuantizationJob.objects.filter(pk=job.pk).update(
        status=JobStatus.SUCCEEDED,
        result=result,
        progress=done,
        log="\n".join([*log, done]),
        finished_at=timezone.now(),
    )
    job.refresh_from_db()
    record(job.actor, "version.quantized", source, after={"method": job.method, "result": result.number})
    logger.info("quantization job %s: %s", job.pk, done)
    return job


def _fail(job: QuantizationJob, log: list[str], reason: str) -> QuantizationJob:
    QuantizationJob.objects.filter(pk=job.pk).update(
        status=JobStatus.FAILED,
        progress="failed",
        reason=reason,
        log="\n".join([*log, f"failed: {reason}"]),
        finished_at=timezone.now(),
    )
    job.refresh_from_db()
    logger.info("quantization job %s failed: %s", job.pk, reason)
    return job
