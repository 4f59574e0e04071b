"""The trimmed Vapi OpenAPI subset, its validation helper, and the emulator's conformance to it.

Fixtures under `fixtures/` are hand-written in the shape of Vapi's responses (not captured traffic).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from vapi_emulator import VapiEmulator, openapi
from vapi_emulator.demo import DEMO_ASSISTANTS
from vapi_emulator.openapi import SchemaValidationError, UndocumentedResponse

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "contract-key"
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
EXPECTED_OPERATIONS = {
    ("GET", "/assistant"), ("POST", "/assistant"),
    ("GET", "/assistant/{id}"), ("PATCH", "/assistant/{id}"), ("DELETE", "/assistant/{id}"),
    ("GET", "/phone-number"), ("POST", "/phone-number"),
    ("GET", "/phone-number/{id}"), ("PATCH", "/phone-number/{id}"), ("DELETE", "/phone-number/{id}"),
    ("GET", "/v2/phone-number"),
}


def load_fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


def writable(assistant: dict) -> dict:
    read_only = {"id", "orgId", "createdAt", "updatedAt", "isServerUrlSecretSet"}
    return {k: v for k, v in assistant.items() if k not in read_only}


# --- the subset file ---------------------------------------------------------------------------

def test_subset_covers_exactly_the_synced_operations():
    assert set(openapi.operations()) == EXPECTED_OPERATIONS


def test_subset_has_no_documentation_keys_and_no_dangling_refs():
    spec = json.loads(openapi.SUBSET_PATH.read_text())
    schemas = spec["components"]["schemas"]
    dangling, doc_keys = [], []

    def walk(node, where):
        if isinstance(node, list):
            for item in node:
                walk(item, where)
        elif isinstance(node, dict):
            doc_keys.extend(f"{where}.{k}" for k in ("description", "example", "examples", "title") if k in node)
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.removeprefix("#/components/schemas/") not in schemas:
                dangling.append(ref)
            for key, value in node.items():
                if key == "properties":  # keys are field names ("description" is a real field of tools)
                    for field, schema in value.items():
                        walk(schema, f"{where}.{field}")
                elif key not in ("enum", "default", "required"):
                    walk(value, f"{where}.{key}")

    walk({"paths": spec["paths"], "components": spec["components"]}, "$")
    assert not dangling and not doc_keys
    assert "description" in schemas["OpenAIFunction"]["properties"]


def _trim_module():
    spec = importlib.util.spec_from_file_location("trim_openapi", REPO_ROOT / "scripts" / "trim_openapi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trim_script_keeps_the_transitive_closure_including_discriminator_targets():
    trim = _trim_module()
    ref = "#/components/schemas/"
    operation = {"get": {"description": "x", "responses": {"200": {"content": {"application/json": {"schema": {"$ref": ref + "A"}}}}}}}
    spec = {
        "openapi": "3.0.0",
        "info": {"title": "t", "version": "1", "description": "dropped"},
        "paths": {path: {m: operation["get"] for m in methods} for path, methods in trim.OPERATIONS.items()},
        "components": {"schemas": {
            "A": {"type": "object", "description": "dropped", "properties": {
                "description": {"type": "string", "example": "dropped"},
                "b": {"oneOf": [{"$ref": ref + "B", "title": "dropped"}], "discriminator": {"propertyName": "k", "mapping": {"c": ref + "C"}}},
            }},
            "B": {"type": "object", "properties": {"d": {"$ref": ref + "D"}}},
            "C": {"type": "string", "default": {"description": "data, kept"}},
            "D": {"type": "number"},
            "Unused": {"type": "string"},
        }},
    }
    subset = trim.trim(spec)
    assert set(subset["components"]["schemas"]) == {"A", "B", "C", "D"}
    a = subset["components"]["schemas"]["A"]
    assert a["properties"]["description"] == {"type": "string"}
    assert "title" not in a["properties"]["b"]["oneOf"][0]
    assert subset["components"]["schemas"]["C"]["default"] == {"description": "data, kept"}
    assert json.loads(trim.render(subset)) == subset


# --- the validation helper -------------------------------------------------------------------

def test_realistic_documents_validate():
    openapi.validate_schema("Assistant", load_fixture("vapi_assistant.json"))
    openapi.validate_response("GET", "/phone-number", 200, load_fixture("vapi_phone_numbers.json"))
    openapi.validate_request("POST", "/assistant", writable(load_fixture("vapi_assistant.json")))


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"model": {"provider": "openai", "model": "gpt-4o", "temperature": 5}}, "$.model.temperature"),
        ({"model": {"provider": "no-such-llm", "model": "x"}}, "$.model.provider"),
        ({"voice": {"provider": "vapi"}}, "$.voice"),
        ({"name": "x" * 41}, "$.name"),
        ({"createdAt": "last tuesday"}, "$.createdAt"),
        ({"clientMessages": ["transcript", "not-a-message"]}, "$.clientMessages[1]"),
        ({"model": {"provider": "openai", "model": "gpt-4o", "tools": [{"type": "transferCall", "destinations": [{"type": "number"}]}]}},
         "$.model.tools[0].destinations[0]"),
    ],
)
def test_a_failing_validation_names_the_field(change, path):
    document = {**load_fixture("vapi_assistant.json"), **change}
    with pytest.raises(SchemaValidationError) as caught:
        openapi.validate_schema("Assistant", document)
    assert caught.value.path == path
    assert path in str(caught.value)


def test_nullable_fields_accept_null_and_others_do_not():
    openapi.validate_schema("OpenAIMessage", {"role": "assistant", "content": None})
    with pytest.raises(SchemaValidationError, match=r"\$\.role"):
        openapi.validate_schema("OpenAIMessage", {"role": None, "content": "hi"})


def test_requests_are_strict_like_vapis_validation_pipe():
    with pytest.raises(SchemaValidationError, match="'id' was unexpected"):
        openapi.validate_request("POST", "/assistant", {"id": "x", "name": "A"})
    with pytest.raises(SchemaValidationError, match=r"\$\.model.*'foo' was unexpected"):
        openapi.validate_request("PATCH", "/assistant/{id}", {"model": {"provider": "openai", "model": "gpt-4o", "foo": 1}})
    # class-validator's @IsOptional lets null through for a declared property, never for an unknown one
    openapi.validate_request("PATCH", "/assistant/{id}", {"firstMessage": None})
    with pytest.raises(SchemaValidationError, match="'orgId' was unexpected"):
        openapi.validate_request("PATCH", "/assistant/{id}", {"orgId": None})
    # responses are lenient: Vapi adds fields its schema does not list
    openapi.validate_schema("Assistant", {**load_fixture("vapi_assistant.json"), "somethingNew": 1})


def test_phone_number_unions_dispatch_on_provider():
    openapi.validate_request("POST", "/phone-number", {"provider": "twilio", "number": "+15550100", "twilioAccountSid": "AC1"})
    with pytest.raises(SchemaValidationError) as caught:
        openapi.validate_request("POST", "/phone-number", {"provider": "twilio", "number": "+15550100"})
    assert "twilioAccountSid" in str(caught.value)
    # PATCH bodies may omit provider (any provider's Update DTO may then apply) ...
    openapi.validate_request("PATCH", "/phone-number/{id}", {"assistantId": None, "name": "Main"})
    # ... but with provider "vapi", `number` is not an updatable field.
    with pytest.raises(SchemaValidationError, match="'number' was unexpected"):
        openapi.validate_request("PATCH", "/phone-number/abc", {"provider": "vapi", "number": "+15550100"})


def test_undocumented_statuses_and_unknown_operations_are_reported():
    with pytest.raises(UndocumentedResponse):
        openapi.validate_response("GET", "/assistant/{id}", 404, {"message": "x"})
    openapi.validate_response("DELETE", "/assistant/{id}", 409, {"error": "assistant_pinned", "message": "pinned"})
    with pytest.raises(LookupError):
        openapi.validate_request("PUT", "/assistant", {})
    assert openapi.match_path("/assistant/0b4c/") == "/assistant/{id}"
    assert openapi.match_path("/call") is None


AGREEMENT_CASES = [
    ("Assistant", False, {}),
    ("Assistant", False, {"model": {"provider": "openai", "model": "gpt-4o", "temperature": 5}}),
    ("Assistant", False, {"model": {"provider": None, "model": "gpt-4o"}}),
    ("Assistant", False, {"voice": {"provider": "vapi"}}),
    ("Assistant", False, {"createdAt": "2025-02-30T00:00:00Z"}),
    ("Assistant", False, {"createdAt": "2025-01-01 10:00:00+02:00"}),
    ("Assistant", False, {"clientMessages": ["transcript", "nope"]}),
    ("Assistant", False, {"voicemailDetection": "on"}),
    ("Assistant", False, {"latestVersion": None, "firstMessage": None}),
    ("CreateAssistantDTO", True, {"id": None}),
    ("CreateAssistantDTO", True, {"firstMessage": None, "model": {"provider": "openai", "model": "gpt-4o", "temperature": None}}),
    ("CreateAssistantDTO", True, {"model": {"provider": "openai", "model": None}}),
    ("UpdateVapiPhoneNumberDTO", True, {"assistantId": None, "name": "x"}),
    ("UpdateVapiPhoneNumberDTO", True, {"number": "+15550100"}),
    ("UpdateTwilioPhoneNumberDTO", True, {"provider": None, "twilioAuthToken": "t"}),
]


@pytest.mark.skipif(openapi.jsonschema_rs is None, reason="jsonschema_rs (the optional accelerator) is not installed")
@pytest.mark.parametrize(("name", "strict", "change"), AGREEMENT_CASES)
def test_fast_path_gives_the_same_verdict_as_jsonschema(name, strict, change):
    """The jsonschema_rs check is consulted first; it must never accept what jsonschema rejects."""
    base = load_fixture("vapi_assistant.json") if name == "Assistant" else writable(load_fixture("vapi_assistant.json")) if "Assistant" in name else {}
    document = {**base, **change}
    compiled = openapi._component_validator(name, strict)
    assert compiled.fast.is_valid(document) == (not list(compiled.python.iter_errors(document)))


def test_validators_are_compiled_once():
    openapi.validate_schema("Assistant", load_fixture("vapi_assistant.json"))
    assert openapi._component_validator("Assistant", False) is openapi._component_validator("Assistant", False)
    assert openapi._response_validator("get", "/assistant", 200) is openapi._response_validator("get", "/assistant", 200)


# --- emulator conformance ------------------------------------------------------------------------

class ContractClient:
    """Calls the emulator and validates every request body and every 2xx response against the spec."""

    def __init__(self, emulator: VapiEmulator):
        self.emulator = emulator
        self.checked = 0

    def call(self, method: str, path: str, body: dict | None = None, query: dict | None = None, expect: int = 200):
        if body is not None and expect < 400:
            openapi.validate_request(method, path, body)
        status, headers, raw = self.emulator.handle(method, path, query or {}, HEADERS, json.dumps(body).encode() if body is not None else None)
        assert headers["Content-Type"].startswith("application/json")
        payload = json.loads(raw)
        assert status == expect, payload
        if status < 300 or status == 409:
            openapi.validate_response(method, path, status, payload)
            self.checked += 1
        else:  # NestJS error shape
            assert payload["statusCode"] == status and "message" in payload
        return payload


@pytest.fixture
def contract():
    return ContractClient(VapiEmulator(api_key=KEY, seed="demo", random_seed=3))


def test_every_route_answers_per_the_spec(contract):
    emu = contract.emulator
    assistants = contract.call("GET", "/assistant")
    assert len(assistants) == len(DEMO_ASSISTANTS)
    contract.call("GET", "/assistant", query={"limit": "2", "createdAtGe": "2025-01-01T00:00:00Z", "updatedAtLt": "2030-01-01T00:00:00Z"})
    for assistant in assistants:
        contract.call("GET", f"/assistant/{assistant['id']}")

    created = contract.call("POST", "/assistant", writable(load_fixture("vapi_assistant.json")), expect=201)
    contract.call("PATCH", f"/assistant/{created['id']}", {"name": "Renamed", "model": {"provider": "anthropic", "model": "claude-3-5-sonnet-20241022"}})
    contract.call("PATCH", f"/assistant/{created['id']}", {"voice": {"provider": "cartesia", "voiceId": "a0e99841-438c-4a64-b679-ae501e7d6091"}})
    emu.pinned.add(created["id"])
    contract.call("DELETE", f"/assistant/{created['id']}", expect=409)
    emu.pinned.clear()
    contract.call("DELETE", f"/assistant/{created['id']}")

    for body in [
        {"provider": "vapi", "numberDesiredAreaCode": "682", "name": "New DFW line"},
        {"provider": "vapi", "sipUri": "sip:globalvoice-test@sip.vapi.ai"},
        {"provider": "twilio", "number": "+15005550006", "twilioAccountSid": "AC123", "twilioAuthToken": "secret"},
        {"provider": "vonage", "number": "+442071838750", "credentialId": "cred-1"},
        {"provider": "telnyx", "number": "+13125550142", "credentialId": "cred-2"},
        {"provider": "byo-phone-number", "number": "+14155550199", "credentialId": "cred-3", "assistantId": assistants[0]["id"]},
    ]:
        phone = contract.call("POST", "/phone-number", body, expect=201)
        contract.call("GET", f"/phone-number/{phone['id']}")
        contract.call("PATCH", f"/phone-number/{phone['id']}", {"name": "Renamed", "assistantId": assistants[1]["id"]})
        contract.call("PATCH", f"/phone-number/{phone['id']}", {"assistantId": None})
    contract.call("GET", "/phone-number", query={"limit": "1000"})
    contract.call("GET", "/v2/phone-number", query={"limit": "3", "page": "2", "sortOrder": "ASC"})
    contract.call("GET", "/v2/phone-number", query={"search": "dfw"})
    contract.call("DELETE", f"/phone-number/{phone['id']}")
    assert contract.checked > 30


def test_error_bodies_have_the_nestjs_shape(contract):
    contract.call("GET", "/assistant/00000000-0000-4000-8000-000000000000", expect=404)
    contract.call("POST", "/assistant", {"id": "x"}, expect=400)
    contract.call("GET", "/assistant", query={"limit": "5000"}, expect=400)


def test_demo_assistants_are_valid_create_bodies_and_validate_as_responses():
    for fields in DEMO_ASSISTANTS.values():
        openapi.validate_request("POST", "/assistant", {k: v for k, v in fields.items() if k not in ("createdAt", "updatedAt")})
    emu = VapiEmulator(seed="demo")
    openapi.validate_response("GET", "/assistant", 200, list(emu.assistants.values()))


def test_thousands_of_list_items_validate_quickly():
    emu = VapiEmulator(api_key=KEY)
    fixture = writable(load_fixture("vapi_assistant.json"))
    for i in range(1000):
        emu.add_assistant(**{**fixture, "name": f"Agent {i}"})
    status, _, raw = emu.handle("GET", "/assistant", {"limit": "1000"}, HEADERS, None)
    assert status == 200
    openapi.validate_response("GET", "/assistant", 200, json.loads(raw))


def test_responses_accept_null_for_optional_properties_as_vapi_answers_them():
    """Vapi keeps a key PATCHed to null and answers it; a required property stays non-null."""
    openapi.validate_schema("Assistant", {**load_fixture("vapi_assistant.json"), "firstMessage": None, "voice": None})
    openapi.validate_response("GET", "/phone-number", 200, [{**p, "assistantId": None} for p in load_fixture("vapi_phone_numbers.json")])
    with pytest.raises(SchemaValidationError, match=r"\$\.id"):
        openapi.validate_schema("Assistant", {**load_fixture("vapi_assistant.json"), "id": None})
