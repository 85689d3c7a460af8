from django.urls import path

from registry import fallback_views, pipeline_views, quantization_views, serving_views, views

app_name = "registry"
urlpatterns = [
    path("", views.model_list, name="list"),
    # Before <name>/: "new" is reserved as a model name for this page.
    path("new/", views.model_new, name="new"),
    path("<str:name>/", views.model_detail, name="detail"),
    path("<str:name>/upload/", views.upload, name="upload"),
    path("<str:name>/fallback/", fallback_views.fallback, name="fallback"),
    path("<str:name>/versions/new/", pipeline_views.pipeline_version_new, name="pipeline-version-new"),
    path("<str:name>/versions/<int:number>/", views.version_detail, name="version"),
    path("<str:name>/versions/<int:number>/cache/", serving_views.version_cache, name="version-cache"),
    path("<str:name>/versions/<int:number>/quantize/", quantization_views.version_quantize, name="version-quantize"),
    path("<str:name>/versions/<int:number>/<str:verb>/", views.version_action, name="version-action"),
]
