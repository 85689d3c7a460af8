from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    """One change in the control plane: who did what to which object, when, with
    the object's state before and after.

    Append-only: nothing in the app updates or deletes entries, and a database
    trigger (see the migration) refuses UPDATE and DELETE outright.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # No database constraint and no cascade: deleting a user must neither
    # delete nor rewrite the history of what they did.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, help_text="The actor's username at the time, or 'system'.")
    action = models.CharField(max_length=64, help_text="A dotted verb, e.g. 'version.uploaded', 'alias.moved'.")
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The audit page filtered to one object (a model's history).
            models.Index(fields=["object_type", "object_id", "-created_at"], name="audit_object_idx"),
            # "What did this user do" on the audit page.
            models.Index(fields=["actor_name", "-created_at"], name="audit_actor_idx"),
        ]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.object_repr}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValueError("audit entries are append-only")
        super().save(*args, **kwargs)
