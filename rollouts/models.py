from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from registry.models import ModelVersion, RegisteredModel


class RolloutKind(models.TextChoices):
    CANARY = "canary", "Canary"
    EXPERIMENT = "experiment", "A/B experiment"
    SHADOW = "shadow", "Shadow"


class RolloutStatus(models.TextChoices):
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    PROMOTED = "promoted", "Promoted"
    ROLLED_BACK = "rolled_back", "Rolled back"
    ABORTED = "aborted", "Aborted"
    STOPPED = "stopped", "Stopped"


ACTIVE = (RolloutStatus.RUNNING, RolloutStatus.PAUSED)


class Rollout(models.Model):
    """A change of a model's traffic beyond its champion: a canary, an A/B experiment or a shadow.

    At most one is active (running or paused) per model. Its settings live in
    `config` (canary steps and gates, experiment metric, shadow fraction), and
    its outcome, once ended, in `outcome`.
    """

    AUDIT_MODEL_NAME = "model__name"  # see RegisteredModel.AUDIT_MODEL_NAME

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="rollouts")
    kind = models.CharField(max_length=16, choices=RolloutKind.choices)
    status = models.CharField(max_length=16, choices=RolloutStatus.choices, default=RolloutStatus.RUNNING)
    config = models.JSONField(default=dict)
    # Canary progress: the index into config["steps"] and when that step began.
    step = models.PositiveIntegerField(default=0)
    step_started_at = models.DateTimeField(null=True, blank=True)
    # Header whose value pins a client to an arm; without it, the API key does.
    routing_header = models.CharField(max_length=64, default="x-routing-key")
    outcome = models.JSONField(null=True, blank=True)
    last_analysis = models.JSONField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["model"],
                condition=Q(status__in=["running", "paused"]),
                name="rollouts_one_active_per_model",
                violation_error_message="This model already has an active rollout; end it first.",
            )
        ]
        indexes = [
            # Beat's analysis: every active rollout.
            models.Index(fields=["status"], name="rollouts_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} of {self.model.name} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE


class Arm(models.Model):
    """One version taking part in a rollout, with its share of traffic (percent)."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="arms")
    name = models.CharField(max_length=32)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="arms")
    weight = models.FloatField(default=0.0)
    is_control = models.BooleanField(default=False)
    # Rewards joined from feedback, copied from Redis when the rollout ends.
    reward_n = models.PositiveIntegerField(default=0)
    reward_sum = models.FloatField(default=0.0)
    reward_sum_sq = models.FloatField(default=0.0)
    # The running minimum of the always-valid p-value against the control.
    p_value = models.FloatField(default=1.0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["rollout", "-is_control", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["rollout", "name"],
                name="rollouts_arm_unique_name",
                violation_error_message="Arm names must be unique within a rollout.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.version}, {self.weight:g}%)"
