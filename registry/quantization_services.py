"""Quantizing a ready version in one action: a job row now, the conversion in the background
(registry/quantization_jobs.py), the result a new version of the same model with the source as
its parent. The REST API and the version page both call `start_quantization`."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from audit.services import record
from registry.models import JobStatus, ModelVersion, QuantizationJob, QuantizationMethod, VersionStatus
from registry.services import RegistryError
from registry.tasks import quantize_version


def start_quantization(version: ModelVersion, method: str, *, actor: Any) -> QuantizationJob:
    """Queue the conversion of `version` by `method`; refused (RegistryError) for a version that
    is not ready, a pipeline, an unknown method, or one already quantized (or being) that way."""
    if method not in QuantizationMethod.values:
        raise RegistryError(
            f"unknown quantization method '{method}': use one of {', '.join(QuantizationMethod.values)}"
        )
    if version.is_pipeline:
        raise RegistryError(
            f"version {version.number} is a pipeline: quantize the versions its stages run, then make a "
            "pipeline version of those"
        )
    if version.status != VersionStatus.READY:
        raise RegistryError(f"version {version.number} is {version.status}: only a ready version can be quantized")
    earlier = _standing_job(version, method)
    if earlier is not None:
        raise RegistryError(_already(earlier))
    try:
        with transaction.atomic():
            job = QuantizationJob.objects.create(version=version, method=method, actor=_user(actor))
            record(actor, "version.quantization_started", version, after={"method": method, "job": job.pk})
            transaction.on_commit(lambda: quantize_version.delay(job.pk))
    except IntegrityError:
        # A concurrent request created the same job between the check and the insert.
        earlier = _standing_job(version, method)
        raise RegistryError(_already(earlier) if earlier else "try again: another request changed this") from None
    return job


def jobs_of(version: ModelVersion) -> QuerySet[QuantizationJob]:
    """The version's quantization jobs, newest first, with their results."""
    return version.quantization_jobs.select_related("result", "actor").order_by("-created_at", "-id")


def _standing_job(version: ModelVersion, method: str) -> QuantizationJob | None:
    standing = [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED]
    return jobs_of(version).filter(method=method, status__in=standing).first()


def _already(job: QuantizationJob) -> str:
    label = QuantizationMethod(job.method).label
    if job.status == JobStatus.SUCCEEDED and job.result is not None:
        return (
            f"version {job.version.number} is already quantized to {label}: the result is version {job.result.number}"
        )
    if job.status == JobStatus.SUCCEEDED:
        return f"version {job.version.number} was already quantized to {label}; its result has since been deleted"
    return f"version {job.version.number} is being quantized to {label} already (job {job.pk}, {job.status})"


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) else None
