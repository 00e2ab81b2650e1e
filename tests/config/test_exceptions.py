"""The JSON error shape for failures outside field validation: auth, routing, parsing, size."""

import pytest

from config.exceptions import MAX_ECHOED_VALUE_CHARS, shorten
from tests.factories import expense_payload

pytestmark = pytest.mark.django_db

URL = "/api/v1/predictions"


def post_raw(client, body):
    return client.post(URL, data=body, content_type="application/json")


def test_unknown_route_is_json_404(api_client):
    response = api_client.get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "No route for /api/v1/nothing-here.", "fields": []}
    }


def test_invalid_json_is_parse_error(api_client):
    response = post_raw(api_client, '{"business_id": ')

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert response.json()["error"]["fields"] == []


def test_invalid_utf8_is_parse_error(api_client):
    response = post_raw(api_client, b'{"supplier": "\xff\xfe"}')

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_deeply_nested_body_is_parse_error(api_client):
    response = post_raw(api_client, "[" * 100_000 + "]" * 100_000)

    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]["message"]


@pytest.mark.parametrize("escaped", ["\\ud800", "\\udfff", "x\\ud83d"])
def test_lone_surrogate_is_parse_error(api_client, escaped):
    body = '{"business_id": "b1", "supplier": "%s", "amount": "1", "currency": "GBP", "date": "2024-01-01"}'

    response = post_raw(api_client, body % escaped)

    assert response.status_code == 400
    assert "surrogate" in response.json()["error"]["message"]


def test_lone_surrogate_in_field_name_is_parse_error(api_client):
    response = post_raw(api_client, '{"colour\\ud800": 1}')

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_surrogate_pair_is_accepted(api_client):
    body = (
        '{"business_id": "b1", "supplier": "Pizza \\ud83c\\udf55", '
        '"amount": "1", "currency": "GBP", "date": "2024-01-01"}'
    )

    response = post_raw(api_client, body)

    assert response.status_code == 200, response.content


def test_form_body_is_415(api_client):
    response = api_client.post(URL, {"business_id": "b1"}, format="multipart")

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_declared_length_over_limit_is_413(api_client, settings):
    settings.MAX_REQUEST_BODY_BYTES = 2048

    response = api_client.post(URL, expense_payload(description="x" * 3000), format="json")

    assert response.status_code == 413
    assert "maximum is 2048 bytes" in response.json()["error"]["message"]


def test_413_without_authentication(client):
    response = client.post(URL, {"description": "x" * (3 * 1024 * 1024)}, content_type="application/json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_echoed_long_string_is_cut(api_client):
    response = api_client.post(URL, expense_payload(business_id="b" * 5000), format="json")

    value = response.json()["error"]["fields"][0]["value"]
    assert value.endswith("... (5000 characters)")


def test_echoed_huge_integer_is_cut(api_client):
    response = api_client.post(URL, expense_payload(top_k=10**3000), format="json")

    assert response.json()["error"]["fields"][0]["value"] == "<integer of 3001 digits>"


def test_shorten_keeps_small_values():
    assert shorten(7) == 7
    assert shorten(True) is True
    assert shorten(None) is None
    assert shorten("GBP") == "GBP"
    assert shorten(["a"]) == ["a"]


def test_shorten_cuts_long_values():
    assert len(shorten("x" * 1000)) < MAX_ECHOED_VALUE_CHARS + 30
    assert shorten({str(number): number for number in range(100)}) == "<dict of 100 items>"


def test_lone_surrogate_in_utf7_body_is_parse_error(api_client):
    # UTF-7 decodes "+2AA-" to a lone surrogate with no JSON escape in the body.
    body = '{"business_id": "b1", "supplier": "x+2AA-", "amount": "1", "currency": "GBP", "date": "2024-01-01"}'

    response = api_client.post(
        "/api/v1/predictions", data=body.encode("ascii"), content_type="application/json; charset=utf-7"
    )

    assert response.status_code == 400
    assert "surrogate" in response.json()["error"]["message"]
