"""Comparing a variant with its baseline: starting the job (audited, enqueued on commit) and
running it in a child process with the validator's limits (variants/compare_child.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from django.db import transaction

from audit.services import record
from registry import storage
from registry.models import ModelVersion, VersionStatus
from variants import jobs
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
    comparison, claimed = jobs.claim(Comparison, comparison_id, "version__model", "baseline")
    if comparison is None or not claimed:
        return comparison
    version, baseline = comparison.version, comparison.baseline
    try:
        with contextlib.ExitStack() as files, tempfile.TemporaryDirectory(prefix="turnout-compare-") as scratch:
            variant_path = files.enter_context(storage.local_copy(version.artifact))
            baseline_path = files.enter_context(storage.local_copy(baseline.artifact))
            signature_path = Path(scratch) / "signature.json"
            signature_path.write_text(json.dumps(baseline.signature))
            tail = [str(version.max_batch_size), str(comparison.rows), str(comparison.seed), str(signature_path)]
            found = jobs.run_child(
                "variants.compare_child", [variant_path, baseline_path], tail, "the comparison", "comparison"
            )
    except OSError as exc:
        logger.exception("comparison %s: cannot read an artifact", comparison.pk)
        found = (None, f"a stored artifact could not be read: {exc}", [])
    payload = found[0]
    if payload is not None and payload.get("ok"):
        payload["result"]["size_bytes"] = {"variant": version.size_bytes, "baseline": baseline.size_bytes}
    return jobs.conclude(comparison, *found, failed="the comparison failed")
