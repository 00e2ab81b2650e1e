"""Middleware that rejects oversized request bodies before anything reads them."""

from django.conf import settings
from django.http import JsonResponse


class RequestSizeLimitMiddleware:
    """Answer a JSON 413 when the declared body size exceeds MAX_REQUEST_BODY_BYTES.

    Bodies without a Content-Length (chunked) are still capped by Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE, which the API exception handler turns into the same 413.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        declared = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(declared)
        except ValueError:
            length = 0
        if length > settings.MAX_REQUEST_BODY_BYTES:
            return payload_too_large_response(length)
        return self.get_response(request)


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
