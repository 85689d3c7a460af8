"""Routes of the rollouts API, included at `/api/` (after the registry's)."""

from rest_framework.routers import SimpleRouter

from rollouts.api.views import RolloutViewSet

app_name = "rollouts-api"

router = SimpleRouter()
router.register("rollouts", RolloutViewSet, basename="rollout")

urlpatterns = router.urls
