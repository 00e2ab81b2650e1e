"""categorisation.services: predictions from rules, the lookup and the model, and degraded sources."""

import pytest
from django.db import DatabaseError

from categorisation import policy
from categorisation.services import predict_expenses
from lookup import selectors
from lookup.models import OverrideRule
from lookup.serializer_fields import ExpenseFieldsSerializer
from lookup.stores import LookupStoreUnavailable
from lookup.stores.sql import SqlLookupStore
from tests.factories import created_event, expense_payload

pytestmark = pytest.mark.django_db

URL = "/api/v1/predictions"


def predict(top_k=5, **fields):
    serializer = ExpenseFieldsSerializer(data=expense_payload(**fields))
    serializer.is_valid(raise_exception=True)
    [prediction] = predict_expenses(expenses=[dict(serializer.validated_data)], top_k=top_k)
    return prediction


def seed_blue_heron(seed_events, count=2, category="Meals", **fields):
    seed_events([created_event(supplier="Blue Heron Cafe", category=category, **fields) for _ in range(count)])


def test_prediction_rule_first_then_lookup(seed_events, active_model):
    seed_blue_heron(seed_events)
    OverrideRule.objects.create(supplier_value="blue heron", category="Entertainment")

    prediction = predict(top_k=10)

    sources = [candidate.source for candidate in prediction.categories]
    assert sources[:2] == ["rule", "lookup"]
    assert set(sources[2:]) == {"model"}
    assert prediction.categories[0].category == "Entertainment"
    assert prediction.categories[1].category == "Meals"


def test_prediction_first_expense_of_new_supplier(seed_events, active_model):
    # The model never saw "Blue Heron Cafe" or "Entertainment"; one past expense is enough.
    seed_blue_heron(seed_events, count=1, category="Entertainment")

    prediction = predict()

    assert prediction.categories[0].category == "Entertainment"
    assert prediction.categories[0].source == "lookup"
    assert prediction.categories[0].evidence["agreeing"] == 1
    assert 0.0 <= prediction.categories[0].confidence <= 1.0


def test_prediction_lookup_agreeing_history_first(seed_events, active_model):
    seed_blue_heron(seed_events, category="Travel")

    prediction = predict()

    assert prediction.categories[0].source == "lookup"
    assert prediction.categories[0].category == "Travel"
    assert prediction.model_version == active_model


def test_prediction_categories_unique(seed_events, active_model):
    seed_blue_heron(seed_events, category="Meals")

    prediction = predict(top_k=10)

    categories = [candidate.category for candidate in prediction.categories]
    assert len(categories) == len(set(categories))


def test_prediction_evidence_on_every_candidate(seed_events, active_model):
    seed_blue_heron(seed_events)
    rule = OverrideRule.objects.create(supplier_value="blue heron", category="Entertainment")

    prediction = predict(top_k=10)

    lookup_keys = {"matches", "agreeing", "generic_supplier", "corrected", "expenses"}
    expected_keys = {"rule": {"rule_id"}, "lookup": lookup_keys}
    expected_keys["model"] = {"model_version"}
    for candidate in prediction.categories:
        assert set(candidate.evidence) == expected_keys[candidate.source], candidate
    assert prediction.categories[0].evidence["rule_id"] == rule.pk


@pytest.mark.parametrize("supplier", ["SQ *BLUE HERON CAFE", "SUMUP *Blue Heron Cafe", "Blue Heron Cafe #0042"])
def test_prediction_processor_prefix_finds_lookup(seed_events, supplier):
    seed_blue_heron(seed_events)

    prediction = predict(supplier=supplier)

    assert prediction.categories[0].category == "Meals"
    assert prediction.categories[0].evidence["agreeing"] == 2


def test_prediction_bare_paypal_not_confident(seed_events):
    seed_events(
        [created_event(supplier="PAYPAL *", description=f"Order {number}", category="Software") for number in range(5)]
    )

    prediction = predict(supplier="PAYPAL *", description="Etsy: knitting wool")

    [candidate] = prediction.categories
    assert candidate.category == "Software"
    assert candidate.confidence <= policy.GENERIC_LOOKUP_CONFIDENCE_CAP
    assert candidate.evidence["generic_supplier"] is True


