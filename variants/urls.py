from django.urls import path

from variants import views

app_name = "variants"
urlpatterns = [
    path("models/<str:name>/versions/<int:number>/comparisons/", views.version_section, name="section"),
    path("models/<str:name>/versions/<int:number>/capacity/", views.capacity, name="capacity"),
    path("models/<str:name>/versions/<int:number>/start/<str:kind>/", views.start_rollout, name="start-rollout"),
    path("models/<str:name>/versions/<int:number>/capacity/<int:pk>/apply/", views.capacity, name="capacity-apply"),
]
