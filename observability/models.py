"""Latency histograms and counters per (model, version, arm) and minute or hour.

The gateway keeps the current minutes in Redis (recorder.py); beat moves each
finished minute into a `MinuteStats` row and merges complete hours into
`HourStats` (rollup.py). The dashboard merges rows for any window (queries.py).
Histograms are sketch.py's: {bucket index (as a string, JSON keys are): count}; a
pipeline's per-stage histograms are in `stages` (observability/stages.py).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class StatsBucket(models.Model):
    """The figures of one series over one bucket of time; what a minute and an hour share."""

    model = models.CharField(max_length=64, help_text="Model name, as requests name it.")
    version = models.CharField(max_length=16, help_text="Version number, as a string.")
    arm = models.CharField(max_length=32, help_text="Which arm answered: champion, pinned, canary, ...")
    start = models.DateTimeField(help_text="Start of the minute or hour (UTC).")
    requests = models.PositiveBigIntegerField(default=0)
    codes = models.JSONField(default=dict, blank=True, help_text="HTTP status code -> requests.")
    latency = models.JSONField(default=dict, blank=True, help_text="Sketch bucket index of total_ms -> requests.")
    batch_sizes = models.JSONField(default=dict, blank=True, help_text="Batch size -> successful requests.")
    queue_us = models.PositiveBigIntegerField(default=0, help_text="Sum of queue waits of successes (µs).")
    compute_us = models.PositiveBigIntegerField(default=0, help_text="Sum of compute times of successes (µs).")
    # A batch's run is shared by its rows' requests: what the worker spent per request, for the cost view.
    compute_share_us = models.PositiveBigIntegerField(
        default=0, help_text="Sum over successes of their batch's compute time divided by its size (µs)."
    )
    shadow = models.JSONField(
        default=dict, blank=True, help_text="A shadow arm's agreement with the champion: sa, sr, sdn, sdu counters."
    )
    # The response cache and fallbacks (observability/recorder.py DEFENSE_*): how the
    # series' answers were made when it was not by running its version.
    served = models.JSONField(
        default=dict,
        blank=True,
        help_text="Cache hits and misses (hit, miss), fallback answers (fb:<kind>) and their reasons (fr:<reason>).",
    )
    # At most MAX_STAGES stages (a version's are fixed at its creation), each a sketch.
    stages = models.JSONField(
        default=dict,
        blank=True,
        help_text="A pipeline's stages of successes: compute_us, by_stage {stage: {us, latency}} (stages.py).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    @property
    def label(self) -> str:
        return f"{self.model} v{self.version} ({self.arm})"


class MinuteStats(StatsBucket):
    """One minute of one series, moved from Redis by `roll_up_minutes`."""

    # Claim tokens of the Redis hashes already added here (rollup.py): a claim
    # that outlived a crashed rollup is applied once, and the dashboard does
    # not count a claimed hash twice while its deletion is pending.
    claims = models.JSONField(default=list, blank=True)
    # False whenever the counts changed since `roll_up_hours` last merged this
    # minute into its hour; the hour is recomputed from its minutes then.
    in_hour = models.BooleanField(default=False)

    class Meta:
        verbose_name_plural = "minute stats"
        ordering = ["-start", "model", "version", "arm"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "version", "arm", "start"],
                name="observability_minute_unique_series",
                violation_error_message="This series already has a row for this minute.",
            ),
        ]
        indexes = [
            # The overview and prune read every series of a window by start time;
            # the unique constraint's index serves the per-model and rollup look-ups.
            models.Index(fields=["start"], name="observability_minute_start_idx"),
            # roll_up_hours and the long windows look for minutes their hour lacks.
            models.Index(fields=["start"], condition=Q(in_hour=False), name="observability_minute_dirty_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.label} minute {self.start:%Y-%m-%d %H:%M}: {self.requests} requests"


class HourStats(StatsBucket):
    """One hour of one series: the sum of its minutes, recomputed by `roll_up_hours`; kept longer."""

    class Meta:
        verbose_name_plural = "hour stats"
        ordering = ["-start", "model", "version", "arm"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "version", "arm", "start"],
                name="observability_hour_unique_series",
                violation_error_message="This series already has a row for this hour.",
            ),
        ]
        indexes = [
            # The 7- and 30-day windows and prune read every series of a window by start time.
            models.Index(fields=["start"], name="observability_hour_start_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.label} hour {self.start:%Y-%m-%d %H:00}: {self.requests} requests"
