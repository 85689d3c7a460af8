"""Running a comparison or a capacity report (variants/models.py `VersionJob`): claim the queued
row by a conditional update (a redelivered message finds nothing to do), run its child process
under the validator's limits, and store the result or why there is none."""

from __future__ import annotations

from typing import Any, TypeVar

from django.conf import settings
from django.utils import timezone

from registry.models import JobStatus
from variants.models import VersionJob

Job = TypeVar("Job", bound=VersionJob)


def claim(model: type[Job], job_id: int, *related: str) -> tuple[Job | None, bool]:
    """The job, and whether this call took it from queued to running."""
    claimed = model.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(  # type: ignore[attr-defined]
        status=JobStatus.RUNNING, started_at=timezone.now()
    )
    job = model.objects.select_related(*related).filter(pk=job_id).first()  # type: ignore[attr-defined]
    return job, bool(claimed)


def run_child(
    module: str, head: list[str], tail: list[str], task: str, process_name: str
) -> tuple[dict[str, Any] | None, str, list[str]]:
    # Here, not at the top: it imports onnxruntime, which web processes never need.
    from registry.validation import run_json_child

    conf = settings.TURNOUT
    return run_json_child(
        module,
        head,
        timeout_s=conf["VALIDATION_TIMEOUT_SECONDS"],
        memory_bytes=conf["VALIDATION_MEMORY_BYTES"],
        tail=tail,
        task=task,
        process_name=process_name,
    )


def conclude(job: Job, payload: dict[str, Any] | None, reason: str, log: list[str], failed: str) -> Job:
    """Store the child's result, or why there is none (`failed` when the child's answer gives no reason)."""
    job.finished_at = timezone.now()
    if payload is None or not payload.get("ok"):
        job.status = JobStatus.FAILED
        why = reason if payload is None else str(payload.get("reason") or failed)
        job.reason = "\n".join([why, *log]).strip()
    else:
        job.status, job.result = JobStatus.SUCCEEDED, payload["result"]
    job.save(update_fields=["status", "reason", "result", "finished_at", "updated_at"])
    return job
