from django.urls import path

from rollouts import version_views, views

app_name = "rollouts"
urlpatterns = [
    path("", views.rollout_list, name="list"),
    path("new/<str:name>/", views.rollout_new, name="new"),
    path("models/<str:name>/section/", views.model_section, name="model_section"),
    path(
        "models/<str:name>/versions/<int:number>/next/",
        version_views.version_next_steps,
        name="version_next_steps",
    ),
    path("<int:pk>/", views.rollout_detail, name="detail"),
    path("<int:pk>/<str:verb>/", views.rollout_action, name="action"),
]
