"""A JSON parser that keeps numbers exact and rejects non-standard constants."""

import json
from decimal import Decimal

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON; send finite numbers only")


class StrictJSONParser(JSONParser):
    """Parse JSON with decimal numbers and without NaN or Infinity.

    Floats become Decimal built from the number's own text, so 0.1 stays 0.1 and
    19.999999999999998 is stored as written. Python's json module accepts NaN and Infinity
    literals by default; they are rejected here because JSON has no such values.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", "utf-8")
        try:
            text = stream.read().decode(encoding)
            return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"Request body is not valid JSON: {exc}") from exc
