"""What only the DynamoDB adapter does: its client, error mapping, retries, table and keys."""

import logging
import socket
import threading
import uuid
from decimal import Decimal

import pytest
from botocore.exceptions import ClientError
from botocore.validate import ParamValidationDecorator
from moto import mock_aws

from lookup.aws import dynamodb_client, reset_clients
from lookup.domain import ApplyOutcome
from lookup.stores import LookupStoreError, LookupStoreUnavailable
from lookup.stores.dynamodb import DynamoDBLookupStore, _supplier_partition
from lookup.stores.dynamodb_table import ensure_table, table_definition
from tests.lookup.contract.changes import upsert
from tests.lookup.contract.conftest import serialise_moto_transactions
from tests.support.dynamodb_local import listening_addresses

REGION = "eu-west-2"


@pytest.fixture
def moto_store(monkeypatch):
    serialise_moto_transactions(monkeypatch)
    with mock_aws():
        ensure_table(dynamodb_client(REGION), "lookup-test")
        yield DynamoDBLookupStore(table_name="lookup-test", region=REGION)


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutItem"
    )


def cancelled(codes: list[str]) -> ClientError:
    """Return the error DynamoDB raises for a cancelled transaction: one reason per action."""
    reasons = [{"Code": code} | ({"Message": code} if code != "None" else {}) for code in codes]
    response = {
        "Error": {"Code": "TransactionCanceledException", "Message": f"Transaction cancelled [{', '.join(codes)}]"},
        "CancellationReasons": reasons,
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }
    return dynamodb_client(REGION).exceptions.TransactionCanceledException(response, "TransactWriteItems")


class FlakyTransactions:
    """Stands in for transact_write_items: fails the first `failures` calls, then calls the real one.

    A failure raises `error(actions)`, so a test can fail the whole call or cancel chosen puts.
    """

    def __init__(self, real_transact, error, failures: int):
        self.real_transact = real_transact
        self.error = error
        self.failures = failures
        self.calls: list[list[str]] = []

    def __call__(self, **request):
        actions = request["TransactItems"]
        self.calls.append([action["Put"]["Item"]["SK"]["S"].removeprefix("E#") for action in actions])
        if len(self.calls) <= self.failures:
            raise self.error(actions)
        return self.real_transact(**request)


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
    # botocore keeps meta.config.parameter_validation at True and shows the setting only by
    # leaving the validating wrapper off its serializer.
    assert not isinstance(client._serializer, ParamValidationDecorator)


def test_apply_many_writes_one_transaction_per_100_puts(moto_store):
    flaky = FlakyTransactions(moto_store.client.transact_write_items, None, failures=0)
    moto_store.client.transact_write_items = flaky

    outcomes = moto_store.apply_many([upsert(f"e{number:03d}") for number in range(250)])

    assert outcomes == [ApplyOutcome.APPLIED] * 250
    assert sorted(len(call) for call in flaky.calls) == [50, 100, 100]
    assert moto_store.count_expenses() == 250


def test_apply_many_without_transactions_puts_each(moto_store):
    moto_store.transactional_writes = False
    flaky = FlakyTransactions(moto_store.client.transact_write_items, None, failures=0)
    moto_store.client.transact_write_items = flaky
    moto_store.apply(upsert("e2", 5))

    outcomes = moto_store.apply_many([upsert("e1", 1), upsert("e2", 3), upsert("e3", 1)])

    assert outcomes == [ApplyOutcome.APPLIED, ApplyOutcome.STALE, ApplyOutcome.APPLIED]
    assert flaky.calls == []
    assert moto_store.count_expenses() == 3


def test_apply_many_of_one_put_skips_transaction(moto_store):
    flaky = FlakyTransactions(moto_store.client.transact_write_items, None, failures=0)
    moto_store.client.transact_write_items = flaky

    outcomes = moto_store.apply_many([upsert("e1", 1), upsert("e1", 2)])

    assert outcomes == [ApplyOutcome.STALE, ApplyOutcome.APPLIED]
    assert flaky.calls == []
    assert moto_store.get_expense(business_id="b1", expense_id="e1").version == 2


