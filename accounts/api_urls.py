"""Routes of the keys and plans API (accounts/keys_api.py), included at `/api/`."""

from rest_framework.routers import SimpleRouter

from accounts.keys_api import ApiKeyViewSet, PlanViewSet

app_name = "accounts-api"

router = SimpleRouter()
router.register("keys", ApiKeyViewSet, basename="key")
router.register("plans", PlanViewSet, basename="plan")

urlpatterns = router.urls
