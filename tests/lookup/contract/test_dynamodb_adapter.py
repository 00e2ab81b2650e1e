"""What only the DynamoDB adapter does: its client, error mapping, retries, table and keys."""

import logging
import socket
import uuid
from decimal import Decimal

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from lookup.aws import dynamodb_client, reset_clients
from lookup.domain import ApplyOutcome
from lookup.stores import LookupStoreError, LookupStoreUnavailable
from lookup.stores.dynamodb import DynamoDBLookupStore, _supplier_partition
from lookup.stores.dynamodb_table import ensure_table, table_definition
from tests.lookup.contract.changes import upsert
from tests.support.dynamodb_local import listening_addresses

REGION = "eu-west-2"


@pytest.fixture
def moto_store():
    with mock_aws():
        ensure_table(dynamodb_client(REGION), "lookup-test")
        yield DynamoDBLookupStore(table_name="lookup-test", region=REGION)


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutItem"
    )


class FlakyPuts:
    """Stands in for put_item: raises `code` for the first `failures` calls per expense id."""

    def __init__(self, real_put, code: str, failures: int):
        self.real_put = real_put
        self.code = code
        self.failures = failures
        self.calls: dict[str, int] = {}

    def __call__(self, **request):
        expense_key = request["Item"]["SK"]["S"]
        self.calls[expense_key] = self.calls.get(expense_key, 0) + 1
        if self.calls[expense_key] <= self.failures:
            raise client_error(self.code)
        return self.real_put(**request)


@pytest.fixture
def no_backoff(monkeypatch):
    delays = []
    monkeypatch.setattr("lookup.stores.dynamodb.time.sleep", delays.append)
    return delays


def test_client_built_once_with_timeouts_and_adaptive_retries(settings):
    settings.DYNAMODB_CONNECT_TIMEOUT_SECONDS = 0.5
    settings.DYNAMODB_READ_TIMEOUT_SECONDS = 1.5
    settings.DYNAMODB_MAX_ATTEMPTS = 4

    client = dynamodb_client(REGION)

    assert dynamodb_client(REGION) is client
    assert dynamodb_client("us-east-1") is not client
    assert client.meta.config.connect_timeout == 0.5
    assert client.meta.config.read_timeout == 1.5
    assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 4}


def test_apply_many_retries_throttled_writes(moto_store, no_backoff):
    flaky = FlakyPuts(moto_store.client.put_item, "ProvisionedThroughputExceededException", failures=2)
    moto_store.client.put_item = flaky

    outcomes = moto_store.apply_many([upsert(f"e{number}") for number in range(30)])

    assert outcomes == [ApplyOutcome.APPLIED] * 30
    assert len(no_backoff) == 2
    assert moto_store.count_expenses() == 30
    assert set(flaky.calls.values()) == {3}


def test_apply_many_fails_loudly_when_writes_stay_throttled(moto_store, no_backoff):
    moto_store.client.put_item = FlakyPuts(moto_store.client.put_item, "ThrottlingException", failures=100)

    with pytest.raises(LookupStoreUnavailable, match=r"30 of 30 changes were not written after 5 rounds"):
        moto_store.apply_many([upsert(f"e{number}") for number in range(30)])

    assert len(no_backoff) == 4


def test_apply_many_raises_permanent_error_at_once(moto_store, no_backoff):
    moto_store.client.put_item = FlakyPuts(moto_store.client.put_item, "ValidationException", failures=100)

    with pytest.raises(LookupStoreError) as raised:
        moto_store.apply_many([upsert("e1"), upsert("e2")])

    assert not isinstance(raised.value, LookupStoreUnavailable)
    assert no_backoff == []


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [
        ("ProvisionedThroughputExceededException", 400, True),
        ("ThrottlingException", 400, True),
        ("RequestLimitExceeded", 400, True),
        ("InternalServerError", 500, True),
        ("SomethingNew", 503, True),
        ("ValidationException", 400, False),
        ("AccessDeniedException", 400, False),
        ("ResourceNotFoundException", 400, False),
    ],
)
def test_client_errors_map_to_store_errors(moto_store, code, status, transient, caplog):
    def failing_put(**request):
        raise client_error(code, status)

    moto_store.client.put_item = failing_put

    with caplog.at_level(logging.WARNING, logger="lookup.aws"), pytest.raises(LookupStoreError) as raised:
        moto_store.apply(upsert("e7", business_id="b9"))

    assert isinstance(raised.value, LookupStoreUnavailable) is transient
    assert caplog.records[-1].business_id == "b9"
    assert caplog.records[-1].expense_id == "e7"


