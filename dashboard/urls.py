from django.urls import path

from dashboard import views

app_name = "dashboard"
urlpatterns = [
    path("", views.home, name="home"),
    path("health/", views.health, name="health"),
    path("dashboard/models/<str:name>/", views.model_stats, name="model"),
    path("dashboard/workers/", views.workers, name="workers"),
]
