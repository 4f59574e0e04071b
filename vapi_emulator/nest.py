"""Vapi's error bodies: NestJS exceptions and class-validator messages.

Vapi runs NestJS with a global ValidationPipe (whitelist + forbidNonWhitelisted), so a bad body gets
400 `{"message": [..], "error": "Bad Request", "statusCode": 400}` with one class-validator message
per failed constraint; nested fields are prefixed with their parent path ("model.temperature ...").
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from jsonschema import ValidationError
from jsonschema.exceptions import best_match

JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def error_body(status: int, message: str | list[str], error: str | None = None) -> bytes:
    """NestJS HttpException body. `error` defaults to the status phrase ("Bad Request")."""
    payload: dict[str, Any] = {"message": message, "error": error or HTTPStatus(status).phrase, "statusCode": status}
    return json.dumps(payload).encode()


def internal_error_body() -> bytes:
    # NestJS' answer to an unhandled exception carries no "error" key.
    return json.dumps({"statusCode": 500, "message": "Internal server error"}).encode()


def validation_messages(errors: list[ValidationError]) -> list[str]:
    """class-validator style messages for jsonschema errors, deduplicated, in order."""
    messages: dict[str, None] = {}
    for error in errors:
        for message in _messages(error):
            messages.setdefault(message, None)
    return list(messages)


def _messages(error: ValidationError) -> list[str]:
    path = _dotted(error.absolute_path)
    keyword = error.validator
    if keyword == "additionalProperties":
        declared = error.schema.get("properties", {})
        prefix = f"{path}." if path else ""
        return [f"{prefix}property {name} should not exist" for name in error.instance if name not in declared]
    if keyword == "required":
        declared = error.schema.get("properties", {})
        return [
            _missing_message(_join(path, name), declared.get(name, {}))
            for name in error.validator_value
            if name not in error.instance
        ]
    if keyword in ("anyOf", "oneOf"):
        return _messages(best_match(error.context)) if error.context else [f"{path} is invalid"]
    return [_constraint_message(path, error)]


def _constraint_message(path: str, error: ValidationError) -> str:
    subject = path
    parts = path.rsplit(".", 1)
    if len(parts) == 2 and parts[1].isdigit() and not isinstance(error.instance, (dict, list)):
        subject = f"each value in {parts[0]}"  # class-validator's wording for `{each: true}` checks
    value = error.validator_value
    match error.validator:
        case "type":
            return _type_message(subject, value)
        case "enum" | "const":
            options = value if isinstance(value, list) else [value]
            return f"{subject} must be one of the following values: {', '.join(str(o) for o in options if o is not None)}"
        case "maxLength":
            return f"{subject} must be shorter than or equal to {value} characters"
        case "minLength":
            return f"{subject} must be longer than or equal to {value} characters"
        case "maximum":
            return f"{subject} must not be greater than {_number(value)}"
        case "minimum":
            return f"{subject} must not be less than {_number(value)}"
        case "maxItems":
            return f"{subject} must contain no more than {value} elements"
        case "minItems":
            return f"{subject} must contain at least {value} elements"
        case "pattern":
            return f"{subject} must match /{value}/ regular expression"
        case "format" if value == "date-time":
            return f"{subject} must be a valid ISO 8601 date string"
        case "format" if value == "uuid":
            return f"{subject} must be a UUID"
    return f"{subject} is invalid"


def _missing_message(path: str, schema: dict[str, Any]) -> str:
    if isinstance(schema.get("enum"), list):
        return f"{path} must be one of the following values: {', '.join(str(o) for o in schema['enum'] if o is not None)}"
    if "type" in schema and schema["type"] != "object":
        return _type_message(path, schema["type"])
    return f"{path} should not be empty"


def _type_message(subject: str, expected: str | list[str]) -> str:
    kind = next((t for t in ([expected] if isinstance(expected, str) else expected) if t != "null"), "object")
    return {
        "string": f"{subject} must be a string",
        "number": f"{subject} must be a number conforming to the specified constraints",
        "integer": f"{subject} must be an integer number",
        "boolean": f"{subject} must be a boolean value",
        "array": f"{subject} must be an array",
    }.get(kind, f"nested property {subject} must be either object or array")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _dotted(path: Any) -> str:
    return ".".join(str(part) for part in path)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
