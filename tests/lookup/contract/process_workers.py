"""Entry points of the child processes in test_sql_concurrent_processes.

Each child is started with the spawn method, so it sets up Django itself, on the SQLite file
named by DATABASE_URL with the deployed settings (WAL, IMMEDIATE transactions, busy timeout).
"""

import os


def _setup_django(database_url: str):
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    import django

    django.setup()


def write_expenses(database_url: str, worker: int, rounds: int, barrier, results) -> None:
    """Apply `rounds` new expenses of one supplier, each step in lockstep with the other writer."""
    _setup_django(database_url)
    from lookup.stores.sql import SqlLookupStore
    from tests.lookup.contract.changes import upsert

    store = SqlLookupStore()
    outcomes = []
    for number in range(rounds):
        barrier.wait(timeout=30)
        outcomes.append(store.apply(upsert(f"p{worker}-{number}", 1)))
    barrier.wait(timeout=30)
    outcomes.append(store.apply(upsert("contested", 10 + worker, category=f"worker-{worker}")))
    results.put((worker, [str(outcome) for outcome in outcomes]))


def report_counts(database_url: str, results) -> None:
    """Put the live count, the hot-path match count and the contested expense's version."""
    _setup_django(database_url)
    from lookup.stores.sql import SqlLookupStore

    store = SqlLookupStore()
    similar = store.similar_expenses(business_id="b1", supplier_key="blue heron cafe", limit=10_000)
    contested = store.get_expense(business_id="b1", expense_id="contested")
    results.put((store.count_expenses(business_id="b1"), len(similar), contested.version, contested.category))
