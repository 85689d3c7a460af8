from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from gateway.docs_views import grpc_proto, inference_schema
from observability.views import metrics as metrics_view

urlpatterns = [
    path("", include("dashboard.urls")),
    path("", include("accounts.urls")),
    path("models/", include("registry.urls")),
    path("audit/", include("audit.urls")),
    path("api/", include("registry.api.urls")),
    path("api/", include("rollouts.api.urls")),
    path("api/", include("variants.api.urls")),
    path("api/", include("accounts.api_urls")),
    path("variants/", include("variants.urls")),
    path("rollouts/", include("rollouts.urls")),
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    # The inference API (/v2, HTTP and gRPC): a hand-written document (gateway/openapi/inference.yaml).
    path("api/inference/schema/", inference_schema, name="inference-schema"),
    path(
        "api/inference/docs/",
        SpectacularSwaggerView.as_view(url_name="inference-schema", title="Turnout inference API"),
        name="inference-docs",
    ),
    path("api/inference/grpc_predict_v2.proto", grpc_proto, name="inference-grpc-proto"),
]
