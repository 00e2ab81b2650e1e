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


def _components(api_client) -> dict:
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    return response.json()["components"]["schemas"]


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def test_events_body_is_event_or_list(api_client):
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    body = response.json()["paths"]["/api/v1/events"]["post"]["requestBody"]["content"]["application/json"]

    events = response.json()["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[-1]]
    single, many = events["oneOf"]
    assert single == _ref("EventRequest")
    assert many == {"type": "array", "items": _ref("EventRequest"), "minItems": 1, "maxItems": 1000}


def test_event_lists_four_forms(api_client):
    components = _components(api_client)

    assert components["EventRequest"]["oneOf"] == [
        _ref("ExpenseChangedEventRequest"),
        _ref("ExpenseDeletedEventRequest"),
        _ref("EventBridgeChangedEventRequest"),
        _ref("EventBridgeDeletedEventRequest"),
    ]


def test_plain_events_pair_type_with_expense(api_client):
    components = _components(api_client)
    changed = components["ExpenseChangedEventRequest"]
    deleted = components["ExpenseDeletedEventRequest"]

    assert changed["properties"]["expense"] == _ref("EventExpenseRequest")
    assert changed["properties"]["type"] == _ref("ChangedEventTypeEnum")
    assert components["ChangedEventTypeEnum"]["enum"] == ["expense.created", "expense.updated"]
    assert deleted["properties"]["expense"] == _ref("DeletedExpenseRequest")
    assert deleted["properties"]["type"] == _ref("DeletedEventTypeEnum")
    assert components["DeletedEventTypeEnum"]["enum"] == ["expense.deleted"]
    assert changed["additionalProperties"] is False
    assert set(changed["required"]) == {"event_id", "type", "expense"}


def test_event_expense_describes_every_field(api_client):
    expense = _components(api_client)["EventExpenseRequest"]
    properties = expense["properties"]

    assert set(expense["required"]) == {
        "business_id",
        "expense_id",
        "supplier",
        "amount",
        "currency",
        "date",
        "version",
        "category",
    }
    assert set(properties) == set(expense["required"]) | {
        "description",
        "vat_amount",
        "payment_method",
        "merchant_category",
        "department",
    }
    assert expense["additionalProperties"] is False
    assert properties["version"]["minimum"] == 1
    assert properties["version"]["maximum"] == 2**62
    assert properties["date"]["pattern"].startswith("^(19|20|21)")
    assert properties["category"]["maxLength"] == 200
    assert properties["expense_id"]["maxLength"] == 100
    assert "pattern" in properties["supplier"]
    assert [form["type"] for form in properties["amount"]["oneOf"]] == ["string", "number"]


def test_deleted_expense_needs_ids_only(api_client):
    deleted = _components(api_client)["DeletedExpenseRequest"]

    assert set(deleted["required"]) == {"business_id", "expense_id", "version"}
    # Other expense fields are ignored rather than rejected, so the schema allows them.
    assert deleted.get("additionalProperties", True) is not False


def test_eventbridge_envelope_fields(api_client):
    components = _components(api_client)
    changed = components["EventBridgeChangedEventRequest"]
    deleted = components["EventBridgeDeletedEventRequest"]

    assert set(changed["required"]) == {"id", "detail-type", "detail"}
    assert changed["properties"]["detail-type"]["allOf"] == [_ref("ChangedEventTypeEnum")]
    assert changed["properties"]["detail"] == _ref("EventBridgeChangedDetailRequest")
    assert components["EventBridgeChangedDetailRequest"]["properties"]["expense"] == _ref("EventExpenseRequest")
    assert deleted["properties"]["detail-type"]["allOf"] == [_ref("DeletedEventTypeEnum")]
    assert components["EventBridgeDeletedDetailRequest"]["properties"]["expense"] == _ref("DeletedExpenseRequest")
    assert changed["additionalProperties"] is False
