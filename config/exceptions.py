"""One JSON error shape for every API failure.

Every error body is {"error": {"code", "message", "fields": [{"field", "value", "message"}]}}:
`field` is a dotted path such as "expenses.3.amount", `value` is the rejected input (shortened),
and `message` says what is accepted.
"""

import logging
from decimal import Decimal

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from config.middleware import payload_too_large_body

logger = logging.getLogger(__name__)

MAX_ECHOED_VALUE_CHARS = 100
_MISSING = object()


def json_exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        return Response(payload_too_large_body(None), status=413)

    response = exception_handler(exc, context)
    if response is None:
        return None

    request = context.get("request")
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail, prefix="", data=_request_data(request))
        response.data = {
            "error": {
                "code": "invalid",
                "message": _summary(fields),
                "fields": fields,
            }
        }
        return response

    detail = getattr(exc, "detail", str(exc))
    code = getattr(detail, "code", None) or _default_code(response.status_code)
    response.data = {"error": {"code": code, "message": str(detail), "fields": []}}
    return response


def json_not_found(request, exception=None):
    return JsonResponse(
        {"error": {"code": "not_found", "message": f"No route for {request.path}.", "fields": []}},
        status=404,
    )


def json_server_error(request):
    return JsonResponse(
        {"error": {"code": "server_error", "message": "Internal error; it has been logged.", "fields": []}},
        status=500,
    )


def shorten(value):
    """Return value as it can be echoed in an error: long strings and containers are cut."""
    if isinstance(value, str) and len(value) > MAX_ECHOED_VALUE_CHARS:
        return value[:MAX_ECHOED_VALUE_CHARS] + f"... ({len(value)} characters)"
    if isinstance(value, (list, dict)):
        text = repr(value)
        if len(text) > MAX_ECHOED_VALUE_CHARS:
            return f"<{type(value).__name__} of {len(value)} items>"
        return value
    if isinstance(value, int) and not isinstance(value, bool) and len(str(value)) > MAX_ECHOED_VALUE_CHARS:
        return f"<integer of {len(str(value))} digits>"
    if isinstance(value, Decimal) and len(str(value)) > MAX_ECHOED_VALUE_CHARS:
        # The JSON parser reads integers of more than 100 digits as Decimal.
        kind = "integer" if value == value.to_integral_value() else "number"
        return f"<{kind} of {len(value.as_tuple().digits)} digits>"
    if value is None or isinstance(value, (bool, int)):
        return value
    return str(value)


def _flatten(detail, *, prefix, data):
    if isinstance(detail, dict):
        fields = []
        for key, value in detail.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            child = _child(data, key)
            if key == "non_field_errors":
                # An error about the object itself: echo the object, not a member of it.
                path = prefix or "body"
                child = data
            fields.extend(_flatten(value, prefix=path, data=child))
        return fields
    if isinstance(detail, list):
        if all(isinstance(item, (str, exceptions.ErrorDetail)) for item in detail):
            return [_field_error(prefix, data, str(item)) for item in detail]
        fields = []
        for index, item in enumerate(detail):
            if item:
                path = f"{prefix}.{index}" if prefix else str(index)
                fields.extend(_flatten(item, prefix=path, data=_child(data, index)))
        return fields
    return [_field_error(prefix, data, str(detail))]


def _field_error(path, value, message):
    entry = {"field": path or "body", "message": message}
    if value is not _MISSING:
        entry["value"] = shorten(value)
    return entry


def _child(data, key):
    if isinstance(data, dict) and not isinstance(key, int):
        return data.get(key, _MISSING)
    if isinstance(data, list) and isinstance(key, int) and key < len(data):
        return data[key]
    return _MISSING


def _request_data(request):
    if request is None:
        return _MISSING
    if request.method in ("GET", "HEAD"):
        # A query serializer's errors then echo the query parameter's value.
        return request.query_params.dict()
    try:
        return request.data
    except exceptions.APIException:
        return _MISSING


def _summary(fields):
    if not fields:
        return "Invalid request."
    first = fields[0]
    more = f" (and {len(fields) - 1} more)" if len(fields) > 1 else ""
    return f"{first['field']}: {first['message']}{more}"


def _default_code(status_code):
    return {
        status.HTTP_401_UNAUTHORIZED: "not_authenticated",
        status.HTTP_403_FORBIDDEN: "permission_denied",
        status.HTTP_404_NOT_FOUND: "not_found",
        status.HTTP_405_METHOD_NOT_ALLOWED: "method_not_allowed",
        status.HTTP_409_CONFLICT: "conflict",
        status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: "payload_too_large",
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
    }.get(status_code, "error")
