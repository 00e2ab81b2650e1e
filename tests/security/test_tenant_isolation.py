"""Tenant isolation: nothing one business sends ever shows up in another business's outputs.

Two businesses share supplier names, expense ids and a category. The second one also has
categories, descriptions, departments, dates and amounts that the first never uses, each
carrying a marker. Every output for the first business is checked for those markers:
predictions (single, batch and the admin's "try a prediction"), events and their conflicts,
override rules, the admin's lookups browser, rule preview and event inbox, and error messages.
Tests that read the lookup store run on the SQL store and on the DynamoDB store under moto.
"""

import datetime
import json

import pytest
from django.urls import reverse
from moto import mock_aws

from lookup.models import ExpenseEvent, OverrideRule
from lookup.stores import get_lookup_store
from mlops import services as mlops_services
from mlops.models import TrainingRun
from tests.categorisation.conftest import seed_events  # noqa: F401 (fixture)
from tests.factories import created_event, deleted_event, expense_payload, updated_event
from tests.lookup.contract.conftest import _dynamodb_store, offline_aws_credentials  # noqa: F401 (fixture)
from tests.lookup.test_rules_admin import ADD_URL, form_data

pytestmark = pytest.mark.django_db

B1 = "bakery-one"
B2 = "bakery-two"
PREDICTIONS_URL = "/api/v1/predictions"
BATCH_URL = "/api/v1/predictions/batch"
EVENTS_URL = "/api/v1/events"
BROWSER_URL = reverse("admin:lookup_lookupexpense_browse")
INBOX_URL = reverse("admin:lookup_expenseevent_changelist")
RULES_URL = reverse("admin:lookup_overriderule_changelist")
TRY_PREDICTION_URL = reverse("admin:categorisation_try_prediction")

SHARED_SUPPLIER = "Harbour Fish Market"
SHARED_CAFE = "Blue Heron Cafe"
B1_CATEGORY = "Cost of goods sold"
SHARED_CATEGORY = "Meals"
B2_CATEGORY = "B2-SECRET Consulting"
B2_SUPPLIER = "B2-SECRET Supplier Ltd"
# Text that only the second business's data contains: its id, its marked fields, its dates
# (May 2023, while the first business's expenses are from March 2024) and its amount.
B2_MARKERS = (B2, "B2-SECRET", "2023-05-", "777.77")


def b1_events() -> list[dict]:
    """Three expenses of the first business: two of the shared supplier and one of the shared cafe."""
    common = {"business_id": B1, "department": "Kitchen", "amount": "82.10"}
    return [
        created_event(
            event_id="b1-evt-1",
            expense_id="exp-1",
            supplier=SHARED_SUPPLIER,
            category=B1_CATEGORY,
            date="2024-03-01",
            **common,
        ),
        created_event(
            event_id="b1-evt-2",
            expense_id="exp-2",
            supplier=SHARED_CAFE,
            category=SHARED_CATEGORY,
            date="2024-03-02",
            **common,
        ),
        created_event(
            event_id="b1-evt-3",
            expense_id="exp-3",
            supplier=SHARED_SUPPLIER,
            category=B1_CATEGORY,
            date="2024-03-03",
            **common,
        ),
    ]


def b2_events() -> list[dict]:
    """Five expenses of the second business; the first three reuse the first business's expense ids."""
    common = {
        "business_id": B2,
        "description": "B2-SECRET-DESCRIPTION",
        "department": "B2-SECRET-DEPARTMENT",
        "merchant_category": "B2-SECRET-MCC",
        "amount": "777.77",
    }
    rows = [
        ("exp-1", SHARED_SUPPLIER, B2_CATEGORY, "2023-05-01"),
        ("exp-2", SHARED_CAFE, SHARED_CATEGORY, "2023-05-02"),
        ("exp-3", SHARED_SUPPLIER, B2_CATEGORY, "2023-05-03"),
        ("exp-4", B2_SUPPLIER, B2_CATEGORY, "2023-05-04"),
        ("exp-5", "Northern Rail", "B2-SECRET Travel", "2023-05-05"),
    ]
    return [
        created_event(
            event_id=f"b2-evt-{number}", expense_id=expense_id, supplier=supplier, category=category, date=day, **common
        )
        for number, (expense_id, supplier, category, day) in enumerate(rows, start=1)
    ]


