"""lookup.rules_admin: the override rule list, the preview before saving, conflicts and history."""

import datetime
from decimal import Decimal

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.urls import reverse

from lookup.domain import ChangeKind, Expense, ExpenseChange
from lookup.models import OverrideRule
from lookup.normalisation import supplier_key
from lookup.rules_admin import OverrideRuleAdmin
from lookup.stores import get_lookup_store
from tests.factories import expense_payload

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:lookup_overriderule_add")
LIST_URL = reverse("admin:lookup_overriderule_changelist")


def change_url(rule):
    return reverse("admin:lookup_overriderule_change", args=[rule.pk])


def form_data(**overrides):
    """A complete override rule form as the admin posts it."""
    data = {
        "business_id": "b1",
        "supplier_match": "contains",
        "supplier_value": "paypal",
        "description_contains": "",
        "amount_sign": "any",
        "amount_min": "",
        "amount_max": "",
        "currency": "",
        "payment_method": "",
        "merchant_category_contains": "",
        "combinator": "all",
        "category": "Software",
        "priority": "0",
        "enabled": "on",
        "note": "",
    }
    return data | overrides


def store_expense(expense_id, *, supplier, category, description="", business_id="b1"):
    expense = Expense(
        business_id=business_id,
        expense_id=expense_id,
        version=1,
        supplier=supplier,
        supplier_key=supplier_key(supplier),
        category=category,
        amount=Decimal("20.00"),
        currency="GBP",
        date=datetime.date(2024, 11, 13),
        description=description,
    )
    change = ExpenseChange(
        kind=ChangeKind.UPSERT,
        business_id=business_id,
        expense_id=expense_id,
        version=1,
        event_id=f"evt-{expense_id}",
        expense=expense,
    )
    get_lookup_store().apply(change)


@pytest.fixture
def paypal_history():
    """Store five PayPal expenses of b1 and one of b2. Three of b1's are for Adobe, two of them filed as Software."""
    store_expense("e1", supplier="PAYPAL *", description="Adobe Creative Cloud", category="Software")
    store_expense("e2", supplier="PAYPAL *", description="Adobe Acrobat", category="Software")
    store_expense("e3", supplier="PAYPAL *", description="ADOBE stock", category="Office")
    store_expense("e4", supplier="PAYPAL *", description="Etsy order", category="Office")
    store_expense("e5", supplier="PAYPAL *", description="Ebay order", category="Office")
    store_expense("e6", supplier="PAYPAL *", description="Adobe", category="Office", business_id="b2")


def test_preview_counts_without_saving(admin_client, paypal_history):
    response = admin_client.post(ADD_URL, form_data(description_contains="adobe", _preview="Preview"))

    assert response.status_code == 200
    preview = response.context["rule_preview"]
    assert preview["result"].scanned == 5
    assert preview["result"].matched == 3
    assert preview["result"].would_change == 1
    assert preview["result"].truncated is False
    assert OverrideRule.objects.count() == 0
    assert LogEntry.objects.count() == 0
    content = response.content.decode()
    assert "Matches 3 of 5 past expenses scanned" in content
    assert "1 of them would change category" in content
    assert "Adobe Acrobat" in content
    assert "Etsy order" not in content


def test_preview_keeps_posted_values(admin_client, paypal_history):
    response = admin_client.post(ADD_URL, form_data(description_contains="adobe", _preview="Preview"))

    assert response.context["adminform"].form["description_contains"].value() == "adobe"
    assert 'name="_preview"' in response.content.decode()


def test_preview_of_existing_rule_does_not_save(admin_client, paypal_history):
    rule = OverrideRule.objects.create(business_id="b1", supplier_value="paypal", category="Software")

    response = admin_client.post(change_url(rule), form_data(category="Office", _preview="Preview"))

    assert response.context["rule_preview"]["result"].would_change == 2
    rule.refresh_from_db()
    assert rule.category == "Software"
    assert LogEntry.objects.count() == 0


def test_preview_scan_limit_stated(admin_client, paypal_history, monkeypatch):
    monkeypatch.setattr(OverrideRuleAdmin, "preview_max_scanned", 2)

    response = admin_client.post(ADD_URL, form_data(_preview="Preview"))

    assert response.context["rule_preview"]["result"].scanned == 2
    assert response.context["rule_preview"]["result"].truncated is True
    assert "The scan stopped after 2 expenses" in response.content.decode()


