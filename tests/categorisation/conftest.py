import datetime

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
    """Train and activate a small model on 36 expenses of another business, and return its version."""
    start = datetime.date(2024, 1, 1)
    events = []
    for category, suppliers in TRAINING_SUPPLIERS.items():
        for number in range(12):
            supplier = suppliers[number % len(suppliers)]
            day = start + datetime.timedelta(days=number * 7)
            events.append(
                created_event(
                    business_id=TRAINING_BUSINESS,
                    supplier=supplier,
                    description=f"{category} purchase",
                    merchant_category=MERCHANT_CATEGORIES[category],
                    category=category,
                    date=day.isoformat(),
                )
            )
    seed_events(events)
    run = TrainingRun.objects.create(activate=True)

    version = mlops_services.run_training(run_id=run.pk)

    assert version is not None, TrainingRun.objects.get(pk=run.pk).error
    return version.version
