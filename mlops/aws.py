"""Clients for S3, SageMaker and sagemaker-runtime: one of each per process, with explicit timeouts.

Only mlops uses them: the S3 artefact store, deployment and the SageMaker predictor. S3 and the
SageMaker control plane use botocore's standard retry mode. The runtime client makes a single
attempt per call, because the SageMaker predictor retries itself within a per-request deadline
and must not retry a ModelError.
"""

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.conf import settings

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from botocore.loaders import Loader

logger = logging.getLogger(__name__)

# Error codes that mean "try again later".
TRANSIENT_ERROR_CODES = frozenset(
    {
        "InternalDependencyException",
        "InternalFailure",
        "InternalServerError",
        "ModelNotReadyException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "SlowDown",
        "ThrottlingException",
    }
)

# The error code of InvokeEndpoint when the container itself returned an error. A retry sends the
# same input to the same container, so it is permanent whatever status code the container returned.
MODEL_ERROR_CODE = "ModelError"

_clients: dict[tuple[int, str], "BaseClient"] = {}
_clients_lock = threading.Lock()
# Parsing a service's API model takes most of the half second that building a client costs, so
# every session shares one loader and its cache. Clients are only built under _clients_lock.
# botocore's client modules are imported with the first client, not with this module: every web
# worker imports this module, and they add about 20 MB to its memory.
_loader: "Loader | None" = None


class AwsError(Exception):
    """An S3 or SageMaker call failed in a way that retrying will not fix."""


class AwsUnavailable(AwsError):
    """An S3 or SageMaker call was throttled, timed out or met a server error, so a retry may succeed."""


def s3_client() -> "BaseClient":
    return _client("s3")


def sagemaker_client() -> "BaseClient":
    return _client("sagemaker")


def sagemaker_runtime_client() -> "BaseClient":
    return _client("sagemaker-runtime")


def reset_clients() -> None:
    """Drop every cached client, so the next call builds one from the current settings."""
    with _clients_lock:
        _clients.clear()


def _client(service: str) -> "BaseClient":
    # The key includes the process id because a client built before a fork (a Celery prefork
    # worker) shares its connection pool with the parent.
    key = (os.getpid(), service)
    client = _clients.get(key)
    if client is not None:
        return client
    with _clients_lock:
        if key not in _clients:
            _clients[key] = _build_client(service)
        return _clients[key]


def _build_client(service: str) -> "BaseClient":
    global _loader
    import botocore.session
    from botocore.config import Config
    from botocore.loaders import create_loader

    if _loader is None:
        _loader = create_loader()
    if service == "sagemaker-runtime":
        config = Config(
            connect_timeout=settings.SAGEMAKER_CONNECT_TIMEOUT_SECONDS,
            read_timeout=settings.SAGEMAKER_INVOKE_TIMEOUT_SECONDS,
            retries={"mode": "standard", "total_max_attempts": 1},
        )
    else:
        config = Config(
            connect_timeout=settings.SAGEMAKER_CONNECT_TIMEOUT_SECONDS,
            # Uploads of a large artefact and DescribeEndpoint share this client, so the read
            # timeout is generous; the deploy timeout bounds the whole deployment.
            read_timeout=60,
            retries={"mode": "standard", "total_max_attempts": settings.SAGEMAKER_CONTROL_MAX_ATTEMPTS},
        )
    # A session per client, because a botocore session is not safe to share between threads. The
    # client is the one boto3.client() would return, without boto3's resource layer.
    session = botocore.session.get_session()
    session.register_component("data_loader", _loader)
    return session.create_client(service, region_name=settings.AWS_REGION, config=config)


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def is_transient(exc: BotoCoreError | ClientError) -> bool:
    """Return True for throttling, 5xx responses, connection failures and timeouts, never a ModelError."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code == MODEL_ERROR_CODE:
            return False
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return code in TRANSIENT_ERROR_CODES or status >= 500
    # ConnectionError covers refused connections and connect timeouts, HTTPClientError read
    # timeouts and dropped connections. Other BotoCoreErrors (no credentials, no region, invalid
    # parameters) fail the same way on every retry.
    return isinstance(exc, (BotoConnectionError, HTTPClientError))


@contextlib.contextmanager
def translated_errors(action: str, **ids: str) -> Iterator[None]:
    """Turn botocore's exceptions raised inside the block into AwsUnavailable or AwsError.

    Both are logged with the ids given. Errors the caller expects, such as a missing object or
    endpoint, must be caught inside the block.
    """
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        detail = {"action": action, **ids, "error": str(exc)[:500]}
        if is_transient(exc):
            logger.warning("AWS %s failed, retry later", action, extra=detail)
            raise AwsUnavailable(f"{action} failed, retry later: {exc}") from exc
        logger.error("AWS %s failed", action, extra=detail)
        raise AwsError(f"{action} failed: {exc}") from exc
