"""Readers of the API's JSON error body."""


def error_fields(response) -> dict[str, dict]:
    """Map each field path of an error response to its {"field", "value", "message"} entry."""
    return {entry["field"]: entry for entry in response.json()["error"]["fields"]}
