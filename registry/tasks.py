from __future__ import annotations

from celery import shared_task
from django.conf import settings

from registry.validation_jobs import run_validation


@shared_task(
    name="registry.validate_version",
    acks_late=True,
    # The child process has its own limits; these only catch a stuck parent.
    soft_time_limit=settings.TURNOUT["VALIDATION_TIMEOUT_SECONDS"] + 60,
    time_limit=settings.TURNOUT["VALIDATION_TIMEOUT_SECONDS"] + 120,
)
def validate_version(job_id: int) -> None:
    run_validation(job_id)


@shared_task(
    name="registry.quantize_version",
    acks_late=True,
    # The conversion runs in a child under the validator's limits; these only catch a stuck parent.
    soft_time_limit=settings.TURNOUT["VALIDATION_TIMEOUT_SECONDS"] + 60,
    time_limit=settings.TURNOUT["VALIDATION_TIMEOUT_SECONDS"] + 120,
)
def quantize_version(job_id: int) -> None:
    # Here, not at the top: registry.quantization_jobs calls registry.services, which imports this module.
    from registry.quantization_jobs import run_quantization

    run_quantization(job_id)
