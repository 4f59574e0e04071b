"""JSON bodies under /api/: a document nested too deeply is a 400, never a 500.

Python's decoder raises RecursionError on very deep documents, and shallower ones that it does
parse (a few thousand levels) still break later: SQLite's JSON functions stop at 1000 levels,
encoders and tree walks recurse. No request of this API, nor any Vapi server message, comes near
MAX_JSON_DEPTH.
"""

import json

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 100
TOO_DEEP = f"JSON parse error - the document is nested too deeply (more than {MAX_JSON_DEPTH} levels)."


class JSONTooDeep(ValueError):
    pass


def json_depth_check(value, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise JSONTooDeep when `value` (parsed JSON) nests arrays/objects more than `limit` levels.
    Iterative, so it cannot itself run out of stack."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            raise JSONTooDeep(TOO_DEEP)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def json_loads_bounded(data: bytes | str, **kwargs):
    """json.loads that raises JSONTooDeep (a ValueError) for documents nested too deeply."""
    try:
        value = json.loads(data, **kwargs)
    except RecursionError:
        raise JSONTooDeep(TOO_DEEP) from None
    json_depth_check(value)
    return value


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, where a document nested too deeply is a 400 rather than a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            value = super().parse(stream, media_type, parser_context)
            json_depth_check(value)
        except (RecursionError, JSONTooDeep):
            raise ParseError(TOO_DEEP) from None
        return value
