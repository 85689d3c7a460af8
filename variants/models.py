"""What a version costs and how to serve it cheaper: a comparison of a variant with its baseline
(its parent, by default) on the same generated inputs, before it takes traffic
(variants/comparison.py), and a capacity report per version (variants/capacity.py)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from registry.models import JobStatus, ModelVersion


class VersionJob(models.Model):
    """What a comparison and a capacity report share: a job row first (queued, running, succeeded,
    failed), claimed by a conditional update, then its result or why it has none (variants/jobs.py)."""

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    seed = models.PositiveIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="Why it failed, in words a user can act on.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    @property
    def in_progress(self) -> bool:
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)


class Comparison(VersionJob):
    """One run of the comparison; its result is variants/comparison.py `compare`'s, plus both
    artifacts' sizes."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="comparisons")
    baseline = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    rows = models.PositiveIntegerField(default=256, help_text="Generated input rows both versions answer.")

    class Meta(VersionJob.Meta):
        indexes = [
            # The version page and the API list a version's comparisons, newest first.
            models.Index(fields=["version", "-created_at"], name="variants_cmp_version_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.version} against v{self.baseline.number}: {self.status}"


class CapacityReport(VersionJob):
    """How much load a version takes on one worker within a p99 target, and the serving settings that
    take the most (variants/capacity.py); applying the recommendation is one audited action."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="capacity_reports")
    p99_target_ms = models.FloatField(help_text="The p99 latency (worker side: queue and compute) to stay within.")
    applied_at = models.DateTimeField(null=True, blank=True)
    applied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta(VersionJob.Meta):
        indexes = [
            # The version page and the API list a version's reports, newest first.
            models.Index(fields=["version", "-created_at"], name="variants_capacity_version_idx"),
        ]

    def __str__(self) -> str:
        return f"capacity of {self.version} within p99 {self.p99_target_ms:g} ms: {self.status}"

    @property
    def recommendation(self) -> dict[str, Any] | None:
        return (self.result or {}).get("recommendation")
