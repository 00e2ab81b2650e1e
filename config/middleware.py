"""Middleware that rejects oversized request bodies before anything reads them."""

from django.conf import settings
from django.http import JsonResponse


class RequestSizeLimitMiddleware:
    """Answer a JSON 413 when the declared body size exceeds MAX_REQUEST_BODY_BYTES.

    A body sent with Transfer-Encoding (chunked) and no Content-Length gets a JSON 400 before
    anything reads it. Django's WSGIRequest reads no body without a Content-Length, so such a
    request would otherwise arrive empty and fail with misleading "field is required" errors.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.META.get("HTTP_TRANSFER_ENCODING") and not request.META.get("CONTENT_LENGTH"):
            return length_required_response(request.META["HTTP_TRANSFER_ENCODING"])
        declared = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(declared)
        except ValueError:
            length = 0
        if length > settings.MAX_REQUEST_BODY_BYTES:
            return payload_too_large_response(length)
        return self.get_response(request)


def length_required_response(transfer_encoding: str) -> JsonResponse:
    limit = settings.MAX_REQUEST_BODY_BYTES
    body = {
        "error": {
            "code": "length_required",
            "message": f"Request bodies sent with Transfer-Encoding {transfer_encoding[:50]!r} are not read; "
            f"send the body with a Content-Length header, at most {limit} bytes.",
            "fields": [],
        }
    }
    return JsonResponse(body, status=400)


def payload_too_large_response(length: int | None) -> JsonResponse:
    return JsonResponse(payload_too_large_body(length), status=413)


def payload_too_large_body(length: int | None) -> dict:
    limit = settings.MAX_REQUEST_BODY_BYTES
    received = f"{length} bytes" if length else "more than the limit"
    return {
        "error": {
            "code": "payload_too_large",
            "message": f"Request body is too large ({received}); the maximum is {limit} bytes. "
            "Split a batch into smaller requests.",
            "fields": [],
        }
    }
