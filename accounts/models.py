from __future__ import annotations

import fnmatch

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from dataplane import priority


class Priority(models.TextChoices):
    """Which requests workers take first, and how much of a model's queue they may fill
    (dataplane/priority.py has the shares: high 100 %, normal 80 %, low 50 %)."""

    HIGH = priority.HIGH, "High"
    NORMAL = priority.NORMAL, "Normal"
    LOW = priority.LOW, "Low"


class Plan(models.Model):
    """Default rate limits and quota for the keys on it, and their priority level;
    an admin may override the limits per key."""

    name = models.SlugField(max_length=64, unique=True)
    requests_per_window = models.PositiveIntegerField(default=100, validators=[MinValueValidator(1)])
    window_seconds = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    burst = models.PositiveIntegerField(default=100, validators=[MinValueValidator(1)])
    daily_quota = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per UTC day; empty: none.")
    is_default = models.BooleanField(default=False, help_text="The plan of keys that have none.")
    priority = models.CharField(
        max_length=8,
        choices=Priority.choices,
        default=Priority.NORMAL,
        help_text=(
            "Workers take higher levels first; under overload low is refused (503) once a model's queue "
            "is half full, normal at 80 %, high only when it is full."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=Q(is_default=True),
                name="accounts_plan_one_default",
                violation_error_message="Only one plan can be the default.",
            )
        ]

    def __str__(self) -> str:
        quota = f", {self.daily_quota}/day" if self.daily_quota else ""
        return (
            f"{self.name} ({self.requests_per_window}/{self.window_seconds}s, burst {self.burst}{quota}, "
            f"{self.priority} priority)"
        )


class KeyAction(models.TextChoices):
    INFER = "infer", "Run inference"
    READ = "read", "Read model metadata"
    MANAGE = "manage", "Use the management API"


class ApiKey(models.Model):
    """An API key. Only an HMAC digest of the secret is stored; the secret is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    public_id = models.CharField(max_length=12, unique=True, editable=False)
    environment = models.CharField(max_length=8, default="live", editable=False)
    digest = models.CharField(max_length=64, editable=False)
    # After a rotation the previous secret keeps working until `previous_valid_until`.
    previous_digest = models.CharField(max_length=64, blank=True, editable=False)
    previous_valid_until = models.DateTimeField(null=True, blank=True, editable=False)
    model_patterns = models.JSONField(default=list, help_text="Model names or glob patterns, e.g. ['fraud-*'].")
    actions = models.JSONField(default=list, help_text="Any of infer, read, manage.")
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, null=True, blank=True, related_name="keys")
    # Per-key overrides of the plan, set by an admin; empty: the plan's value.
    requests_per_window = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    window_seconds = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    burst = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    daily_quota = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The keys page: a user's keys, newest first.
            models.Index(fields=["user", "-created_at"], name="accounts_key_user_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def prefix(self) -> str:
        return f"tk_{self.environment}_{self.public_id}_…"

    @property
    def covers_every_model(self) -> bool:
        """A `*` among its patterns: the key is not limited to some models."""
        return "*" in self.model_patterns

    def allows_model(self, name: str) -> bool:
        """Whether the name matches one of the key's patterns (case-sensitive globs, as on /v2)."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.model_patterns)

    @property
    def status(self) -> str:
        """The key's own state; whether its owner may still use it is `shown_status`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"

    @property
    def shown_status(self) -> str:
        """What the keys pages show: an active key of a deactivated user is not usable."""
        status = self.status
        if status == "active" and not self.user.is_active:
            return "owner deactivated"
        return status
