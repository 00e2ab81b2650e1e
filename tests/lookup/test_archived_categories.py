"""Archived categories: the API, the support admin, the selectors, and the filtering of predictions."""

import logging

import pytest
from django.contrib.admin.models import ADDITION, DELETION, LogEntry
from django.contrib.auth.models import Group, User
from django.urls import reverse
from rest_framework.test import APIClient

from categorisation import calibration, services
from categorisation.serializers import PredictionRequestSerializer
from lookup import selectors
from lookup.models import ArchivedCategory, OverrideRule
from mlops.predictors import ModelPredictions
from tests.factories import created_event, expense_payload

pytestmark = pytest.mark.django_db

URL = "/api/v1/archived-categories"
RESTORE_URL = "/api/v1/archived-categories/restore"
ADMIN_LIST_URL = reverse("admin:lookup_archivedcategory_changelist")
ADMIN_ADD_URL = reverse("admin:lookup_archivedcategory_add")


class FixedModel:
    """A predictor double that ranks the same categories for every record."""

    def __init__(self, ranked: list[tuple[str, float]]):
        self.ranked = [{"category": category, "confidence": confidence} for category, confidence in ranked]

    def predict(self, records, *, top_k):
        return ModelPredictions(model_version="fixed-1", results=[self.ranked[:top_k] for _ in records])


@pytest.fixture
def fixed_model(monkeypatch):
    def install(ranked):
        monkeypatch.setattr(services, "get_predictor", lambda: FixedModel(ranked))

    return install


def predict(**fields) -> services.Prediction:
    [prediction] = services.predict_expenses(expenses=[validated_expense(**fields)], top_k=3)
    return prediction


def validated_expense(**fields) -> dict:
    serializer = PredictionRequestSerializer(data=expense_payload(**fields))
    serializer.is_valid(raise_exception=True)
    expense = dict(serializer.validated_data)
    expense.pop("top_k")
    return expense


# The API.


def test_archive_creates_then_is_idempotent(api_client):
    first = api_client.post(URL, {"business_id": "b1", "category": "Meals & drinks/Staff"}, format="json")
    second = api_client.post(URL, {"business_id": "b1", "category": "Meals & drinks/Staff"}, format="json")

    assert first.status_code == 201, first.content
    assert second.status_code == 200, second.content
    assert first.json()["category"] == "Meals & drinks/Staff"
    assert second.json()["archived_at"] == first.json()["archived_at"]
    assert ArchivedCategory.objects.filter(business_id="b1").count() == 1


