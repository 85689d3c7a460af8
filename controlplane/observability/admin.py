from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from controlplane.observability.models import HourStats, MinuteStats


class StatsAdmin(admin.ModelAdmin):
    """Read-only: the rows are written by the rollups only; the dashboard is where to read them."""

    list_display: tuple[str, ...] = ("start", "model", "version", "arm", "requests", "queue_us", "compute_us")
    list_filter = ("model", "arm")
    search_fields = ("model",)
    date_hierarchy = "start"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MinuteStats)
class MinuteStatsAdmin(StatsAdmin):
    list_display = (*StatsAdmin.list_display, "in_hour")


@admin.register(HourStats)
class HourStatsAdmin(StatsAdmin):
    pass