def test_unreachable_endpoint_is_unavailable(settings, monkeypatch):
    settings.DYNAMODB_MAX_ATTEMPTS = 1
    settings.DYNAMODB_CONNECT_TIMEOUT_SECONDS = 0.5
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{closed_port}")
    reset_clients()
    store = DynamoDBLookupStore(table_name="lookup-test", region=REGION)

    with pytest.raises(LookupStoreUnavailable):
        store.get_expense(business_id="b1", expense_id="e1")
    with pytest.raises(LookupStoreUnavailable):
        store.check()


def test_missing_table_fails_check_and_reads(moto_store):
    missing = DynamoDBLookupStore(table_name="no-such-table", region=REGION)

    with pytest.raises(LookupStoreUnavailable, match="not found"):
        missing.check()
    with pytest.raises(LookupStoreError):
        missing.similar_expenses(business_id="b1", supplier_key="x", limit=5)


def test_float_amount_is_rejected(moto_store):
    with pytest.raises(LookupStoreError, match="expected a finite Decimal"):
        moto_store.apply(upsert("e1", amount=0.1))
    with pytest.raises(LookupStoreError, match="expected a finite Decimal"):
        moto_store.apply(upsert("e1", amount=Decimal("NaN")))


def test_tombstone_leaves_supplier_index(moto_store):
    from tests.lookup.contract.changes import delete

    moto_store.apply(upsert("e1"))
    moto_store.apply(delete("e1", 2))

    raw = moto_store.client.get_item(TableName="lookup-test", Key={"PK": {"S": "b1"}, "SK": {"S": "E#e1"}})["Item"]
    assert "by_supplier_pk" not in raw
    assert "by_supplier_sk" not in raw
    assert raw["version"] == {"N": "2"}
    assert raw["deleted"] == {"BOOL": True}


def test_supplier_index_key_cannot_collide():
    assert _supplier_partition("a#b", "c") != _supplier_partition("a", "b#c")
    assert _supplier_partition("a%23b", "c") != _supplier_partition("a#b", "c")
    assert _supplier_partition("b1", "blue heron cafe") == "b1#blue heron cafe"


def test_ensure_table_is_idempotent(moto_store):
    client = moto_store.client

    created_again = ensure_table(client, "lookup-test")
    created_new = ensure_table(client, "lookup-other")

    assert created_again is False
    assert created_new is True
    assert client.describe_table(TableName="lookup-other")["Table"]["TableStatus"] == "ACTIVE"


def test_ensure_table_rejects_other_key_schema(moto_store):
    definition = table_definition("lookup-wrong")
    definition["KeySchema"] = [{"AttributeName": "PK", "KeyType": "HASH"}]
    definition["AttributeDefinitions"] = [a for a in definition["AttributeDefinitions"] if a["AttributeName"] != "SK"]
    moto_store.client.create_table(**definition)

    with pytest.raises(LookupStoreError, match="another key schema"):
        ensure_table(moto_store.client, "lookup-wrong")


def test_dynamodb_local_listens_on_loopback_only(dynamodb_local):
    addresses = listening_addresses(dynamodb_local.port)

    assert addresses == {"127.0.0.1"}


def test_reserved_word_attributes_on_dynamodb_local(dynamodb_local, monkeypatch):
    # DynamoDB Local, unlike moto, rejects a reserved word such as "date" used bare in an expression.
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local.endpoint_url)
    reset_clients()
    table = f"lookup-{uuid.uuid4().hex[:8]}"
    client = dynamodb_client(REGION)
    ensure_table(client, table, timeout_seconds=30)

    with pytest.raises(ClientError, match="reserved keyword"):
        client.scan(TableName=table, ProjectionExpression="date")
    store = DynamoDBLookupStore(table_name=table, region=REGION)
    store.apply(upsert("e1"))
    assert [expense.expense_id for expense in store.iter_expenses()] == ["e1"]
    client.delete_table(TableName=table)
