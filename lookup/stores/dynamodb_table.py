"""The DynamoDB lookup table: its key schema, and creating it.

One item per expense, in a table keyed by business:
    PK = business_id, SK = "E#<expense_id>"
and one sparse global secondary index for the hot-path read, the newest expenses of one
business and supplier:
    by_supplier_pk = "<business_id>#<supplier_key>", by_supplier_sk = "<date>#<version, 20 digits>"
A tombstone carries no index keys, so deleted expenses never appear in the index.
"""

import logging
import time

from botocore.client import BaseClient

from lookup.aws import error_code, translated_errors
from lookup.stores.base import LookupStoreError

logger = logging.getLogger(__name__)

PARTITION_KEY = "PK"
SORT_KEY = "SK"
EXPENSE_SORT_PREFIX = "E#"
SUPPLIER_INDEX = "by_supplier"
SUPPLIER_INDEX_PARTITION_KEY = "by_supplier_pk"
SUPPLIER_INDEX_SORT_KEY = "by_supplier_sk"

READY_POLL_SECONDS = 1.0


def table_definition(table_name: str) -> dict:
    """Return the CreateTable parameters of the lookup table (on-demand capacity)."""
    string_attributes = (PARTITION_KEY, SORT_KEY, SUPPLIER_INDEX_PARTITION_KEY, SUPPLIER_INDEX_SORT_KEY)
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": name, "AttributeType": "S"} for name in string_attributes],
        "KeySchema": [
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": SUPPLIER_INDEX,
                "KeySchema": [
                    {"AttributeName": SUPPLIER_INDEX_PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": SUPPLIER_INDEX_SORT_KEY, "KeyType": "RANGE"},
                ],
                # The hot path returns whole expenses, so the index carries every attribute
                # instead of sending a second read to the table for each match.
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }


def ensure_table(client: BaseClient, table_name: str, *, timeout_seconds: float = 300.0) -> bool:
    """Create the lookup table unless it exists, then wait until it and its index are ACTIVE.

    Returns True if this call created the table. Raises LookupStoreError if a table of that name
    exists with another key schema, or if it is not ACTIVE within timeout_seconds.
    """
    created = True
    with translated_errors("CreateTable"):
        try:
            client.create_table(**table_definition(table_name))
            logger.info("Created DynamoDB table %s", table_name, extra={"table": table_name})
        except client.exceptions.ResourceInUseException:
            created = False

    description = wait_until_active(client, table_name, timeout_seconds=timeout_seconds)
    check_key_schema(description)
    return created


def wait_until_active(client: BaseClient, table_name: str, *, timeout_seconds: float) -> dict:
    """Poll DescribeTable until the table and every index are ACTIVE; return the description."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        description = describe_table(client, table_name)
        statuses = [description.get("TableStatus")]
        statuses += [index.get("IndexStatus") for index in description.get("GlobalSecondaryIndexes", [])]
        if all(status == "ACTIVE" for status in statuses):
            return description
        if time.monotonic() > deadline:
            raise LookupStoreError(
                f"DynamoDB table {table_name} is not ACTIVE after {timeout_seconds:.0f} s (statuses: {statuses})."
            )
        time.sleep(READY_POLL_SECONDS)


def describe_table(client: BaseClient, table_name: str) -> dict:
    """Return the table's description; raise LookupStoreError if it does not exist."""
    with translated_errors("DescribeTable"):
        try:
            return client.describe_table(TableName=table_name)["Table"]
        except client.exceptions.ResourceNotFoundException as exc:
            raise LookupStoreError(
                f"DynamoDB table {table_name} not found ({error_code(exc)}); "
                "create it with `manage.py create_lookup_table`."
            ) from exc


def check_key_schema(description: dict) -> None:
    """Raise LookupStoreError unless the table has the key schema and index this module expects."""
    expected = table_definition(description["TableName"])
    indexes = {index["IndexName"]: index for index in description.get("GlobalSecondaryIndexes", [])}
    index = indexes.get(SUPPLIER_INDEX)
    if description["KeySchema"] != expected["KeySchema"] or index is None:
        raise LookupStoreError(
            f"DynamoDB table {description['TableName']} exists with another key schema or without the "
            f"{SUPPLIER_INDEX} index; expected {expected['KeySchema']} and that index."
        )
    if index["KeySchema"] != expected["GlobalSecondaryIndexes"][0]["KeySchema"]:
        raise LookupStoreError(
            f"DynamoDB index {SUPPLIER_INDEX} of {description['TableName']} has the key schema "
            f"{index['KeySchema']}; expected {expected['GlobalSecondaryIndexes'][0]['KeySchema']}."
        )
