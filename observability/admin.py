from django.contrib import admin

from controlplane.admin_base import ViewOnlyAdmin
from observability.models import HourStats, MinuteStats


class StatsAdmin(ViewOnlyAdmin):
    """Read-only: the rows are written by the rollups only; the dashboard is where to read them."""

    list_display: tuple[str, ...] = ("start", "model", "version", "arm", "requests", "queue_us", "compute_us")
    list_filter = ("model", "arm")
    search_fields = ("model",)
    date_hierarchy = "start"


@admin.register(MinuteStats)
class MinuteStatsAdmin(StatsAdmin):
    list_display = (*StatsAdmin.list_display, "in_hour")


@admin.register(HourStats)
class HourStatsAdmin(StatsAdmin):
    pass
