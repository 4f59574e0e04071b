from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle


class SyncTriggerThrottle(ScopedRateThrottle):
    """ScopedRateThrottle (scope "vapi_sync", rate VAPI_SYNC_THROTTLE_RATE) that reads the rate
    at request time, so a changed REST_FRAMEWORK setting applies without a restart of the class."""

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
