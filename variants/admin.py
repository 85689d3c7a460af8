from django.contrib import admin

from variants.models import Comparison


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    """Read-only: comparisons are started from the version page or the API."""

    list_display = ("version", "baseline", "status", "created_at")
    list_filter = ("status",)
    readonly_fields = [f.name for f in Comparison._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False
