"""Text that may be stored and sent on: no control characters.

NUL cannot be stored by PostgreSQL at all, and the other control characters in a name or an id are
never meant; they arrive from broken clients or probes and must be a field error, not a database
error. Multi-line text (a prompt) keeps tabs and line breaks.
"""

import unicodedata

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

_LINE_BREAKS = frozenset("\t\n\r")


def _first_control(value: str, allowed: frozenset[str]) -> str | None:
    for char in value:
        if char not in allowed and unicodedata.category(char) == "Cc":
            return char
    return None


@deconstructible
class NoControlCharacters:
    """Refuses control characters (U+0000–U+001F, U+007F–U+009F); `multiline` keeps tab, CR and LF."""

    def __init__(self, multiline: bool = False):
        self.multiline = multiline

    def __call__(self, value):
        if not isinstance(value, str):
            return
        char = _first_control(value, _LINE_BREAKS if self.multiline else frozenset())
        if char is not None:
            raise ValidationError(
                f"Remove the control character U+{ord(char):04X}: it cannot be stored"
                + (" (only tab and line breaks are allowed)." if self.multiline else " in a single-line value."),
                code="control_character",
            )

    def __eq__(self, other):
        return isinstance(other, NoControlCharacters) and other.multiline == self.multiline


single_line = NoControlCharacters()
multi_line = NoControlCharacters(multiline=True)
