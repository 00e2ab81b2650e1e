"""The admin's lookups browser: one business's expenses and supplier history, on either store."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone
from moto import mock_aws

from lookup.aws import dynamodb_client
from lookup.lookups_admin import PAGE_SIZE, SUPPLIER_SUMMARY_LIMIT
from lookup.models import ExpenseEvent, LookupExpense
from lookup.stores import LookupStoreUnavailable, get_lookup_store
from lookup.stores import sql as sql_store
from lookup.stores.dynamodb_table import ensure_table
from tests.factories import created_event
from tests.lookup.contract.changes import upsert
from tests.lookup.contract.conftest import REGION, offline_aws_credentials  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

URL = reverse("admin:lookup_lookupexpense_browse")
BIG_BUSINESS_ROWS = 100_000


def _bulk_rows(business_id: str, count: int, *, supplier_key: str = "blue heron cafe") -> None:
    now = timezone.now()
    start = datetime.date(2020, 1, 1)
    rows = (
        LookupExpense(
            business_id=business_id,
            expense_id=f"e{number:06d}",
            version=1,
            supplier="Blue Heron Cafe",
            supplier_key=supplier_key,
            category=("Meals", "Travel")[number % 2],
            amount="4.50",
            currency="GBP",
            date=start + datetime.timedelta(days=number % 1500),
            source_event_id=f"evt-{number}",
            learned_at=now,
        )
        for number in range(count)
    )
    LookupExpense.objects.bulk_create(rows, batch_size=5000)


def _expense_ids(response) -> list[str]:
    return [row["expense"].expense_id for row in response.context["rows"]]


def test_index_links_to_browser(admin_client):
    content = admin_client.get(reverse("admin:index")).content.decode()

    assert f'href="{URL}"' in content


def test_browser_without_search_shows_form(admin_client):
    response = admin_client.get(URL)

    assert response.status_code == 200
    assert 'name="business_id"' in response.content.decode()
    assert "rows" not in response.context


def test_browser_lists_expense_with_event_link(admin_client, send_events):
    event = created_event(business_id="b1", expense_id="e1", supplier="Blue Heron Cafe", category="Meals")
    send_events([event])
    inbox_row = ExpenseEvent.objects.get(event_id=event["event_id"])

    response = admin_client.get(URL, {"business_id": "b1"})

    content = response.content.decode()
    [row] = response.context["rows"]
    assert row["expense"].expense_id == "e1"
    assert row["expense"].learned_at is not None
    assert row["event_url"] == reverse("admin:lookup_expenseevent_change", args=[inbox_row.pk])
    assert f'href="{row["event_url"]}"' in content
    assert response.context["next_cursor"] is None


def test_browser_event_missing_from_inbox_not_linked(admin_client):
    get_lookup_store().apply(upsert("e1", business_id="b1"))

    response = admin_client.get(URL, {"business_id": "b1"})

    [row] = response.context["rows"]
    assert row["expense"].source_event_id
    assert row["event_url"] is None


def test_browser_next_page_follows_cursor(admin_client):
    _bulk_rows("b1", PAGE_SIZE + 3)

    first = admin_client.get(URL, {"business_id": "b1"})
    cursor = first.context["next_cursor"]
    second = admin_client.get(URL, {"business_id": "b1", "after": cursor})

    assert _expense_ids(first) == [f"e{number:06d}" for number in range(PAGE_SIZE)]
    assert cursor == f"e{PAGE_SIZE - 1:06d}"
    assert 'id="next-page"' in first.content.decode()
    assert _expense_ids(second) == [f"e{number:06d}" for number in range(PAGE_SIZE, PAGE_SIZE + 3)]
    assert second.context["next_cursor"] is None


def test_browser_isolates_businesses(admin_client):
    _bulk_rows("b1", 2)
    _bulk_rows("b10", 2)

    response = admin_client.get(URL, {"business_id": "b1"})

    assert {row["expense"].business_id for row in response.context["rows"]} == {"b1"}


def test_browser_supplier_search_and_summary(admin_client):
    store = get_lookup_store()
    store.apply(upsert("e1", supplier="Blue Heron Cafe", category="Meals", date=datetime.date(2024, 1, 5)))
    store.apply(upsert("e2", supplier="BLUE HERON CAFÉ", category="Meals", date=datetime.date(2024, 3, 1)))
    store.apply(upsert("e3", supplier="Blue Heron Cafe", category="Travel", date=datetime.date(2024, 2, 1)))
    store.apply(upsert("e4", supplier="Northern Rail", supplier_key="northern rail", category="Travel"))

    response = admin_client.get(URL, {"business_id": "b1", "supplier": "blue heron café"})

    summary = response.context["summary"]
    assert _expense_ids(response) == ["e2", "e3", "e1"]
    assert summary.supplier_key == "blue heron cafe"
    assert summary.categories == [("Meals", 2), ("Travel", 1)]
    assert summary.latest_date == datetime.date(2024, 3, 1)
    assert summary.expenses_read == 3
    assert summary.limit_reached is False
    assert 'id="supplier-summary"' in response.content.decode()


def test_browser_requires_business_id(admin_client):
    response = admin_client.get(URL, {"business_id": "  ", "supplier": "Blue Heron Cafe"})

    assert response.status_code == 200
    assert response.context["form"].errors["business_id"] == ["This field is required."]
    assert "rows" not in response.context


def test_browser_unknown_business_is_empty(admin_client):
    response = admin_client.get(URL, {"business_id": "nobody"})

    assert response.context["rows"] == []
    assert "No expenses found for business nobody" in response.content.decode()


def test_browser_reports_store_failure(admin_client, monkeypatch):
    def unavailable(self, **kwargs):
        raise LookupStoreUnavailable("SQL lookup store unavailable: database is locked")

    monkeypatch.setattr(sql_store.SqlLookupStore, "list_expenses", unavailable)

    response = admin_client.get(URL, {"business_id": "b1"})

    assert response.status_code == 200
    assert "database is locked" in response.context["store_error"]


def test_browser_requires_view_permission(client, django_user_model):
    staff = django_user_model.objects.create_user(username="staff", password="x", is_staff=True)
    client.force_login(staff)

    response = client.get(URL, {"business_id": "b1"})

    assert response.status_code == 403


def test_browser_on_dynamodb(admin_client, settings):
    settings.LOOKUP_STORE = "dynamodb"
    settings.DYNAMODB_TABLE = "lookup-admin-test"
    settings.AWS_REGION = REGION
    get_lookup_store.cache_clear()
    with mock_aws():
        ensure_table(dynamodb_client(REGION), settings.DYNAMODB_TABLE, timeout_seconds=30)
        store = get_lookup_store()
        store.apply_many([upsert(f"e{number:03d}", business_id="b1") for number in range(PAGE_SIZE + 1)])

        first = admin_client.get(URL, {"business_id": "b1"})
        second = admin_client.get(URL, {"business_id": "b1", "after": first.context["next_cursor"]})
        by_supplier = admin_client.get(URL, {"business_id": "b1", "supplier": "Blue Heron Cafe"})

    assert first.context["store_name"] == "dynamodb"
    assert len(first.context["rows"]) == PAGE_SIZE
    assert _expense_ids(second) == [f"e{PAGE_SIZE:03d}"]
    assert by_supplier.context["summary"].expenses_read == PAGE_SIZE + 1


# A business with 100,000 past expenses


@pytest.fixture
def big_business():
    _bulk_rows("big", BIG_BUSINESS_ROWS)
    _bulk_rows("other", 10)
    return "big"


@pytest.fixture
def rows_read(monkeypatch):
    """Count the rows the SQL store turns into expenses."""
    counter = {"rows": 0}
    convert = sql_store._to_expense

    def counting(row):
        counter["rows"] += 1
        return convert(row)

    monkeypatch.setattr(sql_store, "_to_expense", counting)
    return counter


def test_big_business_pages_are_bounded(admin_client, big_business, rows_read, django_assert_max_num_queries):
    # Each page costs the session, the user, one read of the store and one of the inbox.
    with django_assert_max_num_queries(4) as first_queries:
        first = admin_client.get(URL, {"business_id": big_business})
    first_rows_read = rows_read["rows"]
    with django_assert_max_num_queries(4):
        late = admin_client.get(URL, {"business_id": big_business, "after": "e099000"})
    late_rows_read = rows_read["rows"] - first_rows_read
    with django_assert_max_num_queries(4):
        by_supplier = admin_client.get(URL, {"business_id": big_business, "supplier": "Blue Heron Cafe"})
    supplier_rows_read = rows_read["rows"] - first_rows_read - late_rows_read

    lookup_queries = [query["sql"] for query in first_queries if "lookup_lookupexpense" in query["sql"]]
    assert len(first.context["rows"]) == PAGE_SIZE
    assert first_rows_read == PAGE_SIZE + 1
    assert len(lookup_queries) == 1
    assert f"LIMIT {PAGE_SIZE + 1}" in lookup_queries[0]
    assert _expense_ids(late)[0] == "e099001"
    assert late_rows_read == PAGE_SIZE + 1
    assert len(by_supplier.context["rows"]) == PAGE_SIZE
    assert by_supplier.context["summary"].limit_reached is True
    assert supplier_rows_read == SUPPLIER_SUMMARY_LIMIT
