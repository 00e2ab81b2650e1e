"""Field cases C16 and C17: SageMaker throttling under concurrent calls, and predictions during a deploy.

Everything runs against in-process doubles: no request leaves this machine.
"""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError
from django.db import connection

from categorisation import calibration
from lookup.models import OverrideRule
from mlops import aws
from mlops.deployment import deploy_version
from mlops.models import Deployment, ModelVersion
from mlops.predictors import PredictorUnavailable, SageMakerPredictor
from tests.factories import expense_payload

CONCURRENT_CALLS = 200
# Calls whose number leaves these remainders are throttled: a third of all calls. Half of those
# are throttled on every attempt, the other half only on the first.
THROTTLED_ALWAYS = 0
THROTTLED_ONCE = 3
# Calls that get a 4xx ModelError, which must never be retried: numbers 1, 49, 97, 145 and 193,
# none of which is throttled.
MODEL_ERROR_EVERY = 48
# How long the whole concurrent run may take before the test gives up waiting, in seconds.
RUN_TIMEOUT_SECONDS = 120


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} from the test endpoint"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "InvokeEndpoint",
    )


class ThrottlingEndpoint:
    """A thread-safe sagemaker-runtime double that throttles a third of the calls it receives.

    A call is named by the supplier of its one record ("call-17"). The double records when each
    attempt of each call started.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.attempts: dict[int, list[float]] = {}

    def invoke_endpoint(self, *, EndpointName, Body, ContentType, Accept):  # noqa: N803 (boto3's names)
        number = int(json.loads(Body)["instances"][0]["supplier"].removeprefix("call-"))
        with self._lock:
            attempts = self.attempts.setdefault(number, [])
            attempts.append(time.monotonic())
            attempt = len(attempts)
        if number % MODEL_ERROR_EVERY == 1:
            raise _client_error("ModelError", 424)
        if number % 6 == THROTTLED_ALWAYS or (number % 6 == THROTTLED_ONCE and attempt == 1):
            raise _client_error("ThrottlingException", 400)
        body = json.dumps(
            {"model_version": "v1", "predictions": [[{"category": "Travel", "confidence": 0.9}]]}
        ).encode()
        return {"Body": _Body(body), "ContentType": Accept}


class _Body:
    def __init__(self, data: bytes):
        self._data = data

    def read(self) -> bytes:
        return self._data


@pytest.fixture
def throttling_endpoint(sagemaker_settings, monkeypatch):
    endpoint = ThrottlingEndpoint()
    monkeypatch.setattr(aws, "sagemaker_runtime_client", lambda: endpoint)
    return endpoint


def test_c16_third_of_200_concurrent_calls_throttled(throttling_endpoint, sagemaker_settings):
    predictor = SageMakerPredictor.from_settings()
    start = threading.Event()
    started_at: dict[int, float] = {}

    def call(number: int):
        start.wait(timeout=RUN_TIMEOUT_SECONDS)
        started_at[number] = time.monotonic()
        record = {"business_id": "b1", "supplier": f"call-{number}", "amount": "45.00", "currency": "GBP"}
        try:
            return predictor.predict([record], top_k=1)
        except PredictorUnavailable as exc:
            return exc

    with ThreadPoolExecutor(max_workers=CONCURRENT_CALLS) as pool:
        futures = [pool.submit(call, number) for number in range(CONCURRENT_CALLS)]
        start.set()
        outcomes = [future.result(timeout=RUN_TIMEOUT_SECONDS) for future in futures]

    throttled = [number for number in range(CONCURRENT_CALLS) if number % 6 in (THROTTLED_ALWAYS, THROTTLED_ONCE)]
    assert len(throttled) == CONCURRENT_CALLS // 3 + 1
    max_attempts = sagemaker_settings.SAGEMAKER_INVOKE_MAX_ATTEMPTS
    deadline = sagemaker_settings.SAGEMAKER_INVOKE_DEADLINE_SECONDS
    for number, outcome in enumerate(outcomes):
        attempts = throttling_endpoint.attempts[number]
        # Every attempt started within the call's deadline, and there were at most max_attempts.
        assert len(attempts) <= max_attempts, (number, len(attempts))
        assert attempts[-1] <= started_at[number] + deadline, number
        if number % MODEL_ERROR_EVERY == 1:
            assert isinstance(outcome, PredictorUnavailable), number
            assert len(attempts) == 1, f"call {number}: a ModelError was retried"
        elif number % 6 == THROTTLED_ALWAYS:
            assert isinstance(outcome, PredictorUnavailable), number
            assert "ThrottlingException" in str(outcome)
            assert len(attempts) > 1, f"call {number}: throttling was not retried"
        elif number % 6 == THROTTLED_ONCE:
            assert not isinstance(outcome, Exception), (number, outcome)
            assert len(attempts) == 2, number
        else:
            assert not isinstance(outcome, Exception), (number, outcome)
            assert len(attempts) == 1, f"call {number}: an answered call was retried"
            assert outcome.results == [[{"category": "Travel", "confidence": 0.9}]]


def test_c16_throttled_call_degrades_prediction(throttling_endpoint, api_client):
    # Call 0 is throttled on every attempt: the prediction still returns 200, without the model.
    OverrideRule.objects.create(business_id="b1", supplier_value="call-0", category="Travel")

    response = api_client.post("/api/v1/predictions", expense_payload(supplier="call-0"), format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["degraded"] == ["model"]
    assert body["categories"][0]["category"] == "Travel"
    assert body["categories"][0]["source"] == "rule"


# Predictions sent while the deploy waits inside its promotion gate, then while it activates.
PREDICTIONS_DURING_GATE = 10
MAX_PREDICTIONS_DURING_ACTIVATION = 50


@pytest.fixture
def blocking_gate(monkeypatch):
    """A promotion gate that passes, but only once the test releases it."""
    entered, release = threading.Event(), threading.Event()

    def check_promotion_gate(*, candidate, active):
        entered.set()
        assert release.wait(timeout=RUN_TIMEOUT_SECONDS), "the test never released the gate"
        return SimpleNamespace(passed=True, reason="not worse than the active version", comparison={})

    monkeypatch.setattr("mlops.promotion.check_promotion_gate", check_promotion_gate)
    return entered, release


@pytest.mark.django_db(transaction=True)
def test_c17_predictions_answer_during_deploy(register_model, blocking_gate, api_client):
    entered, release = blocking_gate
    previous = register_model(activate=True)
    candidate = register_model()
    outcome = {}

    def deploy():
        try:
            outcome["deployment"] = deploy_version(version=candidate.version, requested_by="ml-staff")
        except Exception as exc:  # noqa: BLE001 (reported by the main thread's assert)
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=deploy, name="deploy")
    thread.start()
    try:
        assert entered.wait(timeout=RUN_TIMEOUT_SECONDS), "the deploy never reached its promotion gate"
        during_gate = [post_prediction(api_client) for _ in range(PREDICTIONS_DURING_GATE)]
        release.set()
        during_activation = []
        while thread.is_alive() and len(during_activation) < MAX_PREDICTIONS_DURING_ACTIVATION:
            during_activation.append(post_prediction(api_client))
    finally:
        release.set()
        thread.join(timeout=RUN_TIMEOUT_SECONDS)

    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["deployment"].status == Deployment.Status.SUCCEEDED
    for status, body in during_gate:
        assert status == 200, body
        assert body["model_version"] == previous.version, body
    for status, body in during_activation:
        assert status == 200, body
        assert body["model_version"] in (previous.version, candidate.version, None), body
    status, body = post_prediction(api_client)
    assert status == 200, body
    assert body["model_version"] == candidate.version
    assert body["tier"] in (calibration.AUTO_APPLY, calibration.SUGGEST, calibration.ABSTAIN)
    assert ModelVersion.objects.get(is_active=True).version == candidate.version


def post_prediction(client) -> tuple[int, dict]:
    response = client.post("/api/v1/predictions", expense_payload(supplier="Trainline 12"), format="json")
    return response.status_code, response.json()
