"""Rollouts in the admin: read-only. Starting and steering go through the
dashboard or the API, so that every transition is audited and reaches the gateways."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from controlplane.admin_base import ReadOnlyAdmin
from rollouts.models import Arm, Rollout


class ArmInline(admin.TabularInline):
    model = Arm
    fields = ("name", "version", "weight", "is_control", "reward_n", "reward_sum", "p_value")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Rollout)
class RolloutAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "kind", "status", "step", "started_at", "ended_at")
    list_filter = ("kind", "status")
    search_fields = ("model__name",)
    inlines = [ArmInline]
    readonly_fields = (
        "model",
        "kind",
        "status",
        "config",
        "step",
        "step_started_at",
        "routing_header",
        "outcome",
        "last_analysis",
        "created_by",
        "started_at",
        "ended_at",
    )