def test_prediction_bare_paypal_model_ranks_first(seed_events, active_model):
    seed_events([created_event(supplier="PAYPAL *", category="Software") for _ in range(5)])

    prediction = predict(supplier="PAYPAL *", description="Etsy: knitting wool")

    assert prediction.categories[0].source == "model"


def test_prediction_refund_keeps_category(seed_events):
    seed_blue_heron(seed_events, amount="42.50")

    prediction = predict(amount="-42.50")

    assert prediction.categories[0].category == "Meals"


def test_prediction_refund_keeps_category_with_model(seed_events, active_model):
    seed_blue_heron(seed_events, amount="42.50", category="Entertainment")

    prediction = predict(amount="-42.50")

    assert prediction.categories[0].category == "Entertainment"


def test_prediction_refund_event_counts_for_supplier(seed_events):
    seed_blue_heron(seed_events, count=1, amount="42.50")
    seed_blue_heron(seed_events, count=1, amount="-42.50")

    prediction = predict()

    assert prediction.categories[0].evidence["agreeing"] == 2


def test_prediction_other_business_lookup_ignored(seed_events):
    seed_blue_heron(seed_events, business_id="b2")

    prediction = predict()

    assert prediction.categories == []


def test_prediction_no_model_degraded(db):
    prediction = predict()

    assert prediction.degraded == ["model"]
    assert prediction.model_version is None


def test_prediction_lookup_unavailable_degraded(seed_events, active_model, monkeypatch):
    seed_blue_heron(seed_events)

    def down(self, **kwargs):
        raise LookupStoreUnavailable("timed out")

    monkeypatch.setattr(SqlLookupStore, "similar_expenses", down)

    prediction = predict()

    assert prediction.degraded == ["lookup"]
    assert {candidate.source for candidate in prediction.categories} == {"model"}


def test_prediction_rules_unavailable_degraded(monkeypatch, seed_events):
    seed_blue_heron(seed_events)

    def broken(business_ids):
        raise DatabaseError("no such table")

    monkeypatch.setattr(selectors, "rules_for_businesses", broken)

    prediction = predict()

    assert "rules" in prediction.degraded
    assert prediction.categories[0].source == "lookup"


def test_prediction_api_sources_down_returns_200(api_client, monkeypatch):
    OverrideRule.objects.create(supplier_value="blue heron", category="Meals")

    def down(self, **kwargs):
        raise LookupStoreUnavailable("timed out")

    monkeypatch.setattr(SqlLookupStore, "similar_expenses", down)

    response = api_client.post(URL, expense_payload(), format="json")

    assert response.status_code == 200
    assert response.json()["degraded"] == ["lookup", "model"]
    assert response.json()["categories"][0]["source"] == "rule"


def test_prediction_api_batch_lookup_down(api_client, monkeypatch):
    def down(self, **kwargs):
        raise LookupStoreUnavailable("timed out")

    monkeypatch.setattr(SqlLookupStore, "similar_expenses", down)

    response = api_client.post(URL + "/batch", {"expenses": [expense_payload()] * 3}, format="json")

    assert response.status_code == 200
    assert [item["degraded"] for item in response.json()["predictions"]] == [["lookup", "model"]] * 3


def test_prediction_reflects_new_expense(api_client, send_events):
    before = api_client.post(URL, expense_payload(supplier="Quayside Books"), format="json").json()

    send_events(created_event(supplier="Quayside Books", category="Office supplies"))
    after = api_client.post(URL, expense_payload(supplier="Quayside Books"), format="json").json()

    assert before["categories"] == []
    assert after["categories"][0]["category"] == "Office supplies"
    assert after["categories"][0]["source"] == "lookup"


def test_prediction_offset_date(seed_events):
    seed_blue_heron(seed_events)

    prediction = predict(date="2024-11-13T07:40:00+10:00")

    assert prediction.categories[0].category == "Meals"


@pytest.mark.parametrize("supplier", ["7", "3M", "株式会社テスト", "🍕🍕", "Qzvx Holdings"])
def test_prediction_api_featureless_input(api_client, active_model, supplier):
    payload = expense_payload(supplier=supplier, description="", currency="XOF")

    response = api_client.post(URL, payload, format="json")

    assert response.status_code == 200
    assert response.json()["model_version"] == active_model
