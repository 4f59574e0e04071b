"""Django-level error pages: JSON under /api/ (scripts parse them), the usual HTML elsewhere.

DRF turns errors inside its views into JSON itself; these cover what happens before a view
runs: an unmatched URL, a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a CSRF failure, a crash.
"""

from django.http import JsonResponse
from django.views import defaults
from django.views.csrf import csrf_failure as html_csrf_failure


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def _json(status: int, detail: str, code: str) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code}, status=status)


def bad_request(request, exception=None):
    if _is_api(request):
        return _json(400, "Bad request: the body is too large, has too many fields or could not be read.", "bad_request")
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if _is_api(request):
        return _json(403, "You do not have permission to perform this action.", "permission_denied")
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception=None):
    if _is_api(request):
        return _json(404, f"There is no API endpoint at {request.path} (see /api/docs/).", "not_found")
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return _json(500, "Internal error; nothing more is shown here. The server log has the details.", "server_error")
    return defaults.server_error(request)


def csrf_failure(request, reason=""):
    if _is_api(request):
        return _json(
            403,
            "CSRF check failed: with session authentication send the X-CSRFToken header, or use a Bearer token.",
            "csrf_failed",
        )
    return html_csrf_failure(request, reason=reason)
