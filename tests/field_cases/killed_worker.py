"""Entry points of the child processes in test_lookup_and_events' SIGKILL test.

Each child is started with the spawn method, so it sets up Django itself, on the SQLite file
named by DATABASE_URL with the settings the service deploys.
"""

import os
import time
from pathlib import Path

# Longer than the parent waits for the marker file, so only SIGKILL ends the hanging worker.
HANG_SECONDS = 300


def _setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    import django

    django.setup()


def accept_and_hang_mid_update(database_url: str, count: int, marker: str) -> None:
    """Accept `count` created events, write half of them to the store, write `marker`, then hang."""
    _setup_django(database_url)
    from lookup import services
    from lookup.models import ExpenseEvent
    from lookup.serializers import EventSerializer
    from lookup.stores import get_lookup_store
    from tests.factories import created_event

    # The broker is not part of this test: the worker below is handed the events directly.
    services.enqueue_events = lambda event_pks, countdown=0: None
    events = [created_event(expense_id=f"k{number}", event_id=f"evt-k{number}") for number in range(count)]
    serializer = EventSerializer(data=events, many=True)
    serializer.is_valid(raise_exception=True)
    services.accept_events(events=serializer.validated_data)

    store = get_lookup_store()

    def write_half_then_hang(changes):
        for change in changes[: len(changes) // 2]:
            store.apply(change)
        Path(marker).write_text("half written")
        time.sleep(HANG_SECONDS)

    store.apply_many = write_half_then_hang
    services.apply_events(event_pks=list(ExpenseEvent.objects.values_list("pk", flat=True)))


def sweep_and_report(database_url: str, results) -> None:
    """Run the periodic sweep at once, then put the inbox statuses and the store's expenses."""
    _setup_django(database_url)
    from collections import Counter

    from django.conf import settings

    from lookup import services
    from lookup.models import ExpenseEvent
    from lookup.stores import get_lookup_store

    settings.EVENT_PENDING_MAX_AGE_SECONDS = 0
    swept = services.sweep_pending_events()
    statuses = Counter(ExpenseEvent.objects.values_list("status", flat=True))
    store = get_lookup_store()
    versions = {expense.expense_id: expense.version for expense in store.iter_expenses(business_id="b1")}
    results.put((swept, dict(statuses), versions, store.count_expenses(business_id="b1")))
