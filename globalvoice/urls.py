from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from .api_router import router


def liveness(request):
    return JsonResponse({"status": "ok"})


# The project has no public site, only the admin and the API: no "View site" link leading to a 404.
admin.site.site_url = None

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/vapi-sync/", include("vapisync.api.urls")),
    path("api/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", liveness, name="liveness"),
]

handler400 = "globalvoice.errors.bad_request"
handler403 = "globalvoice.errors.permission_denied"
handler404 = "globalvoice.errors.page_not_found"
handler500 = "globalvoice.errors.server_error"
