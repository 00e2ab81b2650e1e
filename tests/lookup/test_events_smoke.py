import pytest

from lookup.stores import get_lookup_store
from tests.factories import created_event

pytestmark = pytest.mark.django_db(transaction=True)


def test_created_event_reaches_lookup_store(post_events):
    post_events([created_event(expense_id="e-1", supplier="SQ *BLUE HERON CAFE", category="Meals")])

    stored = get_lookup_store().get_expense(business_id="b1", expense_id="e-1")

    assert stored is not None
    assert stored.supplier_key == "blue heron cafe"
    assert stored.category == "Meals"
