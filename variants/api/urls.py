"""Routes of the comparisons API, included at `/api/`."""

from django.urls import path

from variants.api.views import ApplyCapacityView, CapacityReportsView, ComparisonsView

app_name = "variants-api"

start = ComparisonsView.as_view(http_method_names=["post", "options"])
listing = ComparisonsView.as_view(http_method_names=["get", "head", "options"])
measure = CapacityReportsView.as_view(http_method_names=["post", "options"])
reports = CapacityReportsView.as_view(http_method_names=["get", "head", "options"])
version = "models/<str:model_name>/versions/<int:number>/"
urlpatterns = [
    path(version + "capacity/", measure, name="capacity"),
    path(version + "capacity-reports/", reports, name="capacity-reports"),
    path(version + "capacity-reports/<int:pk>/apply/", ApplyCapacityView.as_view(), name="capacity-apply"),
    path("models/<str:model_name>/versions/<int:number>/compare/", start, name="compare"),
    path("models/<str:model_name>/versions/<int:number>/comparisons/", listing, name="comparisons"),
]
