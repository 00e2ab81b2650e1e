"""The create_lookup_table and copy_lookup management commands, with DynamoDB under moto."""

import io

import pytest
from django.core.management import CommandError, call_command
from moto import mock_aws

from lookup.aws import dynamodb_client
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
