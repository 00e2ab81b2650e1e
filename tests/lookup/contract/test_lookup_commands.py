"""The lookup management commands: copy_lookup and create_lookup_table with DynamoDB under moto,
rekey_lookup on every store adapter through the contract suite's `store` fixture."""

import io

import pytest
from django.core.management import CommandError, call_command
from moto import mock_aws

from lookup.aws import dynamodb_client
from lookup.stores import get_lookup_store
from lookup.stores.dynamodb import DynamoDBLookupStore
from lookup.stores.sql import SqlLookupStore
from tests.lookup.contract.changes import delete, upsert

REGION = "eu-west-2"
TABLE = "lookup-commands"

pytestmark = pytest.mark.django_db


@pytest.fixture
def aws(settings):
    settings.DYNAMODB_TABLE = TABLE
    settings.AWS_REGION = REGION
    with mock_aws():
        yield


def run(*args) -> str:
    output = io.StringIO()
    call_command(*args, stdout=output)
    return output.getvalue()


def test_create_lookup_table_twice(aws):
    first = run("create_lookup_table")
    second = run("create_lookup_table")

    assert f"Created DynamoDB table {TABLE}" in first
    assert f"Found existing DynamoDB table {TABLE}" in second
    assert dynamodb_client(REGION).describe_table(TableName=TABLE)["Table"]["TableStatus"] == "ACTIVE"


def test_copy_sql_to_dynamodb_and_back(aws):
    sql = SqlLookupStore()
    for number in range(23):
        sql.apply(upsert(f"e{number}", 2, business_id="b1" if number % 2 else "b2"))
    sql.apply(delete("e1", 3, business_id="b1"))
    run("create_lookup_table")
    dynamodb = DynamoDBLookupStore(table_name=TABLE, region=REGION)

    to_dynamodb = run("copy_lookup", "--from", "sql", "--to", "dynamodb", "--batch-size", "5")
    sql.apply(upsert("e100", 1, business_id="b1"))
    dynamodb.apply(upsert("e100", 1, business_id="b1"))
    back = run("copy_lookup", "--from", "dynamodb", "--to", "sql", "--business", "b1")

    assert "Copied 22 expenses, skipped 0" in to_dynamodb
    assert "Verified: both stores hold 22 live expenses" in to_dynamodb
    assert dynamodb.count_expenses() == 23
    assert dynamodb.get_expense(business_id="b1", expense_id="e3").version == 2
    assert dynamodb.get_expense(business_id="b1", expense_id="e1") is None
    assert "Copied 0 expenses, skipped 11" in back
    assert "Verified: both stores hold 11 live expenses (business b1)" in back


def test_copy_again_skips_what_was_copied(aws):
    sql = SqlLookupStore()
    for number in range(12):
        sql.apply(upsert(f"e{number}", 1))
    run("create_lookup_table")
    run("copy_lookup", "--from", "sql", "--to", "dynamodb")

    resumed = run("copy_lookup", "--from", "sql", "--to", "dynamodb")

    assert "Copied 0 expenses, skipped 12" in resumed
    assert "Verified: both stores hold 12 live expenses" in resumed


def test_copy_keeps_newer_version_in_target(aws):
    SqlLookupStore().apply(upsert("e1", 1, category="Meals"))
    run("create_lookup_table")
    dynamodb = DynamoDBLookupStore(table_name=TABLE, region=REGION)
    dynamodb.apply(upsert("e1", 4, category="Travel"))

    output = run("copy_lookup", "--from", "sql", "--to", "dynamodb")

    assert "skipped 1" in output
    assert dynamodb.get_expense(business_id="b1", expense_id="e1").category == "Travel"


def test_copy_fails_on_count_mismatch(aws):
    SqlLookupStore().apply(upsert("e1", 1))
    run("create_lookup_table")
    DynamoDBLookupStore(table_name=TABLE, region=REGION).apply(upsert("only-in-target", 1))

    with pytest.raises(CommandError, match="Count mismatch after copy .*sql has 1 live expenses, dynamodb has 2"):
        run("copy_lookup", "--from", "sql", "--to", "dynamodb")


def test_copy_to_missing_table_fails_clearly(aws):
    SqlLookupStore().apply(upsert("e1", 1))

    with pytest.raises(CommandError, match="Copy failed: .*Run the same command again"):
        run("copy_lookup", "--from", "sql", "--to", "dynamodb")


def test_copy_rejects_same_store(aws):
    with pytest.raises(CommandError, match="choose two different stores"):
        run("copy_lookup", "--from", "sql", "--to", "sql")


# rekey_lookup, on the configured store of each adapter

# Supplier names whose key changed with the current supplier_key, and the key stored before.
STALE_KEYS = {
    "AMZN Mktp UK*1F37B5QZ4": "amzn mktp uk 1f37b5qz4",
    "J Smith T/A Smith Plumbing": "j smith t a smith plumbing",
    "Blue Heron Cafe Apple Pay": "blue heron cafe apple pay",
    "EBAY O*12-34567-89012": "ebay o 12 34567 89012",
}


