"""System checks that catch Vapi misconfiguration at start-up."""

from urllib.parse import urlparse

from django.core.checks import Error, Warning, register

from .conf import CONFLICT_POLICIES, vapi_settings


@register()
def vapi_settings_check(app_configs, **kwargs):
    conf = vapi_settings()
    problems = []
    if conf.conflict_policy not in CONFLICT_POLICIES:
        problems.append(
            Error(
                f"VAPI_SYNC_CONFLICT_POLICY={conf.conflict_policy!r} is not one of {', '.join(CONFLICT_POLICIES)}.",
                id="vapisync.E001",
            )
        )
    url = urlparse(conf.base_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        problems.append(Error(f"VAPI_BASE_URL={conf.base_url!r} is not an http(s) URL.", id="vapisync.E002"))
    elif url.scheme == "http" and url.hostname not in ("127.0.0.1", "localhost", "::1", "vapi.test"):
        problems.append(
            Warning(
                "VAPI_BASE_URL uses plain http to a non-local host: the API key would travel unencrypted.",
                id="vapisync.W001",
            )
        )
    return problems
