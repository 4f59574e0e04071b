"""The one DRF router for the domain resources."""

from rest_framework.routers import DefaultRouter

from agents.api.views import AgentViewSet
from phonenumbers_app.api.views import PhoneNumberViewSet

router = DefaultRouter(trailing_slash=True)
router.register("agents", AgentViewSet, basename="agent")
router.register("phone-numbers", PhoneNumberViewSet, basename="phonenumber")