def test_apply_many_of_one_put_retries_throttling(moto_store, no_backoff):
    def throttled_put(**request):
        raise client_error("ThrottlingException")

    moto_store.client.put_item = throttled_put

    with pytest.raises(LookupStoreUnavailable, match=r"1 of 1 changes were not written after 5 rounds"):
        moto_store.apply_many([upsert("e1")])

    assert len(no_backoff) == 4


def test_apply_many_keeps_transactions_under_byte_budget(moto_store, monkeypatch):
    # Each put is estimated at ITEM_SIZE_ALLOWANCE plus 4 bytes per character of its text.
    monkeypatch.setattr("lookup.stores.dynamodb.TRANSACTION_MAX_BYTES", 30_000)
    flaky = FlakyTransactions(moto_store.client.transact_write_items, None, failures=0)
    moto_store.client.transact_write_items = flaky

    # About 9 KB each by that estimate, so three fit in 30,000 bytes.
    changes = [upsert(f"e{number}", description="receipt line " * 150) for number in range(9)]
    outcomes = moto_store.apply_many(changes)

    assert outcomes == [ApplyOutcome.APPLIED] * 9
    assert [len(call) for call in flaky.calls] == [3, 3, 3]
    assert sorted(name for call in flaky.calls for name in call) == sorted(f"e{number}" for number in range(9))
    assert moto_store.get_expense(business_id="b1", expense_id="e8").description == "receipt line " * 150


def test_apply_many_resends_puts_after_failed_condition(moto_store, no_backoff):
    moto_store.apply(upsert("e3", 5))
    moto_store.apply(upsert("e7", 5))
    flaky = FlakyTransactions(moto_store.client.transact_write_items, None, failures=0)
    moto_store.client.transact_write_items = flaky

    outcomes = moto_store.apply_many([upsert(f"e{number}", 2) for number in range(10)])

    expected = [ApplyOutcome.STALE if number in (3, 7) else ApplyOutcome.APPLIED for number in range(10)]
    assert outcomes == expected
    assert len(flaky.calls) == 2
    assert "e3" not in flaky.calls[1]
    assert "e7" not in flaky.calls[1]
    assert no_backoff == []
    assert moto_store.get_expense(business_id="b1", expense_id="e3").version == 5
    assert moto_store.get_expense(business_id="b1", expense_id="e4").version == 2


def test_apply_many_retries_conflicting_puts_later(moto_store, no_backoff):
    def conflict_on_e1_and_e3(actions):
        return cancelled(
            [
                "TransactionConflict" if action["Put"]["Item"]["SK"]["S"] in ("E#e1", "E#e3") else "None"
                for action in actions
            ]
        )

    flaky = FlakyTransactions(moto_store.client.transact_write_items, conflict_on_e1_and_e3, failures=1)
    moto_store.client.transact_write_items = flaky

    outcomes = moto_store.apply_many([upsert(f"e{number}") for number in range(5)])

    assert outcomes == [ApplyOutcome.APPLIED] * 5
    # The three puts that failed nothing go again at once; e1 and e3 wait for the next round.
    assert flaky.calls[1] == ["e0", "e2", "e4"]
    assert flaky.calls[2] == ["e1", "e3"]
    assert len(no_backoff) == 1
    assert moto_store.count_expenses() == 5


def test_apply_many_retries_throttled_transactions(moto_store, no_backoff):
    throttled = FlakyTransactions(
        moto_store.client.transact_write_items,
        lambda actions: client_error("ProvisionedThroughputExceededException"),
        failures=2,
    )
    moto_store.client.transact_write_items = throttled

    outcomes = moto_store.apply_many([upsert(f"e{number}") for number in range(30)])

    assert outcomes == [ApplyOutcome.APPLIED] * 30
    assert len(no_backoff) == 2
    assert len(throttled.calls) == 3
    assert moto_store.count_expenses() == 30


def test_apply_many_fails_loudly_when_writes_stay_throttled(moto_store, no_backoff):
    moto_store.client.transact_write_items = FlakyTransactions(
        moto_store.client.transact_write_items, lambda actions: client_error("ThrottlingException"), failures=100
    )

    with pytest.raises(LookupStoreUnavailable, match=r"30 of 30 changes were not written after 5 rounds"):
        moto_store.apply_many([upsert(f"e{number}") for number in range(30)])

    assert len(no_backoff) == 4


