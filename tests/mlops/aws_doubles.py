"""AWS test doubles for mlops: offline credentials, moto S3 and SageMaker, stubbed InvokeEndpoint.

tests/mlops/conftest.py imports the fixtures. Nothing reaches AWS: moto intercepts S3 and the
SageMaker control plane, botocore's Stubber returns the responses of InvokeEndpoint and UpdateEndpoint, and every
fixture that builds a client first sets fake credentials through offline_aws.
"""

import io
import json
import os
import shutil
from types import SimpleNamespace

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from mlops import aws
from mlops.artefacts import get_artefact_store, unpack_verified
from mlops.inference import input_fn, model_fn, output_fn, predict_fn

REGION = "eu-west-2"
BUCKET = "model-artefacts"
ENDPOINT = "expense-categoriser"
JSON = "application/json"


@pytest.fixture
def offline_aws(monkeypatch):
    """Fake credentials and no metadata lookups, so boto3 never looks beyond this machine."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    aws.reset_clients()
    yield
    aws.reset_clients()


@pytest.fixture
def moto_aws(offline_aws, settings):
    """moto's S3 and SageMaker with an empty artefact bucket."""
    settings.AWS_REGION = REGION
    with mock_aws():
        aws.s3_client().create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield


@pytest.fixture
def sagemaker_settings(offline_aws, settings):
    """Settings of a SageMaker deployment, with instant polling and short invocation timeouts."""
    settings.PREDICTOR = "sagemaker"
    settings.SAGEMAKER_ENDPOINT_NAME = ENDPOINT
    settings.SAGEMAKER_ROLE_ARN = "arn:aws:iam::123456789012:role/sagemaker-execution"
    settings.SAGEMAKER_IMAGE_URI = "123456789012.dkr.ecr.eu-west-2.amazonaws.com/sklearn-inference:1.2-1"
    settings.SAGEMAKER_MODEL_DATA_URI = f"s3://{BUCKET}/sagemaker"
    settings.SAGEMAKER_DEPLOY_TIMEOUT_SECONDS = 5
    settings.SAGEMAKER_DEPLOY_POLL_SECONDS = 0.0
    settings.SAGEMAKER_INVOKE_TIMEOUT_SECONDS = 0.3
    settings.SAGEMAKER_INVOKE_DEADLINE_SECONDS = 2.0
    settings.SAGEMAKER_INVOKE_MAX_ATTEMPTS = 3
    return settings


@pytest.fixture
def gate(monkeypatch):
    """Replace the promotion gate. Tests set gate.passed and gate.reason and read gate.calls."""
    state = SimpleNamespace(passed=True, reason="not worse than the active version", calls=[])

    def check_promotion_gate(*, candidate, active):
        state.calls.append((candidate.version, active.version if active else None))
        return SimpleNamespace(passed=state.passed, reason=state.reason, comparison={"top1_accuracy": [0.7, 0.71]})

    monkeypatch.setattr("mlops.promotion.check_promotion_gate", check_promotion_gate)
    return state


@pytest.fixture
def runtime_stub(sagemaker_settings):
    """A Stubber on the process's sagemaker-runtime client. Every queued response must be used."""
    stubber = Stubber(aws.sagemaker_runtime_client())
    with stubber:
        yield stubber
    stubber.assert_no_pending_responses()


def streaming(body: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(body), len(body))


def invoke_response(body: bytes) -> dict:
    return {"Body": streaming(body), "ContentType": JSON}


def invoke_params(records: list[dict], top_k: int, endpoint: str = ENDPOINT) -> dict:
    return {
        "EndpointName": endpoint,
        "Body": json.dumps({"instances": records, "top_k": top_k}),
        "ContentType": JSON,
        "Accept": JSON,
    }


def container_body(version, records: list[dict], top_k: int) -> bytes:
    """Return the body the SageMaker scikit-learn container returns: mlops.inference run on the real artefact."""
    archive = get_artefact_store().read(version.artefact_uri)
    folder = unpack_verified(archive=archive, expected_sha256=version.artefact_sha256, version=version.version)
    try:
        model = model_fn(str(folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    request = input_fn(json.dumps({"instances": records, "top_k": top_k}), JSON)
    body, _ = output_fn(predict_fn(request, model), JSON)
    return body.encode()