def assert_no_b2_data(text: str) -> None:
    for marker in B2_MARKERS:
        assert marker not in text


@pytest.fixture(params=["sql", "dynamodb-moto"])
def lookup_store(request, settings):
    """The configured lookup store, empty: the SQL store, or the DynamoDB store on a moto table."""
    if request.param == "sql":
        settings.LOOKUP_STORE = "sql"
        get_lookup_store.cache_clear()
        yield get_lookup_store()
        return

    request.getfixturevalue("offline_aws_credentials")
    with mock_aws():
        table_store = _dynamodb_store()
        settings.LOOKUP_STORE = "dynamodb"
        settings.DYNAMODB_TABLE = table_store.table_name
        settings.AWS_REGION = table_store.region
        get_lookup_store.cache_clear()
        yield get_lookup_store()


@pytest.fixture
def two_businesses(lookup_store, send_events):
    """Send both businesses' events through the API and apply them to the store."""
    for events in (b1_events(), b2_events()):
        response = send_events(events)
        assert response.status_code == 202, response.content
    return lookup_store


def predict(api_client, **fields) -> dict:
    response = api_client.post(PREDICTIONS_URL, expense_payload(**fields), format="json")
    assert response.status_code == 200, response.content
    return response.json()


def evidence_of(candidate: dict) -> list[tuple[str, str]]:
    return [(item["expense_id"], item["date"]) for item in candidate["evidence"]["expenses"]]


# Predictions


def test_prediction_uses_own_lookup_rows(api_client, two_businesses):
    body = predict(api_client, business_id=B1, supplier=SHARED_SUPPLIER, date="2024-04-01")

    [candidate] = body["categories"]
    assert candidate["category"] == B1_CATEGORY
    assert candidate["source"] == "lookup"
    assert evidence_of(candidate) == [("exp-3", "2024-03-03"), ("exp-1", "2024-03-01")]
    assert body["degraded"] == ["model"]
    assert_no_b2_data(json.dumps(body))


@pytest.mark.parametrize("supplier", [B2_SUPPLIER, "Northern Rail"])
def test_prediction_ignores_other_business_suppliers(api_client, two_businesses, supplier):
    body = predict(api_client, business_id=B1, supplier=supplier)

    assert body["categories"] == []
    assert body["degraded"] == ["model"]
    assert_no_b2_data(json.dumps(body))


def test_other_business_still_sees_its_rows(api_client, two_businesses):
    body = predict(api_client, business_id=B2, supplier=SHARED_SUPPLIER, date="2023-06-01")

    [candidate] = body["categories"]
    assert candidate["category"] == B2_CATEGORY
    assert evidence_of(candidate) == [("exp-3", "2023-05-03"), ("exp-1", "2023-05-01")]


def test_batch_keeps_businesses_apart(api_client, two_businesses):
    expenses = [
        expense_payload(business_id=B1, supplier=SHARED_SUPPLIER),
        expense_payload(business_id=B2, supplier=SHARED_SUPPLIER),
        expense_payload(business_id=B1, supplier=SHARED_CAFE),
        expense_payload(business_id=B2, supplier=SHARED_CAFE),
        expense_payload(business_id=B1, supplier=B2_SUPPLIER),
    ]

    response = api_client.post(BATCH_URL, {"expenses": expenses}, format="json")

    assert response.status_code == 200, response.content
    b1_fish, b2_fish, b1_cafe, b2_cafe, b1_unknown = response.json()["predictions"]
    assert [candidate["category"] for candidate in b1_fish["categories"]] == [B1_CATEGORY]
    assert evidence_of(b1_fish["categories"][0]) == [("exp-3", "2024-03-03"), ("exp-1", "2024-03-01")]
    assert [candidate["category"] for candidate in b2_fish["categories"]] == [B2_CATEGORY]
    assert evidence_of(b1_cafe["categories"][0]) == [("exp-2", "2024-03-02")]
    assert evidence_of(b2_cafe["categories"][0]) == [("exp-2", "2023-05-02")]
    assert b1_unknown["categories"] == []
    for prediction in (b1_fish, b1_cafe, b1_unknown):
        assert_no_b2_data(json.dumps(prediction))