def test_apply_many_conflicts_exhaust_retries(moto_store, no_backoff):
    moto_store.client.transact_write_items = FlakyTransactions(
        moto_store.client.transact_write_items,
        lambda actions: cancelled(["TransactionConflict"] * len(actions)),
        failures=100,
    )

    with pytest.raises(LookupStoreUnavailable, match=r"3 of 3 changes were not written after 5 rounds"):
        moto_store.apply_many([upsert(f"e{number}") for number in range(3)])

    assert len(no_backoff) == 4
    assert moto_store.count_expenses() == 0


def test_apply_many_raises_permanent_error_at_once(moto_store, no_backoff):
    moto_store.client.transact_write_items = FlakyTransactions(
        moto_store.client.transact_write_items, lambda actions: client_error("ValidationException"), failures=100
    )

    with pytest.raises(LookupStoreError) as raised:
        moto_store.apply_many([upsert("e1"), upsert("e2")])

    assert not isinstance(raised.value, LookupStoreUnavailable)
    assert no_backoff == []


def test_apply_many_raises_permanent_cancellation_reason(moto_store, no_backoff):
    moto_store.client.transact_write_items = FlakyTransactions(
        moto_store.client.transact_write_items, lambda actions: cancelled(["None", "ValidationError"]), failures=100
    )

    with pytest.raises(LookupStoreError, match="b1/e2: ValidationError") as raised:
        moto_store.apply_many([upsert("e1"), upsert("e2")])

    assert not isinstance(raised.value, LookupStoreUnavailable)
    assert no_backoff == []


def test_apply_many_rejects_cancellation_without_reasons(moto_store, no_backoff):
    moto_store.client.transact_write_items = FlakyTransactions(
        moto_store.client.transact_write_items, lambda actions: cancelled([]), failures=100
    )

    with pytest.raises(LookupStoreError, match="2 puts with 0 cancellation reasons"):
        moto_store.apply_many([upsert("e1"), upsert("e2")])


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [
        ("ProvisionedThroughputExceededException", 400, True),
        ("ThrottlingException", 400, True),
        ("RequestLimitExceeded", 400, True),
        ("InternalServerError", 500, True),
        ("SomethingNew", 503, True),
        ("TransactionConflictException", 400, True),
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


def test_racing_apply_many_on_dynamodb_local(dynamodb_local, monkeypatch, settings):
    # Two workers write batches that share one expense: the higher version wins every round, and
    # a put that meets the other worker's transaction is retried, not lost.
    settings.DYNAMODB_READ_TIMEOUT_SECONDS = 15.0
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local.endpoint_url)
    reset_clients()
    table = f"lookup-{uuid.uuid4().hex[:8]}"
    ensure_table(dynamodb_client(REGION), table, timeout_seconds=30)
    store = DynamoDBLookupStore(table_name=table, region=REGION)
    rounds = 20
    barrier = threading.Barrier(2, timeout=30)
    outcomes: dict[tuple[int, int], ApplyOutcome] = {}
    errors = []

    def worker(number: int):
        try:
            for round_number in range(rounds):
                own = [upsert(f"w{number}-{round_number}-{item}", 1) for item in range(30)]
                contested = upsert("contested", 10 * round_number + number, category=f"worker-{number}")
                barrier.wait()
                result = store.apply_many([*own, contested])
                assert result[:30] == [ApplyOutcome.APPLIED] * 30
                outcomes[(number, round_number)] = result[30]
        except Exception as exc:  # noqa: BLE001 (collected and asserted in the main thread)
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(number,)) for number in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert errors == []
    assert not any(thread.is_alive() for thread in threads)
    # Worker 2 writes the higher version of each round, so its put always wins.
    assert all(outcomes[(2, round_number)] == ApplyOutcome.APPLIED for round_number in range(rounds))
    contested = store.get_expense(business_id="b1", expense_id="contested")
    assert contested.version == 10 * (rounds - 1) + 2
    assert contested.category == "worker-2"
    assert store.count_expenses(business_id="b1") == 2 * rounds * 30 + 1
    dynamodb_client(REGION).delete_table(TableName=table)
