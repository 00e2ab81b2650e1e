"""The DynamoDB client: one per process and region, with explicit timeouts and adaptive retries.

Only the DynamoDB lookup store and its management commands use it. boto3 reads the endpoint
from AWS_ENDPOINT_URL_DYNAMODB when it is set (a local server in tests and development), and from
the region otherwise.
"""

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.conf import settings

from lookup.stores.base import LookupStoreError, LookupStoreUnavailable

logger = logging.getLogger(__name__)

# Error codes that mean "try again later": throttling, DynamoDB's own server-side failures, and a
# write that met another client's transaction on the same item.
TRANSIENT_ERROR_CODES = frozenset(
    {
        "InternalServerError",
        "LimitExceededException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "ThrottlingException",
        "TransactionConflictException",
        "TransactionInProgressException",
    }
)

# Connections each client keeps open: at least the lookup store's WRITE_THREADS (8). With fewer,
# urllib3 opens a connection for each thread beyond the pool and closes it after the call.
MAX_POOL_CONNECTIONS = 16

_clients: dict[tuple[int, str], BaseClient] = {}
_clients_lock = threading.Lock()


def dynamodb_client(region: str) -> BaseClient:
    """Return this process's DynamoDB client for the region, building it on first use.

    The cache is keyed by process id as well, because a client built before a fork (a Celery
    prefork worker) shares its connection pool with the parent and must not be reused.
    """
    key = (os.getpid(), region)
    client = _clients.get(key)
    if client is not None:
        return client
    with _clients_lock:
        if key not in _clients:
            _clients[key] = _build_client(region)
        return _clients[key]


def reset_clients() -> None:
    """Drop every cached client, so the next call builds one from the current environment."""
    with _clients_lock:
        _clients.clear()


def _build_client(region: str) -> BaseClient:
    config = Config(
        connect_timeout=settings.DYNAMODB_CONNECT_TIMEOUT_SECONDS,
        read_timeout=settings.DYNAMODB_READ_TIMEOUT_SECONDS,
        retries={"mode": "adaptive", "total_max_attempts": settings.DYNAMODB_MAX_ATTEMPTS},
        max_pool_connections=MAX_POOL_CONNECTIONS,
        # botocore checks every parameter against the service model before sending a request. For
        # a TransactWriteItems call of 100 puts that check costs more CPU than serialising them,
        # and DynamoDB validates the request again anyway (ValidationException).
        parameter_validation=False,
    )
    # A session per client: boto3's default session is not safe to share between threads.
    return boto3.session.Session().client("dynamodb", region_name=region, config=config)


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def is_transient(exc: BotoCoreError | ClientError) -> bool:
    """Return True for throttling, 5xx responses, connection failures and timeouts."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error_code(exc) in TRANSIENT_ERROR_CODES or status >= 500
    # ConnectionError covers refused connections and connect timeouts, HTTPClientError read
    # timeouts and dropped connections. Other BotoCoreErrors (no credentials, no region, invalid
    # parameters) will fail the same way on every retry.
    return isinstance(exc, (BotoConnectionError, HTTPClientError))


@contextlib.contextmanager
def translated_errors(action: str, *, business_id: str = "", expense_id: str = "") -> Iterator[None]:
    """Turn botocore's exceptions raised inside the block into the lookup store's own.

    Throttling, 5xx and connection errors become LookupStoreUnavailable; every other botocore
    error becomes LookupStoreError. Both are logged with the ids. Errors the caller expects, such
    as a failed write condition, must be caught inside the block.
    """
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        transient = is_transient(exc)
        detail = {"action": action, "business_id": business_id, "expense_id": expense_id, "error": str(exc)[:500]}
        if transient:
            logger.warning("DynamoDB %s failed, retry later", action, extra=detail)
            raise LookupStoreUnavailable(f"DynamoDB {action} failed, retry later: {exc}") from exc
        logger.exception("DynamoDB %s failed", action, extra=detail)
        raise LookupStoreError(f"DynamoDB {action} failed: {exc}") from exc