def test_degraded_names_sources_only(api_client, two_businesses, monkeypatch):
    def failing_read(self, **kwargs):
        raise RuntimeError(f"store failed while reading {B2} B2-SECRET-DESCRIPTION")

    monkeypatch.setattr(type(two_businesses), "similar_expenses", failing_read)

    body = predict(api_client, business_id=B1, supplier=SHARED_SUPPLIER)

    assert body["degraded"] == ["lookup", "model"]
    assert body["categories"] == []
    assert_no_b2_data(json.dumps(body))


# Override rules


@pytest.fixture
def b2_rules(db):
    """Rules of the second business: one on the shared supplier, one regular expression matching any supplier."""
    return [
        OverrideRule.objects.create(
            business_id=B2,
            supplier_match=OverrideRule.Match.CONTAINS,
            supplier_value="Harbour Fish",
            category="B2-SECRET Rule category",
            priority=100,
        ),
        OverrideRule.objects.create(
            business_id=B2,
            supplier_match=OverrideRule.Match.REGEX,
            supplier_value=".",
            category="B2-SECRET Catch-all",
            priority=50,
        ),
    ]


def test_other_business_rule_never_fires(api_client, two_businesses, b2_rules):
    body = predict(api_client, business_id=B1, supplier=SHARED_SUPPLIER)

    assert [candidate["source"] for candidate in body["categories"]] == ["lookup"]
    assert body["categories"][0]["category"] == B1_CATEGORY
    assert_no_b2_data(json.dumps(body))


def test_batch_applies_each_business_rules(api_client, two_businesses, b2_rules):
    expenses = [
        expense_payload(business_id=B2, supplier=SHARED_SUPPLIER),
        expense_payload(business_id=B1, supplier=SHARED_SUPPLIER),
        expense_payload(business_id=B1, supplier="Anything Else"),
    ]

    response = api_client.post(BATCH_URL, {"expenses": expenses}, format="json")

    b2_fish, b1_fish, b1_other = response.json()["predictions"]
    assert b2_fish["categories"][0]["evidence"] == {"rule_id": b2_rules[0].pk}
    assert [candidate["source"] for candidate in b1_fish["categories"]] == ["lookup"]
    assert b1_other["categories"] == []
    assert_no_b2_data(json.dumps([b1_fish, b1_other]))


def test_global_rule_fires_for_both(api_client, two_businesses):
    rule = OverrideRule.objects.create(
        business_id="", supplier_match=OverrideRule.Match.CONTAINS, supplier_value="Harbour Fish", category="Global"
    )

    for business_id in (B1, B2):
        body = predict(api_client, business_id=business_id, supplier=SHARED_SUPPLIER)
        assert body["categories"][0]["evidence"] == {"rule_id": rule.pk}


# Events


def test_other_business_update_leaves_expense_alone(api_client, two_businesses, send_events):
    event = updated_event(business_id=B2, expense_id="exp-1", version=9, supplier="Changed", category="B2-SECRET New")

    assert send_events([event]).status_code == 202

    b1_expense = two_businesses.get_expense(business_id=B1, expense_id="exp-1")
    b2_expense = two_businesses.get_expense(business_id=B2, expense_id="exp-1")
    assert (b1_expense.version, b1_expense.category, b1_expense.supplier) == (1, B1_CATEGORY, SHARED_SUPPLIER)
    assert (b2_expense.version, b2_expense.category) == (9, "B2-SECRET New")