def test_list_returns_business_categories_sorted(api_client):
    for business_id, category in [("b1", "Travel"), ("b1", "Meals"), ("b2", "Software")]:
        ArchivedCategory.objects.create(business_id=business_id, category=category)

    response = api_client.get(URL, {"business_id": "b1"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["business_id"] == "b1"
    assert [row["category"] for row in body["archived_categories"]] == ["Meals", "Travel"]


def test_list_business_id_with_slash(api_client):
    ArchivedCategory.objects.create(business_id="org/b1", category="Meals")

    response = api_client.get(URL, {"business_id": "org/b1"})

    assert response.status_code == 200, response.content
    assert [row["category"] for row in response.json()["archived_categories"]] == ["Meals"]


def test_restore_removes_then_is_idempotent(api_client):
    ArchivedCategory.objects.create(business_id="b1", category="Meals")

    first = api_client.post(RESTORE_URL, {"business_id": "b1", "category": "Meals"}, format="json")
    second = api_client.post(RESTORE_URL, {"business_id": "b1", "category": "Meals"}, format="json")

    assert first.status_code == 200, first.content
    assert first.json() == {"business_id": "b1", "category": "Meals", "restored": True}
    assert second.json() == {"business_id": "b1", "category": "Meals", "restored": False}
    assert not ArchivedCategory.objects.exists()


def test_restore_leaves_other_business(api_client):
    ArchivedCategory.objects.create(business_id="b1", category="Meals")
    ArchivedCategory.objects.create(business_id="b2", category="Meals")

    api_client.post(RESTORE_URL, {"business_id": "b2", "category": "Meals"}, format="json")

    assert list(ArchivedCategory.objects.values_list("business_id", flat=True)) == ["b1"]


@pytest.mark.parametrize(
    "body, field, value",
    [
        ({"business_id": "b 1", "category": "Meals"}, "business_id", "b 1"),
        ({"business_id": "b1", "category": ""}, "category", ""),
        ({"business_id": "b1", "category": "x" * 201}, "category", "x" * 100 + "... (201 characters)"),
        ({"business_id": "b1", "category": "Meals\x00"}, "category", "Meals\x00"),
        ({"business_id": "b1", "category": 7}, "category", 7),
        ({"business_id": "b1", "category": "Meals", "note": "x"}, "note", "x"),
    ],
)
def test_archive_invalid_input_json_400(api_client, body, field, value):
    response = api_client.post(URL, body, format="json")

    assert response.status_code == 400, response.content
    [error] = response.json()["error"]["fields"]
    assert error["field"] == field
    assert error["value"] == value
    assert error["message"]
    assert not ArchivedCategory.objects.exists()


def test_archive_missing_category_named(api_client):
    response = api_client.post(URL, {"business_id": "b1"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == "category"


def test_list_invalid_business_id_echoed(api_client):
    response = api_client.get(URL, {"business_id": "b 1"})

    assert response.status_code == 400, response.content
    [error] = response.json()["error"]["fields"]
    assert error["field"] == "business_id"
    assert error["value"] == "b 1"
    assert "letters, digits" in error["message"]


def test_list_missing_business_id_rejected(api_client):
    response = api_client.get(URL)

    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == "business_id"


@pytest.mark.parametrize("method, url", [("get", URL + "?business_id=b1"), ("post", URL), ("post", RESTORE_URL)])
def test_archived_categories_need_token(method, url):
    response = getattr(APIClient(), method)(url, {"business_id": "b1", "category": "Meals"}, format="json")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


# Selectors.


def test_archived_for_businesses_one_query(django_assert_num_queries):
    ArchivedCategory.objects.create(business_id="b1", category="Meals")
    ArchivedCategory.objects.create(business_id="b2", category="Travel")

    with django_assert_num_queries(1):
        archived = selectors.archived_categories_for_businesses({"b1", "b2", "b3"})

    assert archived == {"b1": frozenset({"Meals"}), "b2": frozenset({"Travel"}), "b3": frozenset()}


def test_first_rule_not_archived_skips_to_next_rule():
    archived_rule = OverrideRule.objects.create(business_id="b1", supplier_value="heron", category="Meals", priority=2)
    next_rule = OverrideRule.objects.create(business_id="b1", supplier_value="heron", category="Travel", priority=1)
    rules = selectors.rules_for_businesses({"b1"})["b1"]

    rule, skipped = selectors.first_rule_not_archived(
        rules, expense={"supplier": "Blue Heron Cafe"}, archived=frozenset({"Meals"})
    )

    assert rule == next_rule
    assert skipped == [archived_rule]


# Predictions.


def test_prediction_drops_archived_lookup_category(send_events):
    events = [created_event(supplier="Blue Heron Cafe", category="Meals") for _ in range(3)]
    events.append(created_event(supplier="Blue Heron Cafe", category="Staff welfare"))
    assert send_events(events).status_code == 202
    ArchivedCategory.objects.create(business_id="b1", category="Meals")

    prediction = predict(supplier="Blue Heron Cafe")

    assert [candidate.category for candidate in prediction.categories] == ["Staff welfare"]
    assert prediction.categories[0].source == "lookup"


def test_prediction_drops_archived_model_category(fixed_model):
    fixed_model([("Meals", 0.8), ("Travel", 0.15), ("Software", 0.05)])
    ArchivedCategory.objects.create(business_id="b1", category="Meals")

    prediction = predict(supplier="Unknown Supplier")

    assert [candidate.category for candidate in prediction.categories] == ["Travel", "Software"]
    assert prediction.model_version == "fixed-1"


def test_prediction_every_candidate_archived_abstains(fixed_model):
    fixed_model([("Meals", 0.9), ("Travel", 0.1)])
    ArchivedCategory.objects.create(business_id="b1", category="Meals")
    ArchivedCategory.objects.create(business_id="b1", category="Travel")

    prediction = predict(supplier="Unknown Supplier")

    assert prediction.categories == []
    assert prediction.tier == calibration.ABSTAIN
    assert prediction.degraded == []


def test_prediction_archived_rule_skipped_and_logged_once(fixed_model, caplog):
    fixed_model([("Travel", 0.7), ("Meals", 0.3)])
    rule = OverrideRule.objects.create(business_id="", supplier_value="heron", category="Meals")
    ArchivedCategory.objects.create(business_id="b1", category="Meals")
    expenses = [validated_expense(supplier="Blue Heron Cafe") for _ in range(5)]

    with caplog.at_level(logging.WARNING, logger="categorisation.services"):
        predictions = services.predict_expenses(expenses=expenses, top_k=3)

    for prediction in predictions:
        assert [candidate.category for candidate in prediction.categories] == ["Travel"]
        assert prediction.categories[0].source == "model"
    skipped = [record for record in caplog.records if "is archived" in record.getMessage()]
    assert len(skipped) == 1
    assert skipped[0].rule_id == rule.pk
    assert skipped[0].business_id == "b1"


def test_prediction_archive_in_other_business_ignored(fixed_model):
    fixed_model([("Meals", 0.8), ("Travel", 0.2)])
    OverrideRule.objects.create(business_id="", supplier_value="heron", category="Meals")
    ArchivedCategory.objects.create(business_id="b2", category="Meals")

    prediction = predict(supplier="Blue Heron Cafe", business_id="b1")

    assert prediction.categories[0].category == "Meals"
    assert prediction.categories[0].source == "rule"


def test_prediction_archive_read_by_rules_source(fixed_model, monkeypatch):
    # The archived categories are read inside the "rules" source, under its timeout and breaker:
    # when that read fails, the rules source is reported degraded and the others still answer.
    fixed_model([("Meals", 0.8)])

    def fail(business_ids):
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(selectors, "archived_categories_for_businesses", fail)

    prediction = predict(supplier="Unknown Supplier")

    assert prediction.degraded == ["rules"]
    assert prediction.categories[0].category == "Meals"


# The support admin.


@pytest.fixture
def support_client(client):
    user = User.objects.create_user(username="support-1", password="unused", is_staff=True)
    user.groups.add(Group.objects.get(name="support"))
    client.force_login(user)
    return client


def test_support_group_has_archive_permissions():
    codenames = set(Group.objects.get(name="support").permissions.values_list("codename", flat=True))

    assert {"view_archivedcategory", "add_archivedcategory", "delete_archivedcategory"} <= codenames
    assert "change_archivedcategory" not in codenames


def test_support_adds_archived_category(support_client):
    response = support_client.post(ADMIN_ADD_URL, {"business_id": "b1", "category": "Meals"})

    assert response.status_code == 302, response.content
    archived = ArchivedCategory.objects.get()
    assert (archived.business_id, archived.category) == ("b1", "Meals")
    assert LogEntry.objects.get(object_id=str(archived.pk)).action_flag == ADDITION


def test_support_add_duplicate_shows_error(support_client):
    ArchivedCategory.objects.create(business_id="b1", category="Meals")

    response = support_client.post(ADMIN_ADD_URL, {"business_id": "b1", "category": "Meals"})

    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert ArchivedCategory.objects.count() == 1


def test_support_removes_archived_category(support_client):
    archived = ArchivedCategory.objects.create(business_id="b1", category="Meals")
    url = reverse("admin:lookup_archivedcategory_delete", args=[archived.pk])

    response = support_client.post(url, {"post": "yes"})

    assert response.status_code == 302, response.content
    assert not ArchivedCategory.objects.exists()
    assert LogEntry.objects.get(object_id=str(archived.pk)).action_flag == DELETION


def test_support_search_exact_business_id(support_client):
    ArchivedCategory.objects.create(business_id="b1", category="Meals")
    ArchivedCategory.objects.create(business_id="b10", category="Travel")
    ArchivedCategory.objects.create(business_id="B1", category="Software")

    response = support_client.get(ADMIN_LIST_URL, {"q": "b1"})

    assert response.status_code == 200
    assert [row.category for row in response.context["cl"].result_list] == ["Meals"]


def test_support_cannot_edit_archived_row(support_client):
    archived = ArchivedCategory.objects.create(business_id="b1", category="Meals")
    url = reverse("admin:lookup_archivedcategory_change", args=[archived.pk])

    response = support_client.post(url, {"business_id": "b1", "category": "Travel"})

    assert response.status_code == 403
    archived.refresh_from_db()
    assert archived.category == "Meals"
