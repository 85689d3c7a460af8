from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from registry.models import Alias, ModelVersion, RegisteredModel, ValidationJob


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "next_version_number", "created_at")
    search_fields = ("name", "description")
    filter_horizontal = ("maintainers",)
    readonly_fields = ("next_version_number",)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Artifacts and validation results are read-only; serving settings are changed
    through the API or the dashboard so that every change is audited."""

    list_display = ("__str__", "status", "size_bytes", "created_by", "created_at")
    list_filter = ("status",)
    search_fields = ("model__name", "sha256")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Alias)
class AliasAdmin(admin.ModelAdmin):
    list_display = ("__str__", "version", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ValidationJob)
class ValidationJobAdmin(admin.ModelAdmin):
    list_display = ("version", "status", "started_at", "finished_at")
    list_filter = ("status",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