def test_other_business_delete_leaves_expense_alone(api_client, two_businesses, send_events):
    response = send_events([deleted_event(business_id=B2, expense_id="exp-1", version=2)])

    assert response.status_code == 202
    assert two_businesses.get_expense(business_id=B2, expense_id="exp-1").deleted is True
    b1_expense = two_businesses.get_expense(business_id=B1, expense_id="exp-1")
    assert b1_expense.deleted is False
    assert b1_expense.category == B1_CATEGORY
    body = predict(api_client, business_id=B1, supplier=SHARED_SUPPLIER)
    assert evidence_of(body["categories"][0]) == [("exp-3", "2024-03-03"), ("exp-1", "2024-03-01")]


def test_conflict_does_not_echo_other_payload(api_client, two_businesses):
    # The first business reuses an event_id the second one sent, with its own payload.
    [reused] = [event for event in b1_events() if event["event_id"] == "b1-evt-1"]
    reused["event_id"] = "b2-evt-1"

    response = api_client.post(EVENTS_URL, [reused], format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert "b2-evt-1" in response.json()["error"]["message"]
    assert_no_b2_data(response.content.decode())
    stored = ExpenseEvent.objects.get(event_id="b2-evt-1")
    assert stored.business_id == B2
    assert stored.payload["expense"]["description"] == "B2-SECRET-DESCRIPTION"


def test_conflict_stores_nothing_of_request(api_client, two_businesses):
    fresh = created_event(event_id="b1-evt-new", business_id=B1, expense_id="exp-9")
    reused = created_event(event_id="b2-evt-2", business_id=B1, expense_id="exp-2")

    response = api_client.post(EVENTS_URL, [fresh, reused], format="json")

    assert response.status_code == 409
    assert not ExpenseEvent.objects.filter(event_id="b1-evt-new").exists()
    assert two_businesses.get_expense(business_id=B1, expense_id="exp-9") is None


# Error messages


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        (PREDICTIONS_URL, expense_payload(business_id=B1, supplier=SHARED_SUPPLIER, amount="1,234.56"), "amount"),
        (
            BATCH_URL,
            {"expenses": [expense_payload(business_id=B1), expense_payload(business_id=B1, currency="XXQ")]},
            "expenses.1.currency",
        ),
        (
            EVENTS_URL,
            [created_event(business_id=B1, expense_id="exp-1", supplier=SHARED_SUPPLIER, date="01/03/2024")],
            "0.expense.date",
        ),
        (EVENTS_URL, [deleted_event(business_id=B1, expense_id="exp-2", version=0)], "0.expense.version"),
    ],
)
def test_validation_error_shows_own_values_only(api_client, two_businesses, url, body, field):
    response = api_client.post(url, body, format="json")

    assert response.status_code == 400
    fields = {entry["field"] for entry in response.json()["error"]["fields"]}
    assert field in fields
    assert_no_b2_data(response.content.decode())


# Admin pages


def test_browser_lists_own_rows_only(admin_client, two_businesses):
    response = admin_client.get(BROWSER_URL, {"business_id": B1})

    rows = response.context["rows"]
    assert {row["expense"].business_id for row in rows} == {B1}
    assert {row["expense"].expense_id for row in rows} == {"exp-1", "exp-2", "exp-3"}
    b1_event_pks = set(ExpenseEvent.objects.filter(business_id=B1).values_list("pk", flat=True))
    assert {row["event_url"] for row in rows} == {
        reverse("admin:lookup_expenseevent_change", args=[pk]) for pk in b1_event_pks
    }
    assert_no_b2_data(response.content.decode())


def test_browser_supplier_summary_counts_own_rows(admin_client, two_businesses):
    response = admin_client.get(BROWSER_URL, {"business_id": B1, "supplier": SHARED_SUPPLIER})

    summary = response.context["summary"]
    assert summary.categories == [(B1_CATEGORY, 2)]
    assert summary.expenses_read == 2
    assert summary.latest_date == datetime.date(2024, 3, 3)
    assert_no_b2_data(response.content.decode())


