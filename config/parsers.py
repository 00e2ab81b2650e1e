"""A JSON parser that keeps numbers exact and rejects non-standard constants."""

import json
import re
from decimal import Decimal

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# json.loads joins a valid surrogate pair into one code point, so any surrogate left in a
# parsed string came from a lone "\ud800"-style escape and cannot be encoded as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")
# The escapes that can leave one. A body with neither such an escape nor a decoded surrogate has
# none, so its parsed strings need no walk, which took 4 ms for a batch of 1,000 expenses.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _parse_int(text: str):
    # Python's int() raises on more than 4,300 digits, with a message about its own settings. A
    # Decimal keeps the number, so the field that reads it can reject it with the field's message.
    return int(text) if len(text) <= 100 else Decimal(text)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON; send finite numbers only")


class StrictJSONParser(JSONParser):
    """Parse JSON with decimal numbers and without NaN, Infinity or lone surrogates.

    Floats become Decimal built from the number's own text, so 0.1 stays 0.1 and
    19.999999999999998 is stored as written. Python's json module accepts NaN and Infinity
    literals by default; they are rejected here because JSON has no such values. Nesting deeper
    than the interpreter's recursion limit (about 1,000 levels) is rejected as well.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", "utf-8")
        try:
            text = stream.read().decode(encoding)
            data = json.loads(text, parse_float=Decimal, parse_int=_parse_int, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"Request body is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            message = "Request body is nested too deeply. Send objects and lists only a few levels deep."
            raise ParseError(message) from exc
        may_hold_surrogate = _SURROGATE_ESCAPE.search(text) or _SURROGATE.search(text)
        if may_hold_surrogate and _contains_lone_surrogate(data):
            raise ParseError(
                "Request body is invalid: a string contains a lone UTF-16 surrogate escape such as \\ud800. "
                "Send each character as UTF-8 or as a complete surrogate pair."
            )
        return data


def _contains_lone_surrogate(data) -> bool:
    # Iterative, so a body nested near the recursion limit cannot overflow the stack here.
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
