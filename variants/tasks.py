from __future__ import annotations

from celery import shared_task
from django.conf import settings

from variants.capacity_services import run_capacity_report
from variants.services import run_comparison


@shared_task(
    name="variants.compare_versions",
    acks_late=True,
    # The child process has its own limits; these only catch a stuck parent.
    soft_time_limit=settings.TURNOUT["VALIDATION_TIMEOUT_SECONDS"] + 60,
    time_limit=settings.TURNOUT["VALIDATION_TIMEOUT_SECONDS"] + 120,
)
def compare_versions(comparison_id: int) -> None:
    run_comparison(comparison_id)


@shared_task(
    name="variants.measure_capacity",
    acks_late=True,
    soft_time_limit=settings.TURNOUT["VALIDATION_TIMEOUT_SECONDS"] + 60,
    time_limit=settings.TURNOUT["VALIDATION_TIMEOUT_SECONDS"] + 120,
)
def measure_capacity(report_id: int) -> None:
    run_capacity_report(report_id)
