import datetime
import itertools

import pytest

from lookup import services as lookup_services
from lookup.models import ExpenseEvent
from lookup.serializers import EventSerializer
from mlops import services as mlops_services
from mlops.models import TrainingRun
from tests.factories import created_event

# Suppliers of the training business, three per category, so every category has enough rows
# for the stratified holdout and the model learns something from the supplier text.
TRAINING_SUPPLIERS = {
    "Meals": ["Harbour Bakery", "Noodle Bar", "Corner Deli"],
    "Travel": ["Northern Rail", "City Taxis", "Airport Parking"],
    "Software": ["Adobe Systems", "Atlassian", "GitHub"],
}
TRAINING_BUSINESS = "b-train"
TRAINING_BUSINESSES = (TRAINING_BUSINESS, "b-train-2", "b-train-3")
# NOTE: mlops training raises "empty vocabulary" when no expense has a merchant_category, so
# every training expense carries one.
MERCHANT_CATEGORIES = {"Meals": "restaurants", "Travel": "transport", "Software": "computer services"}


@pytest.fixture
def seed_events(db):
    """Accept and apply events at once, as the worker does after commit, and return the inbox rows."""

    def seed(events):
        serializer = EventSerializer(data=list(events), many=True)
        serializer.is_valid(raise_exception=True)
        lookup_services.accept_events(events=serializer.validated_data)
        ids = [event["event_id"] for event in events]
        rows = list(ExpenseEvent.objects.filter(event_id__in=ids))
        lookup_services.apply_events(event_pks=[row.pk for row in rows])
        return rows

    return seed


@pytest.fixture
def active_model(seed_events, settings):
    """Train and activate a small model on 36 expenses each of three other businesses; return its version.

    Three businesses share the categories, so the model may suggest them to a business it never saw.
    """
    start = datetime.date(2024, 1, 1)
    events = []
    for business_id, category, number in itertools.product(TRAINING_BUSINESSES, TRAINING_SUPPLIERS, range(12)):
        suppliers = TRAINING_SUPPLIERS[category]
        events.append(
            created_event(
                business_id=business_id,
                supplier=suppliers[number % len(suppliers)],
                description=f"{category} purchase",
                merchant_category=MERCHANT_CATEGORIES[category],
                category=category,
                date=(start + datetime.timedelta(days=number * 7)).isoformat(),
            )
        )
    seed_events(events)
    run = TrainingRun.objects.create(activate=True)

    version = mlops_services.run_training(run_id=run.pk)

    assert version is not None, TrainingRun.objects.get(pk=run.pk).error
    return version.version
