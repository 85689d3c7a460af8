from django.contrib import admin

from controlplane.admin_base import ViewOnlyAdmin
from registry.models import Alias, ModelVersion, RegisteredModel, ValidationJob


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "next_version_number", "created_at")
    search_fields = ("name", "description")
    filter_horizontal = ("maintainers",)
    readonly_fields = ("next_version_number",)


@admin.register(ModelVersion)
class ModelVersionAdmin(ViewOnlyAdmin):
    """Artifacts and validation results are read-only; serving settings are changed
    through the API or the dashboard so that every change is audited."""

    list_display = ("__str__", "status", "size_bytes", "created_by", "created_at")
    list_filter = ("status",)
    search_fields = ("model__name", "sha256")


@admin.register(Alias)
class AliasAdmin(ViewOnlyAdmin):
    list_display = ("__str__", "version", "updated_at")


@admin.register(ValidationJob)
class ValidationJobAdmin(ViewOnlyAdmin):
    list_display = ("version", "status", "started_at", "finished_at")
    list_filter = ("status",)
