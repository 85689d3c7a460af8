"""Comparing a variant with its baseline: starting the job (audited, enqueued on commit) and
running it in a child process with the validator's limits (variants/compare_child.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import record
from registry import storage
from registry.models import JobStatus, ModelVersion, VersionStatus
from variants.models import Comparison

logger = logging.getLogger(__name__)

DEFAULT_ROWS = 256
MAX_ROWS = 4096


class ComparisonRefused(Exception):
    pass


def start_comparison(
    version: ModelVersion, *, actor: Any, baseline: ModelVersion | None = None, rows: int = DEFAULT_ROWS
) -> Comparison:
    """Compare `version` with `baseline` (its parent when not given); both must be ready models."""
    baseline = baseline or version.parent
    if baseline is None:
        raise ComparisonRefused(
            f"version {version.number} has no parent to compare with; name a baseline version of {version.model.name}"
        )
    if baseline.model_id != version.model_id:
        raise ComparisonRefused("the baseline must be a version of the same model")
    if baseline.pk == version.pk:
        raise ComparisonRefused("a version cannot be compared with itself")
    for which in (version, baseline):
        if which.is_pipeline:
            raise ComparisonRefused(f"version {which.number} is a pipeline; compare its stages' models instead")
        if which.status != VersionStatus.READY or which.signature is None:
            raise ComparisonRefused(f"version {which.number} is {which.status}; only ready versions can be compared")
    if not 1 <= rows <= MAX_ROWS:
        raise ComparisonRefused(f"rows must be from 1 to {MAX_ROWS}, not {rows}")
    with transaction.atomic():
        comparison = Comparison.objects.create(version=version, baseline=baseline, rows=rows, requested_by=actor)
        record(
            actor,
            "version.comparison_requested",
            version,
            after={"baseline": baseline.number, "rows": rows, "comparison": comparison.pk},
        )
        transaction.on_commit(lambda: _enqueue(comparison.pk))
    return comparison


def _enqueue(comparison_id: int) -> None:
    from variants.tasks import compare_versions  # the task module imports this one

    compare_versions.delay(comparison_id)


def run_comparison(comparison_id: int) -> Comparison | None:
    """Claim a queued comparison and run it; safe to run twice (only a queued one is claimed)."""
    claimed = Comparison.objects.filter(pk=comparison_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=timezone.now()
    )
    comparison = Comparison.objects.select_related("version__model", "baseline").filter(pk=comparison_id).first()
    if comparison is None or not claimed:
        return comparison
    version, baseline = comparison.version, comparison.baseline
    conf = settings.TURNOUT
    # Here, not at the top: it imports onnxruntime, which web processes never need.
    from registry.validation import run_json_child

    try:
        with contextlib.ExitStack() as files, tempfile.TemporaryDirectory(prefix="turnout-compare-") as scratch:
            variant_path = files.enter_context(storage.local_copy(version.artifact))
            baseline_path = files.enter_context(storage.local_copy(baseline.artifact))
            signature_path = Path(scratch) / "signature.json"
            signature_path.write_text(json.dumps(baseline.signature))
            payload, reason, log = run_json_child(
                "variants.compare_child",
                [variant_path, baseline_path],
                timeout_s=conf["VALIDATION_TIMEOUT_SECONDS"],
                memory_bytes=conf["VALIDATION_MEMORY_BYTES"],
                tail=[str(version.max_batch_size), str(comparison.rows), str(comparison.seed), str(signature_path)],
                task="the comparison",
                process_name="comparison",
            )
    except OSError as exc:
        logger.exception("comparison %s: cannot read an artifact", comparison.pk)
        return _finish(comparison, JobStatus.FAILED, reason=f"a stored artifact could not be read: {exc}")
    if payload is None or not payload.get("ok"):
        why = reason if payload is None else str(payload.get("reason") or "the comparison failed")
        return _finish(comparison, JobStatus.FAILED, reason=why, log=log)
    result = dict(payload["result"])
    result["size_bytes"] = {"variant": version.size_bytes, "baseline": baseline.size_bytes}
    return _finish(comparison, JobStatus.SUCCEEDED, result=result)


def _finish(
    comparison: Comparison,
    status: str,
    *,
    reason: str = "",
    result: dict[str, Any] | None = None,
    log: list[str] | None = None,
) -> Comparison:
    comparison.status = status
    comparison.reason = "\n".join([reason, *(log or [])]).strip()
    comparison.result = result
    comparison.finished_at = timezone.now()
    comparison.save(update_fields=["status", "reason", "result", "finished_at", "updated_at"])
    return comparison
