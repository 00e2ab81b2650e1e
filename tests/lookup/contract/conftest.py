"""The lookup store adapters under test, each behind one `store` fixture.

`store` runs every contract test against:
- sql: the SQL adapter on the test database (SQLite by default, PostgreSQL when DATABASE_URL
  points at one);
- dynamodb-moto: the DynamoDB adapter under moto's mock_aws;
- dynamodb-local: the DynamoDB adapter on DynamoDB Local, started on 127.0.0.1 for the session.

CONTRACT_STORES (a comma-separated list of those names) narrows the run, for example to `sql`
for the PostgreSQL pass. Outside CI, the DynamoDB Local tests skip when Java or npm is missing;
with CI=true they fail instead.
"""

import os
import uuid

import pytest
from moto import mock_aws

from lookup.aws import dynamodb_client, reset_clients
from lookup.stores.dynamodb import DynamoDBLookupStore
from lookup.stores.dynamodb_table import ensure_table
from lookup.stores.sql import SqlLookupStore
from tests.support.dynamodb_local import started_server

ALL_STORES = ("sql", "dynamodb-moto", "dynamodb-local")
SELECTED_STORES = tuple(name.strip() for name in os.environ.get("CONTRACT_STORES", ",".join(ALL_STORES)).split(","))
REGION = "eu-west-2"

unknown = set(SELECTED_STORES) - set(ALL_STORES)
if unknown:
    raise pytest.UsageError(f"CONTRACT_STORES names unknown stores {sorted(unknown)}; expected some of {ALL_STORES}.")


@pytest.fixture(autouse=True)
def offline_aws_credentials(monkeypatch):
    """Fake credentials and no metadata lookups, so boto3 never looks beyond this machine."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    reset_clients()
    yield
    reset_clients()


@pytest.fixture(scope="session")
def dynamodb_local(tmp_path_factory):
    """A DynamoDB Local server that lives for the test session."""
    with started_server(tmp_path_factory.mktemp("dynamodb-local") / "server.log") as server:
        yield server


def serialise_moto_transactions(monkeypatch) -> None:
    """Send apply_many's transactions one at a time, because moto's are not thread-safe.

    moto 5.2.6 deep-copies the table at the start of each TransactWriteItems call, with no lock,
    so a second call writing at the same time raises "dictionary changed size during iteration".
    DynamoDB Local and DynamoDB take concurrent transactions.
    """
    monkeypatch.setattr("lookup.stores.dynamodb.WRITE_THREADS", 1)


def _dynamodb_store() -> DynamoDBLookupStore:
    table_name = f"lookup-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb_client(REGION), table_name, timeout_seconds=30)
    return DynamoDBLookupStore(table_name=table_name, region=REGION)


# The SQL case carries the django_db mark, so pytest-django sets up the test database even when
# only this suite runs (it looks for the mark on the collected tests, not on fixtures they request).
@pytest.fixture(
    params=[
        pytest.param(name, id=name, marks=[pytest.mark.django_db] if name == "sql" else [])
        for name in ALL_STORES
        if name in SELECTED_STORES
    ]
)
def store(request, monkeypatch):
    """A fresh, empty lookup store of each adapter."""
    if request.param == "sql":
        request.getfixturevalue("db")
        yield SqlLookupStore()
    elif request.param == "dynamodb-moto":
        serialise_moto_transactions(monkeypatch)
        with mock_aws():
            yield _dynamodb_store()
    else:
        server = request.getfixturevalue("dynamodb_local")
        settings = request.getfixturevalue("settings")
        # DynamoDB Local is a Java server on the same 2 cores as the tests: under a loaded machine
        # one call can take seconds, which the production read timeout would report as an outage.
        settings.DYNAMODB_READ_TIMEOUT_SECONDS = 15.0
        settings.DYNAMODB_MAX_ATTEMPTS = 5
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", server.endpoint_url)
        reset_clients()
        store = _dynamodb_store()
        yield store
        dynamodb_client(REGION).delete_table(TableName=store.table_name)


@pytest.fixture
def store_name(request) -> str:
    """The name of the adapter the `store` fixture built for this test."""
    return request.node.callspec.params["store"]
