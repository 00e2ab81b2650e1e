"""The OpenAPI schema renders, and drf-spectacular reports no warnings while building it."""

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_schema_endpoint_renders(api_client):
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/predictions", "/api/v1/predictions/batch", "/api/v1/events"} <= set(paths)


def test_schema_has_no_generator_warnings(tmp_path):
    # --fail-on-warn raises SchemaGenerationError on any warning, such as an unresolved field.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))

    assert (tmp_path / "schema.yml").stat().st_size > 0


def test_schema_describes_amount_formats(api_client):
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    amount = response.json()["components"]["schemas"]["PredictionRequestRequest"]["properties"]["amount"]
    number_forms = [form for form in amount["oneOf"] if form["type"] == "number"]
    assert len(number_forms) == 1
    assert number_forms[0]["maximum"] == 10**12
    assert number_forms[0]["exclusiveMaximum"] is True
