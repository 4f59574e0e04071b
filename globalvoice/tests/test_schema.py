"""The OpenAPI schema, the docs page (self-hosted assets) and the liveness probe."""

import re

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_schema_is_served_with_the_domain_paths(anon_api):
    response = anon_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "GlobalVoice Vapi Sync API"
    for path in ("/api/agents/", "/api/agents/{id}/", "/api/phone-numbers/", "/api/phone-numbers/{id}/"):
        assert path in schema["paths"], path
    assert set(schema["paths"]["/api/agents/"]) >= {"get", "post"}
    assert set(schema["paths"]["/api/agents/{id}/"]) >= {"get", "put", "patch", "delete"}


def test_schema_is_yaml_by_default_and_json_on_request(anon_api):
    yaml = anon_api.get("/api/schema/")
    assert yaml.status_code == 200
    assert yaml.content.startswith(b"openapi: 3.")
    assert "/api/phone-numbers/" in anon_api.get("/api/schema/", {"format": "json"}).json()["paths"]


def test_schema_documents_bearer_auth_and_read_only_fields(anon_api):
    schema = anon_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    scheme = schema["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {"type": "http", "scheme": "bearer", "description": scheme["description"]}
    agent = schema["components"]["schemas"]["Agent"]["properties"]
    assert agent["vapi_assistant_id"].get("readOnly") is True
    assert agent["sync_status"].get("readOnly") is True
    assert agent["name"]["maxLength"] == 40
    # Writes use a request component without the read-only fields.
    agent_request = schema["components"]["schemas"]["AgentRequest"]["properties"]
    assert "vapi_assistant_id" not in agent_request
    phone_request = schema["components"]["schemas"]["PhoneNumberRequest"]["properties"]
    assert {"number", "sip_uri", "name", "provider", "agent"} <= set(phone_request)
    assert "vapi_phone_id" not in phone_request


def test_schema_generates_without_warnings_and_validates(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "/api/agents/" in out.read_text()


def test_docs_page_uses_self_hosted_assets(anon_api):
    response = anon_api.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "SwaggerUIBundle" in html or "swagger-ui" in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    external = [url for url in re.findall(r"""(?:src|href)=["']([^"']+)""", html) if "//" in url]
    assert external == [], external
    assert "cdn.jsdelivr.net" not in html and "unpkg.com" not in html


def test_docs_assets_are_served(client):
    html = client.get("/api/docs/").content.decode()
    assets = re.findall(r"""["'](/static/drf_spectacular_sidecar/[^"']+)["']""", html)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets), assets
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
        response.close()


def test_liveness_probe(anon_api):
    response = anon_api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