def test_rule_preview_counts_own_expenses(admin_client, two_businesses, b2_rules):
    data = form_data(business_id=B1, supplier_value="Harbour Fish", category=SHARED_CATEGORY, _preview="Preview")

    response = admin_client.post(ADD_URL, data)

    preview = response.context["rule_preview"]
    assert preview["error"] is None
    assert preview["conflicts"] == []
    assert preview["result"].scanned == 3
    assert preview["result"].matched == 2
    assert preview["result"].would_change == 2
    assert {(expense.business_id, expense.date) for expense in preview["result"].examples} == {
        (B1, datetime.date(2024, 3, 1)),
        (B1, datetime.date(2024, 3, 3)),
    }
    assert_no_b2_data(response.content.decode())


def test_try_prediction_shows_own_data(admin_client, two_businesses, b2_rules):
    fields = expense_payload(business_id=B1, supplier=SHARED_SUPPLIER)

    response = admin_client.post(TRY_PREDICTION_URL, fields)

    assert [candidate["category"] for candidate in response.context["candidates"]] == [B1_CATEGORY]
    assert_no_b2_data(response.content.decode())


def test_inbox_business_filter_lists_own_events(admin_client, two_businesses):
    response = admin_client.get(INBOX_URL, {"business_id": B1})

    listed = {event.event_id for event in response.context["cl"].result_list}
    assert listed == {"b1-evt-1", "b1-evt-2", "b1-evt-3"}
    assert_no_b2_data(response.content.decode())


@pytest.mark.parametrize(
    "url",
    [INBOX_URL, RULES_URL, reverse("admin:lookup_lookupexpense_changelist")],
    ids=["events", "rules", "lookup-rows"],
)
def test_admin_search_matches_business_case(admin_client, send_events, url):
    # Business ids are case-sensitive in both stores, so a search for one never lists another
    # business whose id differs only in case.
    upper = B1.upper()
    send_events([created_event(event_id="upper-evt", business_id=upper, expense_id="exp-1", category="Upper")])
    send_events([created_event(event_id="lower-evt", business_id=B1, expense_id="exp-1", category="Lower")])
    OverrideRule.objects.create(business_id=upper, supplier_value="x", category="Upper")
    OverrideRule.objects.create(business_id=B1, supplier_value="x", category="Lower")

    response = admin_client.get(url, {"q": B1})

    listed = response.context["cl"].result_list
    assert {row.business_id for row in listed} == {B1}


# The model


@pytest.fixture
def two_business_model(seed_events):  # noqa: F811 (fixture imported above)
    """Train and activate a model on both businesses: each with 12 expenses of two categories."""
    start = datetime.date(2024, 1, 1)
    categories = {
        B1: {SHARED_CATEGORY: SHARED_CAFE, B1_CATEGORY: "Corner Deli"},
        B2: {SHARED_CATEGORY: "Noodle Bar", B2_CATEGORY: B2_SUPPLIER},
    }
    events = []
    for business_id, suppliers in categories.items():
        for category, supplier in suppliers.items():
            for number in range(12):
                events.append(
                    created_event(
                        business_id=business_id,
                        supplier=supplier,
                        description=f"{category} purchase",
                        merchant_category=category.lower(),
                        category=category,
                        date=(start + datetime.timedelta(days=number * 7)).isoformat(),
                    )
                )
    seed_events(events)
    run = TrainingRun.objects.create(activate=True)

    version = mlops_services.run_training(run_id=run.pk)

    assert version is not None, TrainingRun.objects.get(pk=run.pk).error
    return version.version


def test_model_keeps_to_business_categories(api_client, two_business_model):
    # The supplier, description and merchant category all point at the second business's category.
    fields = {"supplier": B2_SUPPLIER, "description": f"{B2_CATEGORY} purchase", "top_k": 20}
    b1_body = predict(api_client, business_id=B1, merchant_category=B2_CATEGORY.lower(), **fields)
    b2_body = predict(api_client, business_id=B2, **fields)

    assert b1_body["model_version"] == two_business_model
    assert {candidate["category"] for candidate in b1_body["categories"]} == {SHARED_CATEGORY, B1_CATEGORY}
    assert b2_body["categories"][0]["category"] == B2_CATEGORY
    assert_no_b2_data(json.dumps(b1_body["categories"]))
