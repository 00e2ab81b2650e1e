"""The admin's "try a prediction" page: the API's validation, response and provenance."""

import html
import json
import re

import pytest
from django.urls import reverse

from lookup.models import OverrideRule
from tests.factories import created_event, expense_payload

pytestmark = pytest.mark.django_db

URL = reverse("admin:categorisation_try_prediction")
API_URL = "/api/v1/predictions"
PAGE_JSON = re.compile(r'<pre id="prediction-json">(.*?)</pre>', re.DOTALL)


def _page_json(response) -> dict:
    match = PAGE_JSON.search(response.content.decode())
    assert match, "the page shows no API response"
    return json.loads(html.unescape(match.group(1)))


def _without_prediction_id(body: dict) -> dict:
    return {name: value for name, value in body.items() if name != "prediction_id"}


def test_index_links_to_try_prediction(admin_client):
    content = admin_client.get(reverse("admin:index")).content.decode()

    assert f'href="{URL}"' in content


def test_form_shows_api_fields(admin_client):
    response = admin_client.get(URL)

    content = response.content.decode()
    assert response.status_code == 200
    for name in (
        "business_id",
        "supplier",
        "description",
        "amount",
        "currency",
        "date",
        "vat_amount",
        "payment_method",
        "merchant_category",
        "department",
        "top_k",
    ):
        assert f'name="{name}"' in content
    assert "prediction" not in response.context


def test_page_matches_api_with_every_source(admin_client, api_client, seed_events, active_model):
    rule = OverrideRule.objects.create(supplier_value="Blue Heron", category="Office")
    # The model never learned this category, so its candidate keeps the lookup as its source.
    seed_events(
        [
            created_event(business_id="b1", supplier="Blue Heron Cafe", category="Entertainment", date="2024-10-01"),
            created_event(business_id="b1", supplier="Blue Heron Cafe", category="Entertainment", date="2024-10-20"),
        ]
    )
    fields = expense_payload(vat_amount="0.75", payment_method="card", merchant_category="restaurants", top_k="5")

    api = api_client.post(API_URL, fields, format="json")
    page = admin_client.post(URL, fields)

    page_body = _page_json(page)
    categories = page.context["candidates"]
    sources = {candidate["source"] for candidate in categories}
    assert api.status_code == 200
    assert page.status_code == 200
    assert _without_prediction_id(page_body) == _without_prediction_id(api.json())
    assert page_body["model_version"] == active_model
    assert sources == {"rule", "lookup", "model"}
    content = page.content.decode()
    assert f'href="{reverse("admin:lookup_overriderule_change", args=[rule.pk])}"' in content
    lookup = next(candidate for candidate in categories if candidate["source"] == "lookup")
    for match in lookup["evidence"]["expenses"]:
        assert f"{match['expense_id']} ({match['date']})" in content


def test_page_matches_api_without_model(admin_client, api_client):
    OverrideRule.objects.create(supplier_match="equals", supplier_value="Alpha Rail", category="Travel")
    fields = expense_payload(supplier="Alpha Rail")

    api = api_client.post(API_URL, fields, format="json")
    page = admin_client.post(URL, fields)

    assert _without_prediction_id(_page_json(page)) == _without_prediction_id(api.json())
    assert page.context["candidates"][0]["rule_url"]


def test_blank_optional_fields_take_api_defaults(admin_client, api_client):
    fields = expense_payload(vat_amount="", payment_method="", top_k="")
    api_fields = expense_payload()

    page = admin_client.post(URL, fields)
    api = api_client.post(API_URL, api_fields, format="json")

    assert page.context["form"].errors == {}
    assert _without_prediction_id(_page_json(page)) == _without_prediction_id(api.json())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("amount", "12,50", "Invalid amount"),
        ("currency", "XXY", "ISO 4217"),
        ("date", "13/11/2024", "YYYY-MM-DD"),
        ("top_k", "99", "20"),
        ("business_id", "", "required"),
    ],
)
def test_invalid_field_error_next_to_field(admin_client, field, value, message):
    response = admin_client.post(URL, expense_payload(**{field: value}))

    errors = response.context["form"].errors
    assert response.status_code == 200
    assert list(errors) == [field]
    assert message in errors[field][0]
    assert "prediction" not in response.context
    assert 'id="prediction-json"' not in response.content.decode()


def test_page_requires_view_permission(client, django_user_model):
    staff = django_user_model.objects.create_user(username="staff", password="x", is_staff=True)
    client.force_login(staff)

    response = client.post(URL, expense_payload())

    assert response.status_code == 403


def test_page_requires_login(client):
    response = client.get(URL)

    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]
