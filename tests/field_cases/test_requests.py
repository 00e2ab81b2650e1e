"""Field case C18: oversized bodies get a JSON 413 or 400, never a 500 or an HTML page."""

import json

import pytest
from django.test.client import FakePayload

from lookup.models import ExpenseEvent
from tests.factories import created_event, expense_payload
from tests.support.api import error_fields

pytestmark = pytest.mark.django_db

PREDICTIONS_URL = "/api/v1/predictions"
BATCH_URL = "/api/v1/predictions/batch"
EVENTS_URL = "/api/v1/events"
THREE_MB = 3 * 1024 * 1024


class CountingPayload(FakePayload):
    """A request body that counts the bytes the server reads from it."""

    def __init__(self, content: bytes):
        super().__init__(content)
        self.bytes_read = 0

    def read(self, size=-1, /):
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def bodies_with_3mb_description() -> list[tuple[str, dict]]:
    description = "x" * THREE_MB
    return [
        (PREDICTIONS_URL, expense_payload(description=description)),
        (BATCH_URL, {"expenses": [expense_payload(description=description)]}),
        (EVENTS_URL, created_event(description=description)),
    ]


def assert_json_error(response, status: int, code: str):
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize("url, body", bodies_with_3mb_description(), ids=["prediction", "batch", "event"])
def test_c18_3mb_description_is_json_413_before_reading(api_client, url, body):
    content = json.dumps(body).encode()
    payload = CountingPayload(content)

    response = api_client.generic("POST", url, data=content, content_type="application/json", **{"wsgi.input": payload})

    assert_json_error(response, 413, "payload_too_large")
    assert f"the maximum is {2 * 1024 * 1024} bytes" in response.json()["error"]["message"]
    # The middleware returns the 413 from Content-Length alone, so memory use does not grow with the body.
    assert payload.bytes_read == 0
    assert not ExpenseEvent.objects.exists()


def test_c18_3mb_body_without_content_length_is_never_read(api_client):
    # A chunked upload has no Content-Length, and Django's WSGI request then reads no body at all.
    content = json.dumps(expense_payload(description="x" * THREE_MB)).encode()
    payload = CountingPayload(content)

    environ = {"CONTENT_LENGTH": "", "wsgi.input": payload}

    response = api_client.generic("POST", PREDICTIONS_URL, data=content, content_type="application/json", **environ)

    assert response.status_code in (400, 413), response.content[:500]
    assert response["Content-Type"] == "application/json"
    assert payload.bytes_read == 0


def test_c18_chunked_3mb_body_rejected_unread(api_client):
    # gunicorn passes a chunked body on with Transfer-Encoding and no CONTENT_LENGTH.
    content = json.dumps(expense_payload(description="x" * THREE_MB)).encode()
    payload = CountingPayload(content)
    environ = {"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": payload}

    response = api_client.generic("POST", PREDICTIONS_URL, data=content, content_type="application/json", **environ)

    assert_json_error(response, 400, "length_required")
    assert "Content-Length" in response.json()["error"]["message"]
    assert payload.bytes_read == 0


def test_c18_huge_array_in_unknown_field_of_prediction(api_client):
    response = api_client.post(PREDICTIONS_URL, expense_payload(extra=list(range(100_000))), format="json")

    assert_json_error(response, 400, "invalid")
    entry = error_fields(response)["extra"]
    assert entry["value"] == "<list of 100000 items>"
    assert entry["message"].startswith("Unknown field. Accepted fields:")


def test_c18_huge_array_in_unknown_field_of_batch_item(api_client):
    body = {"expenses": [expense_payload(), expense_payload(extra=list(range(100_000)))]}

    response = api_client.post(BATCH_URL, body, format="json")

    assert_json_error(response, 400, "invalid")
    assert error_fields(response)["expenses.1.extra"]["value"] == "<list of 100000 items>"


def test_c18_huge_array_in_unknown_field_of_event(api_client):
    response = api_client.post(EVENTS_URL, created_event(extra=list(range(100_000))), format="json")

    assert_json_error(response, 400, "invalid")
    assert error_fields(response)["expense.extra"]["value"] == "<list of 100000 items>"
    assert not ExpenseEvent.objects.exists()


def test_c18_huge_array_beside_event(api_client):
    response = api_client.post(EVENTS_URL, created_event() | {"extra": list(range(100_000))}, format="json")

    assert_json_error(response, 400, "invalid")
    assert error_fields(response)["extra"]["value"] == "<list of 100000 items>"


@pytest.mark.parametrize(
    "url, body, field",
    [
        (PREDICTIONS_URL, expense_payload(supplier="A" * 50_000), "supplier"),
        (BATCH_URL, {"expenses": [expense_payload(supplier="A" * 50_000)]}, "expenses.0.supplier"),
        (EVENTS_URL, created_event(supplier="A" * 50_000), "expense.supplier"),
    ],
    ids=["prediction", "batch", "event"],
)
def test_c18_50kb_supplier_is_json_400(api_client, url, body, field):
    response = api_client.post(url, body, format="json")

    assert_json_error(response, 400, "invalid")
    entry = error_fields(response)[field]
    assert entry["message"] == "Ensure this field has no more than 300 characters."
    # The echoed value is cut, so a 50 KB input does not come back as a 50 KB error.
    assert len(entry["value"]) < 200
    assert len(response.content) < 2_000
