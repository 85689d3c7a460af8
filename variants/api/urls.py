"""Routes of the comparisons API, included at `/api/`."""

from django.urls import path

from variants.api.views import ComparisonsView

app_name = "variants-api"

start = ComparisonsView.as_view(http_method_names=["post", "options"])
listing = ComparisonsView.as_view(http_method_names=["get", "head", "options"])
urlpatterns = [
    path("models/<str:model_name>/versions/<int:number>/compare/", start, name="compare"),
    path("models/<str:model_name>/versions/<int:number>/comparisons/", listing, name="comparisons"),
]
