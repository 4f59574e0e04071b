"""/api/vapi-sync/...: the seed's paths exactly (no trailing slash), each also answering with one.

The alias with the other slash style is left out of the OpenAPI schema, so every operation
appears once, under its documented path.
"""

from django.urls import path, re_path
from drf_spectacular.utils import extend_schema, extend_schema_view

from . import views
from .webhook import VapiWebhookView

app_name = "vapisync"


def _alias(view_class):
    """The same view under its other URL, hidden from the schema."""
    alias = type(f"{view_class.__name__}Alias", (view_class,), {"__doc__": view_class.__doc__})
    hidden = {method: extend_schema(exclude=True) for method in ("get", "post") if hasattr(view_class, method)}
    return extend_schema_view(**hidden)(alias)


def _both(route: str, view_class, name: str) -> list:
    """`route` as documented, plus the same route with (or without) a trailing slash."""
    other = route[:-1] if route.endswith("/") else route + "/"
    return [path(route, view_class.as_view(), name=name), path(other, _alias(view_class).as_view())]


urlpatterns = [
    *_both("status", views.StatusView, "status"),
    *_both("health", views.HealthView, "health"),
    *_both("phone-numbers/from-vapi", views.PhoneNumbersFromVapiView, "phone-numbers-from-vapi"),
    *_both("phone-numbers/to-vapi", views.PhoneNumbersToVapiView, "phone-numbers-to-vapi"),
    *_both("assistants/from-vapi", views.AssistantsFromVapiView, "assistants-from-vapi"),
    *_both("agents/to-vapi", views.AgentsToVapiView, "agents-to-vapi"),
    *_both("full", views.FullSyncView, "full"),
    *_both("runs/", views.RunListView, "run-list"),
    *_both("runs/<int:pk>/", views.RunDetailView, "run-detail"),
    *_both("runs/<int:pk>/changes/", views.RunChangesView, "run-changes"),
    *_both("runs/<int:pk>/rollback", views.RunRollbackView, "run-rollback"),
    *_both("conflicts", views.ConflictListView, "conflicts"),
    *_both("conflicts/resolve", views.ConflictResolveView, "conflicts-resolve"),
    *_both("assistants/delete-in-vapi", views.AssistantsDeleteInVapiView, "assistants-delete-in-vapi"),
    # Vapi's server messages: authenticated by the shared secret, not by users (see webhook.py).
    path("webhook", VapiWebhookView.as_view(), name="webhook"),
    # Last: anything else under /api/vapi-sync/ answers a JSON 404 (not Django's HTML page).
    re_path(r"^", views.not_found),
]
