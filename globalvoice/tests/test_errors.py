"""Errors raised before any API view runs are JSON under /api/ and HTML elsewhere."""

import json

import pytest

pytestmark = pytest.mark.django_db


def test_unmatched_api_url_is_a_json_404(staff_api):
    response = staff_api.get("/api/agents/1.2.3/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_found"


def test_body_over_the_upload_limit_is_a_json_400(staff_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = staff_api.post("/api/agents/", json.dumps({"name": "x" * 5000}), content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] in ("bad_request", "parse_error")


def test_bearer_post_to_an_unknown_sync_path_is_a_json_404_not_a_csrf_page(staff_api):
    response = staff_api.post("/api/vapi-sync/runs/abc/rollback")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_pages_outside_the_api_keep_html_errors(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
