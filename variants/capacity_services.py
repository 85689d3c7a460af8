"""Capacity reports: starting one (audited, enqueued on commit), running it in a child process
with the validator's limits on one core (variants/capacity_child.py), and applying its
recommendation to the version's serving settings in one audited action."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.services import record
from registry import services as registry
from registry import storage
from registry.models import JobStatus, ModelVersion, VersionStatus
from variants import jobs
from variants.models import CapacityReport

logger = logging.getLogger(__name__)

MIN_TARGET_MS, MAX_TARGET_MS = 1.0, 600_000.0


class CapacityRefused(Exception):
    pass


def start_capacity_report(version: ModelVersion, *, p99_target_ms: float, actor: Any) -> CapacityReport:
    if version.is_pipeline:
        raise CapacityRefused(f"version {version.number} is a pipeline; report on its stages' models instead")
    if version.status != VersionStatus.READY or version.signature is None:
        raise CapacityRefused(f"version {version.number} is {version.status}; only a ready version can be measured")
    if not MIN_TARGET_MS <= p99_target_ms <= MAX_TARGET_MS:
        raise CapacityRefused(
            f"p99_target_ms must be from {MIN_TARGET_MS:g} to {MAX_TARGET_MS:g}, not {p99_target_ms:g}"
        )
    with transaction.atomic():
        report = CapacityReport.objects.create(version=version, p99_target_ms=p99_target_ms, requested_by=actor)
        record(
            actor, "version.capacity_requested", version, after={"p99_target_ms": p99_target_ms, "report": report.pk}
        )
        transaction.on_commit(lambda: _enqueue(report.pk))
    return report


def _enqueue(report_id: int) -> None:
    from variants.tasks import measure_capacity  # the task module imports this one

    measure_capacity.delay(report_id)


def run_capacity_report(report_id: int) -> CapacityReport | None:
    """Claim a queued report and run it; safe to run twice (only a queued one is claimed)."""
    report, claimed = jobs.claim(CapacityReport, report_id, "version__model")
    if report is None or not claimed:
        return report
    version = report.version
    try:
        with (
            storage.local_copy(version.artifact) as path,
            tempfile.TemporaryDirectory(prefix="turnout-cap-") as scratch,
        ):
            signature_path = Path(scratch) / "signature.json"
            signature_path.write_text(json.dumps(version.signature))
            tail = [str(version.max_batch_size), str(report.p99_target_ms), str(report.seed), str(signature_path)]
            found = jobs.run_child("variants.capacity_child", [path], tail, "the capacity run", "capacity")
    except OSError as exc:
        logger.exception("capacity report %s: cannot read the artifact", report.pk)
        found = (None, f"the stored artifact could not be read: {exc}", [])
    return jobs.conclude(report, *found, failed="the capacity run failed")


def apply_recommendation(report: CapacityReport, *, actor: Any) -> ModelVersion:
    """The report's recommended max_batch_size, max_queue_delay_ms and preferred sizes on its version."""
    recommended = report.recommendation
    if report.status != JobStatus.SUCCEEDED or not recommended:
        raise CapacityRefused("this report has no recommendation to apply")
    changes = {
        "max_batch_size": recommended["max_batch_size"],
        "max_queue_delay_ms": recommended["max_queue_delay_ms"],
        "preferred_batch_sizes": recommended["preferred_batch_sizes"],
    }
    with transaction.atomic():
        # update_version audits the change ("version.updated") and tells the workers.
        version = registry.update_version(report.version, actor=actor, **changes)
        CapacityReport.objects.filter(pk=report.pk).update(applied_at=timezone.now(), applied_by=actor)
        record(actor, "version.capacity_applied", version, after={"report": report.pk, **changes})
    return version
