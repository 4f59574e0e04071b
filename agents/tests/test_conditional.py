"""Optimistic writes through the API: ETag on reads and writes, If-Match on PUT/PATCH/DELETE, 412 when
the record moved on. Without If-Match writes behave as before. Both versioned resources."""

import pytest
from django.db.models import F

from agents.models import Agent
from agents.tests.factories import AgentFactory
from phonenumbers_app.models import PhoneNumber
from phonenumbers_app.tests.factories import PhoneNumberFactory

pytestmark = pytest.mark.django_db

RESOURCES = {
    "agents": (AgentFactory, Agent, {"name": "Changed"}, {"name": "Put", "first_message": "Hello"}),
    "phone-numbers": (PhoneNumberFactory, PhoneNumber, {"name": "Changed"}, {"number": "+16826269224", "name": "Put"}),
}


@pytest.fixture(params=sorted(RESOURCES))
def resource(request):
    factory, model, patch, put = RESOURCES[request.param]
    record = factory(name="Before")
    return {"url": f"/api/{request.param}/{record.pk}/", "record": record, "model": model, "patch": patch, "put": put}


def changed_meanwhile(record, name="Changed meanwhile"):
    """Another writer (an import, another person) moves the record on, as the sync writes it."""
    type(record).objects.filter(pk=record.pk).update(name=name, version=F("version") + 1)


def test_get_answers_the_version_as_etag(staff_api, resource):
    response = staff_api.get(resource["url"])
    assert response.status_code == 200
    assert response["ETag"] == f'"{resource["record"].version}"' == '"1"'


def test_writes_answer_the_new_etag(staff_api, resource):
    response = staff_api.patch(resource["url"], resource["patch"], format="json")
    assert response.status_code == 200, response.content
    assert response["ETag"] == '"2"'
    assert staff_api.get(resource["url"])["ETag"] == '"2"'
    response = staff_api.put(resource["url"], resource["put"], format="json", HTTP_IF_MATCH='"2"')
    assert response.status_code == 200, response.content
    assert response["ETag"] == '"3"'


def test_create_answers_an_etag(staff_api):
    response = staff_api.post("/api/agents/", {"name": "New"}, format="json")
    assert response.status_code == 201 and response["ETag"] == '"1"'


@pytest.mark.parametrize("method", ["patch", "put", "delete"])
def test_stale_if_match_is_412_and_changes_nothing(staff_api, resource, method):
    etag = staff_api.get(resource["url"])["ETag"]
    changed_meanwhile(resource["record"])
    body = {"patch": resource["patch"], "put": resource["put"], "delete": None}[method]
    response = getattr(staff_api, method)(resource["url"], body, format="json", HTTP_IF_MATCH=etag)
    assert response.status_code == 412, response.content
    assert response.json()["code"] == "precondition_failed"
    assert '"2"' in response.json()["detail"]
    stored = resource["model"].objects.get(pk=resource["record"].pk)
    assert (stored.name, stored.version) == ("Changed meanwhile", 2)


@pytest.mark.parametrize("header", ['"2"', '"1", "2"', "*", ' "2" '])
def test_matching_if_match_writes(staff_api, resource, header):
    changed_meanwhile(resource["record"])
    response = staff_api.patch(resource["url"], resource["patch"], format="json", HTTP_IF_MATCH=header)
    assert response.status_code == 200, response.content
    assert resource["model"].objects.get(pk=resource["record"].pk).name == "Changed"


@pytest.mark.parametrize("header", ['W/"1"', "1", "garbage", '"01"', ""])
def test_weak_or_malformed_if_match_never_matches(staff_api, resource, header):
    response = staff_api.patch(resource["url"], resource["patch"], format="json", HTTP_IF_MATCH=header)
    assert response.status_code == 412
    assert resource["model"].objects.get(pk=resource["record"].pk).name == "Before"


def test_delete_with_matching_if_match(staff_api, resource):
    response = staff_api.delete(resource["url"], HTTP_IF_MATCH='"1"')
    assert response.status_code == 204
    assert not resource["model"].objects.filter(pk=resource["record"].pk).exists()
    assert staff_api.delete(resource["url"], HTTP_IF_MATCH="*").status_code == 404


def test_without_if_match_writes_as_before(staff_api, resource):
    changed_meanwhile(resource["record"])
    response = staff_api.patch(resource["url"], resource["patch"], format="json")
    assert response.status_code == 200
    assert resource["model"].objects.get(pk=resource["record"].pk).name == "Changed"


def test_a_failed_validation_keeps_the_version(staff_api, resource):
    response = staff_api.patch(resource["url"], {"name": "x" * 41}, format="json", HTTP_IF_MATCH='"1"')
    assert response.status_code == 400
    assert resource["model"].objects.get(pk=resource["record"].pk).version == 1


def test_schema_documents_etag_if_match_and_412(anon_api):
    schema = anon_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path in ("/api/agents/{id}/", "/api/phone-numbers/{id}/"):
        operations = schema["paths"][path]
        assert "ETag" in operations["get"]["responses"]["200"]["headers"]
        for method in ("put", "patch", "delete"):
            params = {(p["in"], p["name"]) for p in operations[method]["parameters"]}
            assert ("header", "If-Match") in params, (path, method)
            assert "412" in operations[method]["responses"], (path, method)
        assert "ETag" in operations["patch"]["responses"]["200"]["headers"]
