"""Routes of the management API, included at `/api/`."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from audit.api import AuditEntryViewSet
from registry.api.aliases import AliasViewSet
from registry.api.quantizations import VersionQuantizationViewSet
from registry.api.versions import ModelVersionViewSet
from registry.api.views import RegisteredModelViewSet

app_name = "api"

router = SimpleRouter()
router.register("models", RegisteredModelViewSet, basename="model")
router.register("audit", AuditEntryViewSet, basename="audit-entry")

# Versions and aliases live under their model; DRF's router does not nest.
version_list = ModelVersionViewSet.as_view({"get": "list", "post": "create"})
version_detail = ModelVersionViewSet.as_view({"get": "retrieve", "patch": "partial_update"})
version_load = ModelVersionViewSet.as_view({"post": "load"})
version_unload = ModelVersionViewSet.as_view({"post": "unload"})
version_archive = ModelVersionViewSet.as_view({"post": "archive"})
version_restore = ModelVersionViewSet.as_view({"post": "restore"})
version_quantize = VersionQuantizationViewSet.as_view({"post": "quantize"})
version_quantizations = VersionQuantizationViewSet.as_view({"get": "quantizations"})
alias_list = AliasViewSet.as_view({"get": "list"})
alias_detail = AliasViewSet.as_view({"get": "retrieve", "put": "update", "delete": "destroy"})

urlpatterns = [
    path("models/<str:model_name>/versions/", version_list, name="model-version-list"),
    path("models/<str:model_name>/versions/<int:number>/", version_detail, name="model-version-detail"),
    path("models/<str:model_name>/versions/<int:number>/load/", version_load, name="model-version-load"),
    path("models/<str:model_name>/versions/<int:number>/unload/", version_unload, name="model-version-unload"),
    path("models/<str:model_name>/versions/<int:number>/archive/", version_archive, name="model-version-archive"),
    path("models/<str:model_name>/versions/<int:number>/restore/", version_restore, name="model-version-restore"),
    path("models/<str:model_name>/versions/<int:number>/quantize/", version_quantize, name="model-version-quantize"),
    path(
        "models/<str:model_name>/versions/<int:number>/quantizations/",
        version_quantizations,
        name="model-version-quantizations",
    ),
    path("models/<str:model_name>/aliases/", alias_list, name="model-alias-list"),
    path("models/<str:model_name>/aliases/<str:alias>/", alias_detail, name="model-alias-detail"),
    *router.urls,
]
