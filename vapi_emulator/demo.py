"""Demo org for the emulator: a small, realistic GlobalVoice setup.

Ids and timestamps are fixed, so a restarted demo emulator serves the same documents (links made in
the Django app stay valid). Every assistant body is a valid CreateAssistantDTO (a test checks it).
"""

from __future__ import annotations

import uuid
from typing import Any

_NAMESPACE = uuid.UUID("3f7c9a52-1d4e-4b8a-9c61-0e2f5a7b8d90")


def demo_id(key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, key))


def _system(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": prompt}]


_DEEPGRAM_EN = {"provider": "deepgram", "model": "nova-2", "language": "en"}

DEMO_ASSISTANTS: dict[str, dict[str, Any]] = {
    "front-desk": {
        "name": "Riley - Front Desk",
        "firstMessage": "Thanks for calling GlobalVoice, this is Riley. How can I help you today?",
        "model": {
            "provider": "openai",
            "model": "gpt-4o",
            "temperature": 0.5,
            "maxTokens": 300,
            "messages": _system(
                "You are Riley, the friendly front-desk agent of GlobalVoice, a cloud telephony company. "
                "Answer questions about plans and billing briefly, and transfer callers who ask for sales."
            ),
            "tools": [
                {"type": "endCall"},
                {
                    "type": "transferCall",
                    "destinations": [
                        {"type": "number", "number": "+19724741424", "description": "Sales line", "message": "Connecting you to sales now."}
                    ],
                },
            ],
        },
        "voice": {"provider": "vapi", "voiceId": "Elliot"},
        "transcriber": _DEEPGRAM_EN,
        "endCallMessage": "Thanks for calling GlobalVoice. Goodbye!",
        "endCallPhrases": ["goodbye", "talk to you later"],
        "maxDurationSeconds": 900,
        "analysisPlan": {"summaryPlan": {"enabled": True}, "successEvaluationPlan": {"enabled": True, "rubric": "PassFail"}},
        "artifactPlan": {"recordingEnabled": True},
        "metadata": {"team": "support", "region": "us-central"},
        "createdAt": "2025-01-14T16:02:11.482Z",
        "updatedAt": "2025-03-02T09:41:27.115Z",
    },
    "sales": {
        "name": "Sales Qualifier",
        "firstMessage": "Hi! I'm Morgan from GlobalVoice sales. Do you have a minute to talk about your phone setup?",
        "model": {
            "provider": "openai",
            "model": "gpt-4o",
            "temperature": 0.7,
            "messages": _system(
                "You qualify inbound sales leads for GlobalVoice. Ask for company size, current provider and "
                "monthly call volume, then book a demo with the lookup_availability tool."
            ),
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "lookup_availability",
                        "description": "Find open demo slots for the next 7 days.",
                        "parameters": {
                            "type": "object",
                            "properties": {"timezone": {"type": "string", "description": "IANA timezone of the caller"}},
                            "required": ["timezone"],
                        },
                    },
                    "server": {"url": "https://hooks.globalvoice.example/vapi/tools"},
                },
                {"type": "endCall"},
            ],
        },
        "voice": {"provider": "11labs", "voiceId": "21m00Tcm4TlvDq8ikWAM", "stability": 0.5, "similarityBoost": 0.75},
        "transcriber": _DEEPGRAM_EN,
        "voicemailMessage": "Hi, this is Morgan from GlobalVoice. Sorry we missed you - we'll try again tomorrow.",
        "analysisPlan": {"summaryPlan": {"enabled": True}, "structuredDataPlan": {"enabled": True}},
        "metadata": {"team": "sales", "crm": "hubspot"},
        "createdAt": "2025-02-03T11:20:45.903Z",
        "updatedAt": "2025-02-20T18:05:02.377Z",
    },
    "scheduler-es": {
        "name": "Agenda de Citas (ES)",
        "firstMessage": "Hola, gracias por llamar a GlobalVoice. ¿En qué puedo ayudarle?",
        "model": {
            "provider": "openai",
            "model": "gpt-4o",
            "temperature": 0.4,
            "messages": _system("Eres la asistente de citas de GlobalVoice. Habla en español y confirma fecha y hora."),
        },
        "voice": {"provider": "azure", "voiceId": "es-MX-DaliaNeural"},
        "transcriber": {"provider": "deepgram", "model": "nova-2", "language": "es"},
        "metadata": {"team": "support", "language": "es"},
        "createdAt": "2025-03-10T08:15:00.000Z",
        "updatedAt": "2025-03-10T08:15:00.000Z",
    },
    "after-hours": {
        "name": "After-hours Voicemail",
        "firstMessage": "You've reached GlobalVoice after hours. Please leave your name, number and a short message.",
        "firstMessageMode": "assistant-speaks-first",
        "model": {
            "provider": "openai",
            "model": "gpt-4o",
            "temperature": 0.2,
            "messages": _system("Take a message: collect the caller's name, callback number and reason, then end the call."),
            "tools": [{"type": "endCall"}],
        },
        "voice": {"provider": "vapi", "voiceId": "Kylie"},
        "transcriber": _DEEPGRAM_EN,
        "maxDurationSeconds": 300,
        "metadata": {"team": "support", "hours": "after"},
        "createdAt": "2025-04-22T21:47:33.019Z",
        "updatedAt": "2025-04-22T21:47:33.019Z",
    },
}

# (key, fields, key of the assistant answering it or None)
DEMO_PHONE_NUMBERS: list[tuple[str, dict[str, Any], str | None]] = [
    (
        "main-line",
        {
            "provider": "vapi",
            "number": "+16826269224",
            "name": "Main Line (DFW)",
            "numberDesiredAreaCode": "682",
            "createdAt": "2025-01-14T16:10:02.250Z",
            "updatedAt": "2025-03-02T09:45:10.004Z",
        },
        "front-desk",
    ),
    (
        "sales-line",
        {
            "provider": "twilio",
            "number": "+19724741424",
            "name": "Sales Line",
            "twilioAccountSid": "AC3f2b6c0d9e8a7b6c5d4e3f2a1b0c9d8e",
            "twilioAuthToken": "demo-twilio-auth-token-not-a-secret",
            "createdAt": "2025-02-03T11:31:19.664Z",
            "updatedAt": "2025-02-03T11:31:19.664Z",
        },
        "sales",
    ),
    (
        "spare",
        {
            "provider": "byo-phone-number",
            "number": "+14155550123",
            "name": "Spare (unassigned)",
            "credentialId": demo_id("credential/byo-sip-trunk"),
            "createdAt": "2025-05-05T14:00:00.000Z",
            "updatedAt": "2025-05-05T14:00:00.000Z",
        },
        None,
    ),
]


def load_demo(emulator: Any) -> None:
    """Insert the demo assistants and phone numbers into `emulator` (a VapiEmulator)."""
    for key, fields in DEMO_ASSISTANTS.items():
        emulator.add_assistant(id=demo_id(f"assistant/{key}"), **fields)
    for key, fields, assistant in DEMO_PHONE_NUMBERS:
        link = {"assistantId": demo_id(f"assistant/{assistant}")} if assistant else {}
        emulator.add_phone_number(id=demo_id(f"phone-number/{key}"), **fields, **link)