@pytest.fixture
def configured_store(store, settings):
    """Make `store` the store that get_lookup_store() and so the commands use."""
    if isinstance(store, DynamoDBLookupStore):
        settings.LOOKUP_STORE = "dynamodb"
        settings.DYNAMODB_TABLE = store.table_name
        settings.AWS_REGION = store.region
    else:
        settings.LOOKUP_STORE = "sql"
    get_lookup_store.cache_clear()
    yield store
    get_lookup_store.cache_clear()


def _seed_stale_keys(store):
    """Store expenses under keys an older supplier_key computed: 4 stale in b1, 1 in b2."""
    for number, (supplier, stale_key) in enumerate(STALE_KEYS.items()):
        store.apply(upsert(f"e{number}", 3, supplier=supplier, supplier_key=stale_key))
    store.apply(upsert("current", 1, supplier="Blue Heron Cafe", supplier_key="blue heron cafe"))
    store.apply(upsert("deleted", 1, supplier="Amazon.co.uk", supplier_key="amazon co uk"))
    store.apply(delete("deleted", 2))
    store.apply(upsert("e9", 2, business_id="b2", supplier="Amazon.co.uk", supplier_key="amazon co uk"))


def _similar_ids(store, supplier_key: str, *, business_id: str = "b1") -> set[str]:
    found = store.similar_expenses(business_id=business_id, supplier_key=supplier_key, limit=50)
    return {expense.expense_id for expense in found}


@pytest.mark.django_db(transaction=True)
def test_rekey_finds_old_rows_under_new_key(configured_store, monkeypatch):
    # Committed batches between reads of small chunks: the SQL read cursor must survive each commit.
    monkeypatch.setattr("lookup.stores.sql.ITERATION_CHUNK_SIZE", 2)
    store = configured_store
    _seed_stale_keys(store)

    output = run("rekey_lookup", "--batch-size", "2")
    again = run("rekey_lookup")

    assert "Scanned 6 expenses" in output
    assert "re-keyed 5, 1 already current, skipped 0 updated or deleted meanwhile" in output
    assert "Scanned 6 expenses" in again
    assert "re-keyed 0, 6 already current, skipped 0" in again
    assert _similar_ids(store, "amazon") == {"e0"}
    assert _similar_ids(store, "smith plumbing") == {"e1"}
    assert _similar_ids(store, "blue heron cafe") == {"e2", "current"}
    assert _similar_ids(store, "ebay") == {"e3"}
    assert _similar_ids(store, "amazon", business_id="b2") == {"e9"}
    for stale_key in STALE_KEYS.values():
        assert _similar_ids(store, stale_key) == set()
    assert store.get_expense(business_id="b1", expense_id="e0").version == 3
    assert store.get_expense(business_id="b1", expense_id="deleted").deleted is True


def test_rekey_dry_run_changes_nothing(configured_store):
    store = configured_store
    _seed_stale_keys(store)
    before = {expense.expense_id: expense for expense in store.iter_expenses(business_id="b1")}

    output = run("rekey_lookup", "--dry-run")

    after = {expense.expense_id: expense for expense in store.iter_expenses(business_id="b1")}
    assert "nothing written: scanned 6 expenses, 5 to re-key, 1 already current" in output
    assert "b1/e0 'AMZN Mktp UK*1F37B5QZ4': 'amzn mktp uk 1f37b5qz4' -> 'amazon'" in output
    assert after == before
    assert _similar_ids(store, "amazon") == set()
    assert _similar_ids(store, "amzn mktp uk 1f37b5qz4") == {"e0"}


def test_rekey_one_business(configured_store):
    store = configured_store
    _seed_stale_keys(store)

    output = run("rekey_lookup", "--business", "b2")

    assert "Scanned 1 expenses in the" in output
    assert "(business b2): re-keyed 1, 0 already current" in output
    assert _similar_ids(store, "amazon", business_id="b2") == {"e9"}
    assert _similar_ids(store, "amazon") == set()
    assert _similar_ids(store, "smith plumbing") == set()


def test_rekey_skips_expense_written_meanwhile(configured_store, monkeypatch):
    store = configured_store
    _seed_stale_keys(store)
    store_class = type(store)
    rekey_many = store_class.rekey_many

    def rekey_after_newer_write(self, changes):
        # A newer event for e1 lands between the command's read and its write.
        store.apply(upsert("e1", 4, supplier="J Smith T/A Smith Plumbing", supplier_key="smith plumbing"))
        return rekey_many(self, changes)

    monkeypatch.setattr(store_class, "rekey_many", rekey_after_newer_write)
    output = run("rekey_lookup", "--business", "b1")

    assert "Scanned 5 expenses" in output
    assert "re-keyed 3, 1 already current, skipped 1 updated or deleted meanwhile" in output
    assert store.get_expense(business_id="b1", expense_id="e1").version == 4
    assert _similar_ids(store, "smith plumbing") == {"e1"}
    assert _similar_ids(store, "amazon") == {"e0"}


def test_rekey_rejects_zero_batch_size(configured_store):
    with pytest.raises(CommandError, match="--batch-size must be at least 1, got 0"):
        run("rekey_lookup", "--batch-size", "0")