def test_preview_invalid_regex_shows_error(admin_client):
    response = admin_client.post(ADD_URL, form_data(supplier_match="regex", supplier_value="([a", _preview="Preview"))

    assert response.status_code == 200
    assert response.context["rule_preview"] is None
    assert "Invalid regular expression" in response.content.decode()
    assert OverrideRule.objects.count() == 0


def test_preview_shows_conflicts(admin_client):
    other = OverrideRule.objects.create(business_id="b1", supplier_value="PayPal Adobe", category="Office")
    OverrideRule.objects.create(business_id="b2", supplier_value="paypal", category="Office")

    response = admin_client.post(ADD_URL, form_data(_preview="Preview"))

    conflicts = response.context["rule_preview"]["conflicts"]
    assert len(conflicts) == 1
    assert f"Overlaps rule {other.pk}" in conflicts[0]
    assert f"Overlaps rule {other.pk}" in response.content.decode()


def test_save_warns_of_conflicts(admin_client):
    other = OverrideRule.objects.create(supplier_value="paypal", category="Office")

    response = admin_client.post(ADD_URL, form_data(), follow=True)

    warnings = [str(message) for message in response.context["messages"]]
    assert any(f"Overlaps rule {other.pk}" in warning for warning in warnings)


def test_save_invalid_regex_rejected(admin_client):
    response = admin_client.post(ADD_URL, form_data(supplier_match="regex", supplier_value="*adobe"))

    assert response.status_code == 200
    assert "Invalid regular expression &#x27;*adobe&#x27;" in response.content.decode()
    assert OverrideRule.objects.count() == 0


def test_save_records_history(admin_client, admin_user):
    admin_client.post(ADD_URL, form_data())
    rule = OverrideRule.objects.get()

    admin_client.post(change_url(rule), form_data(category="Office", currency="gbp"))

    rule.refresh_from_db()
    assert rule.category == "Office"
    assert rule.currency == "GBP"
    entries = list(LogEntry.objects.filter(object_id=str(rule.pk)).order_by("action_time"))
    assert [entry.action_flag for entry in entries] == [ADDITION, CHANGE]
    assert all(entry.user_id == admin_user.pk for entry in entries)
    assert "Category" in entries[1].get_change_message()


def test_changelist_filters_and_search(admin_client):
    OverrideRule.objects.create(supplier_value="adobe", category="Software")
    OverrideRule.objects.create(business_id="b1", supplier_value="tesco", category="Groceries", currency="GBP")

    global_only = admin_client.get(LIST_URL, {"scope": "global"})
    with_extra = admin_client.get(LIST_URL, {"extra_conditions": "yes"})
    searched = admin_client.get(LIST_URL, {"q": "tesco"})

    assert [rule.supplier_value for rule in global_only.context["cl"].result_list] == ["adobe"]
    assert [rule.supplier_value for rule in with_extra.context["cl"].result_list] == ["tesco"]
    assert [rule.supplier_value for rule in searched.context["cl"].result_list] == ["tesco"]
    assert "currency GBP" in with_extra.content.decode()


def test_change_form_grouped_in_fieldsets(admin_client):
    response = admin_client.get(ADD_URL)

    names = [fieldset.name for fieldset in response.context["adminform"]]
    assert names == ["Scope", "Supplier", "Other conditions", "Result", "History"]


def test_saved_description_rule_beats_lookup(admin_client, api_client):
    for number in range(3):
        store_expense(f"e{number}", supplier="PAYPAL *", description="Adobe", category="Office")
    admin_client.post(ADD_URL, form_data(description_contains="adobe creative"))
    rule = OverrideRule.objects.get()

    matching = api_client.post(
        "/api/v1/predictions",
        expense_payload(supplier="PAYPAL *", description="Adobe Creative Cloud"),
        format="json",
    )
    other = api_client.post(
        "/api/v1/predictions", expense_payload(supplier="PAYPAL *", description="Etsy order"), format="json"
    )

    assert matching.status_code == 200
    top = matching.json()["categories"][0]
    assert top["category"] == "Software"
    assert top["source"] == "rule"
    assert top["evidence"] == {"rule_id": rule.pk}
    assert all(candidate["source"] != "rule" for candidate in other.json()["categories"])
