import datetime
import socket
import threading
import time
from decimal import Decimal

import pytest

from categorisation.services import predict_expenses
from mlops import aws
from mlops.predictors import InProcessPredictor, PredictorUnavailable, SageMakerPredictor, get_predictor
from tests.mlops.aws_doubles import (
    container_body,
    invoke_params,
    invoke_response,
)
from tests.mlops.synthetic import synthetic_records

RECORD = {"business_id": "b1", "supplier": "Trainline 12", "amount": "45.00", "currency": "GBP"}
VALID_BODY = b'{"model_version": "v1", "predictions": [[{"category": "Travel", "confidence": 0.9}]]}'


@pytest.fixture
def predictor(sagemaker_settings) -> SageMakerPredictor:
    return SageMakerPredictor.from_settings()


class HangingServer:
    """A loopback TCP server that accepts connections and never sends a response."""

    def __init__(self):
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._open = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self):
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._open.append(connection)

    def stop(self):
        self._stopped.set()
        self._thread.join(timeout=2)
        for connection in self._open:
            connection.close()
        self._listener.close()


@pytest.fixture
def hanging_endpoint(sagemaker_settings, monkeypatch):
    """Point sagemaker-runtime at a container that hangs; yields the server."""
    server = HangingServer()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", server.url)
    aws.reset_clients()
    # The first client parses botocore's service model, which can take longer than these tests'
    # deadlines. A worker does that once, so the build must not count against a deadline.
    aws.sagemaker_runtime_client()
    yield server
    server.stop()


def test_predictor_matches_in_process_predictor(register_model, runtime_stub, predictor):
    version = register_model(activate=True)
    records = [record for record, _, _ in synthetic_records(8, seed=7)]
    runtime_stub.add_response(
        "invoke_endpoint", invoke_response(container_body(version, records, 3)), invoke_params(records, 3)
    )

    remote = predictor.predict(records, top_k=3)
    local = InProcessPredictor().predict(records, top_k=3)

    assert remote == local
    assert predictor.status() == {"model_version": version.version, "error": None}


def test_predictor_does_not_retry_model_error(runtime_stub, predictor):
    runtime_stub.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received client error (415)",
        http_status_code=424,
    )
    runtime_stub.add_response("invoke_endpoint", invoke_response(VALID_BODY))

    with pytest.raises(PredictorUnavailable, match="ModelError"):
        predictor.predict([RECORD], top_k=1)
    # The second queued response was not used by a retry, so the next prediction gets it.
    assert predictor.predict([RECORD], top_k=1).model_version == "v1"


def test_predictor_does_not_retry_validation_error(runtime_stub, predictor):
    runtime_stub.add_client_error("invoke_endpoint", service_error_code="ValidationException", http_status_code=400)
    runtime_stub.add_response("invoke_endpoint", invoke_response(VALID_BODY))

    with pytest.raises(PredictorUnavailable, match="ValidationException"):
        predictor.predict([RECORD], top_k=1)
    assert predictor.predict([RECORD], top_k=1).model_version == "v1"


@pytest.mark.parametrize(
    "code, status", [("ThrottlingException", 400), ("ServiceUnavailable", 503), ("InternalFailure", 500)]
)
def test_predictor_retries_transient_error(runtime_stub, predictor, code, status):
    runtime_stub.add_client_error("invoke_endpoint", service_error_code=code, http_status_code=status)
    runtime_stub.add_response("invoke_endpoint", invoke_response(VALID_BODY))

    answer = predictor.predict([RECORD], top_k=1)

    assert answer.results == [[{"category": "Travel", "confidence": 0.9}]]


def test_predictor_gives_up_after_max_attempts(runtime_stub, predictor):
    for _ in range(3):
        runtime_stub.add_client_error("invoke_endpoint", service_error_code="ThrottlingException", http_status_code=400)

    with pytest.raises(PredictorUnavailable, match=r"did not respond after 3 attempt\(s\)"):
        predictor.predict([RECORD], top_k=1)
    assert "ThrottlingException" in predictor.status()["error"]


@pytest.mark.parametrize(
    "body, message",
    [
        (b"<html>502</html>", "not JSON"),
        (b'{"predictions": []}', r"with 1 prediction\(s\)"),
        (b'{"predictions": [[{"category": 3}]]}', "invalid prediction"),
    ],
)
def test_predictor_rejects_invalid_body(runtime_stub, predictor, body, message):
    runtime_stub.add_response("invoke_endpoint", invoke_response(body))

    with pytest.raises(PredictorUnavailable, match=message):
        predictor.predict([RECORD], top_k=1)


def test_predictor_retries_read_timeout_bounded(hanging_endpoint, predictor):
    started = time.monotonic()

    with pytest.raises(PredictorUnavailable, match=r"after 3 attempt\(s\) within 2.0 s: Read timeout"):
        predictor.predict([RECORD], top_k=1)

    assert hanging_endpoint.connections == 3
    assert time.monotonic() - started < 2.0


def test_predictor_stops_at_deadline(hanging_endpoint, sagemaker_settings):
    sagemaker_settings.SAGEMAKER_INVOKE_DEADLINE_SECONDS = 0.5
    started = time.monotonic()

    with pytest.raises(PredictorUnavailable, match=r"after 1 attempt\(s\) within 0.5 s"):
        SageMakerPredictor.from_settings().predict([RECORD], top_k=1)

    assert hanging_endpoint.connections == 1
    assert time.monotonic() - started < 0.5


def test_get_predictor_by_setting(settings):
    settings.PREDICTOR = "sagemaker"
    settings.SAGEMAKER_ENDPOINT_NAME = "categoriser-prod"
    remote = get_predictor()
    get_predictor.cache_clear()
    settings.PREDICTOR = "inprocess"

    assert isinstance(remote, SageMakerPredictor)
    assert remote.endpoint_name == "categoriser-prod"
    assert isinstance(get_predictor(), InProcessPredictor)


def test_prediction_degraded_on_model_error(db, runtime_stub):
    runtime_stub.add_client_error("invoke_endpoint", service_error_code="ModelError", http_status_code=424)
    expense = {
        "business_id": "b1",
        "supplier": "Trainline",
        "amount": Decimal("45.00"),
        "currency": "GBP",
        "date": datetime.date(2026, 12, 1),
    }

    [prediction] = predict_expenses(expenses=[expense], top_k=3)

    assert prediction.degraded == ["model"]
    assert prediction.model_version is None


def test_predictor_status_before_first_prediction(register_model, predictor):
    assert predictor.status() == {"model_version": None, "error": "No model version is active yet."}

    version = register_model(activate=True)

    assert predictor.status() == {"model_version": version.version, "error": None}
