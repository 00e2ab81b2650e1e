import datetime
import io
import tarfile

import pytest
from botocore.stub import Stubber
from django.utils import timezone

from mlops import aws
from mlops import deployment as deployment_module
from mlops.artefacts import S3ArtefactStore, parse_s3_uri, sha256_hex
from mlops.deployment import (
    DeploymentFailed,
    DeploymentRefused,
    deploy_version,
    package_inference_code,
    rollback_to,
    smoke_record,
)
from mlops.models import Deployment, ModelVersion
from tests.mlops.aws_doubles import (
    BUCKET,
    ENDPOINT,
    container_body,
    invoke_params,
    invoke_response,
)

CANDIDATE_ENDPOINT = f"{ENDPOINT}-candidate"


def _active_version() -> str | None:
    active = ModelVersion.objects.filter(is_active=True).first()
    return active.version if active else None


def _step_names(deployment: Deployment) -> list[tuple[str, str]]:
    return [(step["name"], step["status"]) for step in deployment.steps]


# In process


def test_deploy_in_process_activates_version(register_model, gate):
    previous = register_model(activate=True)
    candidate = register_model()

    deployment = deploy_version(version=candidate.version, requested_by="ml-staff")

    assert deployment.status == Deployment.Status.SUCCEEDED
    assert deployment.target == Deployment.Target.IN_PROCESS
    assert deployment.previous_version == previous
    assert deployment.gate["passed"] is True
    assert deployment.gate["comparison"] == {"top1_accuracy": [0.7, 0.71]}
    assert _step_names(deployment) == [("promotion gate", "succeeded"), ("activate version", "succeeded")]
    assert all(step["at"] for step in deployment.steps)
    assert gate.calls == [(candidate.version, previous.version)]
    assert _active_version() == candidate.version


def test_deploy_refused_by_gate(register_model, gate):
    previous = register_model(activate=True)
    candidate = register_model()
    gate.passed, gate.reason = False, "top-1 accuracy fell by 0.04"

    with pytest.raises(DeploymentRefused, match="Promotion gate failed: top-1 accuracy fell by 0.04"):
        deploy_version(version=candidate.version)

    deployment = Deployment.objects.get()
    assert deployment.status == Deployment.Status.REFUSED
    assert "top-1 accuracy fell by 0.04" in deployment.error
    assert deployment.gate["passed"] is False
    assert _active_version() == previous.version


def test_deploy_with_override_despite_gate(register_model, gate):
    register_model(activate=True)
    candidate = register_model()
    gate.passed, gate.reason = False, "top-1 accuracy fell by 0.04"

    deployment = deploy_version(version=candidate.version, override_reason="holdout predates the new chart")

    assert deployment.status == Deployment.Status.SUCCEEDED
    assert deployment.override_reason == "holdout predates the new chart"
    assert deployment.steps[0]["status"] == "overridden"
    assert "holdout predates the new chart" in deployment.steps[0]["detail"]
    assert _active_version() == candidate.version


def test_rollback_restores_earlier_version_without_gate(register_model, gate):
    earlier = register_model(activate=True)
    later = register_model(activate=True)

    deployment = rollback_to(version=earlier.version, requested_by="ml-staff")

    assert deployment.kind == Deployment.Kind.ROLLBACK
    assert deployment.previous_version == later
    assert deployment.steps[0]["status"] == "skipped"
    assert gate.calls == []
    assert _active_version() == earlier.version


def test_rollback_to_never_active_version(register_model, gate):
    register_model(activate=True)
    never_active = register_model()

    with pytest.raises(DeploymentRefused, match="has never been active"):
        rollback_to(version=never_active.version)

    assert not Deployment.objects.exists()


def test_deploy_active_version_is_noop(register_model, gate):
    active = register_model(activate=True)

    deployment = deploy_version(version=active.version)

    assert deployment.status == Deployment.Status.SUCCEEDED
    assert deployment.previous_version == deployment.model_version == active
    assert _step_names(deployment) == [("check active version", "skipped")]
    assert "already the active version" in deployment.steps[0]["detail"]
    assert gate.calls == []


def test_deploy_unregistered_version(db, gate):
    with pytest.raises(DeploymentRefused, match="Model version 'v-missing' is not registered"):
        deploy_version(version="v-missing")


def test_deploy_refused_while_another_in_progress(register_model, gate):
    previous = register_model(activate=True)
    running = Deployment.objects.create(model_version=register_model(), target="inprocess")
    candidate = register_model()

    with pytest.raises(DeploymentRefused, match=f"Deployment {running.pk} of .* is in progress"):
        deploy_version(version=candidate.version)

    assert Deployment.objects.get(model_version=candidate).status == Deployment.Status.REFUSED
    assert _active_version() == previous.version


def test_deploy_refused_when_first_deploys_race(register_model, gate, monkeypatch):
    # Two first deploys: no active row to lock, and the other one's in-progress row is written
    # between this deploy's check and its insert, as a second process would.
    first = register_model()
    candidate = register_model()
    original_abandon = deployment_module._abandon_stale_deployments

    def other_process_starts():
        original_abandon()
        monkeypatch.setattr(deployment_module, "_abandon_stale_deployments", original_abandon)
        Deployment.objects.create(model_version=first, target="inprocess")

    monkeypatch.setattr(deployment_module, "_abandon_stale_deployments", other_process_starts)
    monkeypatch.setattr(
        deployment_module.Deployment.objects, "filter", _hide_in_progress(deployment_module.Deployment.objects.filter)
    )

    with pytest.raises(DeploymentRefused, match="Another deployment started at the same moment"):
        deploy_version(version=candidate.version)

    assert Deployment.objects.get(model_version=candidate).status == Deployment.Status.REFUSED
    assert _active_version() is None


def _hide_in_progress(original_filter):
    """Make the in-progress check see nothing, as a check that ran just before the other insert."""

    def filter_(*args, **kwargs):
        if kwargs == {"status": Deployment.Status.IN_PROGRESS}:
            return Deployment.objects.none()
        return original_filter(*args, **kwargs)

    return filter_


def test_deploy_abandons_stale_in_progress(register_model, gate, settings):
    settings.SAGEMAKER_DEPLOY_TIMEOUT_SECONDS = 60
    register_model(activate=True)
    stale = Deployment.objects.create(model_version=register_model(), target="inprocess")
    Deployment.objects.filter(pk=stale.pk).update(created_at=timezone.now() - datetime.timedelta(minutes=4))
    candidate = register_model()

    deploy_version(version=candidate.version)

    stale.refresh_from_db()
    assert stale.status == Deployment.Status.FAILED
    assert stale.error.startswith("Abandoned")
    assert _active_version() == candidate.version


# SageMaker, control plane under moto


@pytest.fixture
def on_s3(moto_aws, sagemaker_settings):
    """Artefacts on the local filesystem, SageMaker uploads to the moto bucket."""
    return S3ArtefactStore.from_uri(sagemaker_settings.SAGEMAKER_MODEL_DATA_URI)


def test_sagemaker_first_deploy_creates_endpoint(register_model, gate, on_s3, runtime_stub):
    candidate = register_model()
    runtime_stub.add_response(
        "invoke_endpoint",
        invoke_response(container_body(candidate, [smoke_record(candidate)], 1)),
        invoke_params([smoke_record(candidate)], 1, endpoint=CANDIDATE_ENDPOINT),
    )

    deployment = deploy_version(version=candidate.version)

    assert deployment.status == Deployment.Status.SUCCEEDED, deployment.error
    assert deployment.endpoint_name == ENDPOINT
    assert [name for name, status in _step_names(deployment) if status != "succeeded"] == []
    assert [name for name, _ in _step_names(deployment)][-4:] == [
        "delete candidate endpoint",
        "create or update endpoint",
        "wait for endpoint",
        "activate version",
    ]
    sagemaker = aws.sagemaker_client()
    resource = f"{ENDPOINT}-{candidate.version}"
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", resource)
    model = sagemaker.describe_model(ModelName=resource)["PrimaryContainer"]
    assert model["ModelDataUrl"] == on_s3.uri_for(candidate.version)
    assert model["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert model["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"].endswith(f"/{candidate.version}/sourcedir.tar.gz")
    assert on_s3.stored_sha256(model["ModelDataUrl"]) == candidate.artefact_sha256
    with pytest.raises(sagemaker.exceptions.ClientError, match="Could not find endpoint"):
        sagemaker.describe_endpoint(EndpointName=CANDIDATE_ENDPOINT)
    assert _active_version() == candidate.version


def test_sagemaker_smoke_invocation_catches_json_rejection(register_model, gate, on_s3, runtime_stub):
    previous = register_model(activate=True)
    candidate = register_model()
    runtime_stub.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received client error (415) from primary: Unsupported content type application/json",
        http_status_code=424,
    )

    with pytest.raises(DeploymentFailed, match="Smoke invocation of .*-candidate failed: .*Unsupported content type"):
        deploy_version(version=candidate.version)

    deployment = Deployment.objects.get()
    assert deployment.status == Deployment.Status.FAILED
    assert ("smoke invocation", "failed") in _step_names(deployment)
    assert _step_names(deployment)[-1] == ("delete candidate endpoint", "succeeded")
    assert _active_version() == previous.version
    # The production endpoint was never created, so no traffic reached the new container.
    with pytest.raises(aws.sagemaker_client().exceptions.ClientError, match="Could not find endpoint"):
        aws.sagemaker_client().describe_endpoint(EndpointName=ENDPOINT)


def test_sagemaker_smoke_invocation_checks_answering_version(register_model, gate, on_s3, runtime_stub):
    stale = register_model()
    candidate = register_model()
    runtime_stub.add_response("invoke_endpoint", invoke_response(container_body(stale, [smoke_record(stale)], 1)))

    with pytest.raises(DeploymentFailed, match=f"prediction of model '{stale.version}', not {candidate.version}"):
        deploy_version(version=candidate.version)

    assert _active_version() is None


def test_sagemaker_redeploy_reuses_model_and_artefact(register_model, gate, on_s3, runtime_stub):
    earlier = register_model()
    later = register_model()
    for version in (earlier, later, earlier):
        runtime_stub.add_response(
            "invoke_endpoint", invoke_response(container_body(version, [smoke_record(version)], 1))
        )
    deploy_version(version=earlier.version)
    # moto has no UpdateEndpoint, so the second and third deploys replace the endpoint between runs.
    aws.sagemaker_client().delete_endpoint(EndpointName=ENDPOINT)
    deploy_version(version=later.version)
    aws.sagemaker_client().delete_endpoint(EndpointName=ENDPOINT)

    deployment = rollback_to(version=earlier.version)

    steps = {step["name"]: step["detail"] for step in deployment.steps}
    assert steps["create model"].endswith("exists; reused")
    assert steps["create endpoint config"].endswith("exists; reused")
    assert _active_version() == earlier.version


def test_sagemaker_deploy_rejects_mismatched_upload(register_model, gate, on_s3):
    candidate = register_model()
    on_s3.save(version=candidate.version, archive=b"another artefact")

    with pytest.raises(DeploymentFailed, match=f"contains an artefact with SHA-256 {sha256_hex(b'another artefact')}"):
        deploy_version(version=candidate.version)

    assert _step_names(Deployment.objects.get())[-1] == ("upload artefact", "failed")


def test_sagemaker_deploy_from_s3_artefact_store(register_model, gate, moto_aws, sagemaker_settings, runtime_stub):
    sagemaker_settings.ARTEFACT_STORE = f"s3://{BUCKET}/models"
    sagemaker_settings.SAGEMAKER_MODEL_DATA_URI = ""
    candidate = register_model()
    runtime_stub.add_response(
        "invoke_endpoint", invoke_response(container_body(candidate, [smoke_record(candidate)], 1))
    )

    deployment = deploy_version(version=candidate.version)

    assert {step["name"]: step["detail"] for step in deployment.steps}["upload artefact"] == candidate.artefact_uri
    bucket, key = parse_s3_uri(candidate.artefact_uri.replace("model.tar.gz", "sourcedir.tar.gz"))
    assert aws.s3_client().head_object(Bucket=bucket, Key=key)["ContentLength"] > 0


def test_sagemaker_deploy_needs_upload_location(register_model, gate, moto_aws, sagemaker_settings):
    sagemaker_settings.SAGEMAKER_MODEL_DATA_URI = ""
    previous = register_model(activate=True)
    candidate = register_model()

    with pytest.raises(DeploymentFailed, match="set SAGEMAKER_MODEL_DATA_URI"):
        deploy_version(version=candidate.version)

    assert _active_version() == previous.version


def test_sagemaker_deploy_needs_role(register_model, gate, on_s3, sagemaker_settings):
    sagemaker_settings.SAGEMAKER_ROLE_ARN = ""
    candidate = register_model()

    with pytest.raises(DeploymentFailed, match="SAGEMAKER_ROLE_ARN must be set"):
        deploy_version(version=candidate.version)

    assert Deployment.objects.get().status == Deployment.Status.FAILED


def test_package_inference_code_contains_entry_point():
    archive = package_inference_code("1.9.1")

    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        names = set(tar.getnames())
        entry = tar.extractfile("inference.py").read().decode()
        requirements = tar.extractfile("requirements.txt").read().decode()

    assert {"inference.py", "mlops/inference.py", "mlops/features.py", "lookup/normalisation.py"} <= names
    assert "from mlops.inference import input_fn, model_fn, output_fn, predict_fn" in entry
    assert requirements == "scikit-learn==1.9.1\n"


# SageMaker, control plane stubbed: moto has no UpdateEndpoint.


def _endpoint(name: str, status: str, config: str, failure: str = "") -> dict:
    now = datetime.datetime(2026, 12, 4, tzinfo=datetime.UTC)
    described = {
        "EndpointName": name,
        "EndpointArn": f"arn:aws:sagemaker:eu-west-2:123456789012:endpoint/{name}",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": now,
        "LastModifiedTime": now,
    }
    if failure:
        described["FailureReason"] = failure
    return described


class ControlPlane:
    """Queues SageMaker control-plane responses on a Stubber, in the order deploy_version makes the calls."""

    def __init__(self, stubber: Stubber, resource: str):
        self.stubber = stubber
        self.resource = resource

    def missing_endpoint(self, name: str):
        self.stubber.add_client_error(
            "describe_endpoint",
            service_error_code="ValidationException",
            service_message=f"Could not find endpoint '{name}'.",
            http_status_code=400,
            expected_params={"EndpointName": name},
        )

    def endpoint(self, name: str, status: str, config: str, failure: str = ""):
        self.stubber.add_response("describe_endpoint", _endpoint(name, status, config, failure), {"EndpointName": name})

    def create_resources_and_candidate(self):
        self.stubber.add_client_error("describe_model", service_error_code="ValidationException", http_status_code=400)
        self.stubber.add_response("create_model", {"ModelArn": f"arn:aws:sagemaker:::model/{self.resource}"})
        self.stubber.add_client_error(
            "describe_endpoint_config", service_error_code="ValidationException", http_status_code=400
        )
        self.stubber.add_response(
            "create_endpoint_config", {"EndpointConfigArn": f"arn:aws:sagemaker:::endpoint-config/{self.resource}"}
        )
        self.stubber.add_response(
            "create_endpoint",
            {"EndpointArn": "arn:aws:sagemaker:::endpoint/candidate"},
            {"EndpointName": CANDIDATE_ENDPOINT, "EndpointConfigName": self.resource},
        )

    def delete_candidate(self):
        self.stubber.add_response("delete_endpoint", {}, {"EndpointName": CANDIDATE_ENDPOINT})

    def update_endpoint(self):
        self.stubber.add_response(
            "update_endpoint",
            {"EndpointArn": f"arn:aws:sagemaker:::endpoint/{ENDPOINT}"},
            {"EndpointName": ENDPOINT, "EndpointConfigName": self.resource},
        )


@pytest.fixture
def control_plane(on_s3):
    def stub(resource: str) -> ControlPlane:
        return ControlPlane(stubber, resource)

    stubber = Stubber(aws.sagemaker_client())
    with stubber:
        yield stub
    stubber.assert_no_pending_responses()


def test_sagemaker_updates_existing_endpoint(register_model, gate, control_plane, runtime_stub):
    previous = register_model(activate=True)
    candidate = register_model()
    resource = f"{ENDPOINT}-{candidate.version}"
    plane = control_plane(resource)
    plane.missing_endpoint(CANDIDATE_ENDPOINT)
    plane.endpoint(ENDPOINT, "InService", f"{ENDPOINT}-{previous.version}")
    plane.create_resources_and_candidate()
    plane.endpoint(CANDIDATE_ENDPOINT, "Creating", resource)
    plane.endpoint(CANDIDATE_ENDPOINT, "InService", resource)
    runtime_stub.add_response(
        "invoke_endpoint",
        invoke_response(container_body(candidate, [smoke_record(candidate)], 1)),
        invoke_params([smoke_record(candidate)], 1, endpoint=CANDIDATE_ENDPOINT),
    )
    plane.delete_candidate()
    plane.endpoint(ENDPOINT, "InService", f"{ENDPOINT}-{previous.version}")
    plane.update_endpoint()
    plane.endpoint(ENDPOINT, "Updating", f"{ENDPOINT}-{previous.version}")
    plane.endpoint(ENDPOINT, "InService", resource)

    deployment = deploy_version(version=candidate.version)

    assert deployment.status == Deployment.Status.SUCCEEDED, deployment.error
    steps = {step["name"]: step["detail"] for step in deployment.steps}
    assert steps["create or update endpoint"] == f"updating {ENDPOINT} to {resource}"
    assert _active_version() == candidate.version


def test_sagemaker_failed_update_keeps_previous_version(register_model, gate, control_plane, runtime_stub):
    previous = register_model(activate=True)
    candidate = register_model()
    resource = f"{ENDPOINT}-{candidate.version}"
    previous_config = f"{ENDPOINT}-{previous.version}"
    plane = control_plane(resource)
    plane.missing_endpoint(CANDIDATE_ENDPOINT)
    plane.endpoint(ENDPOINT, "InService", previous_config)
    plane.create_resources_and_candidate()
    plane.endpoint(CANDIDATE_ENDPOINT, "InService", resource)
    runtime_stub.add_response(
        "invoke_endpoint", invoke_response(container_body(candidate, [smoke_record(candidate)], 1))
    )
    plane.delete_candidate()
    plane.endpoint(ENDPOINT, "InService", previous_config)
    plane.update_endpoint()
    # SageMaker returns an endpoint whose update failed to service on its previous configuration.
    plane.endpoint(ENDPOINT, "InService", previous_config, failure="Insufficient capacity for ml.m5.large")

    with pytest.raises(DeploymentFailed, match=f"InService with {previous_config}, not {resource}: Insufficient"):
        deploy_version(version=candidate.version)

    assert Deployment.objects.get().status == Deployment.Status.FAILED
    assert _active_version() == previous.version


def test_sagemaker_candidate_wait_times_out(register_model, gate, control_plane, sagemaker_settings):
    sagemaker_settings.SAGEMAKER_DEPLOY_TIMEOUT_SECONDS = 0
    previous = register_model(activate=True)
    candidate = register_model()
    resource = f"{ENDPOINT}-{candidate.version}"
    plane = control_plane(resource)
    plane.missing_endpoint(CANDIDATE_ENDPOINT)
    plane.endpoint(ENDPOINT, "InService", f"{ENDPOINT}-{previous.version}")
    plane.create_resources_and_candidate()
    plane.endpoint(CANDIDATE_ENDPOINT, "Creating", resource)
    plane.delete_candidate()

    with pytest.raises(DeploymentFailed, match="still Creating after 0 s"):
        deploy_version(version=candidate.version)

    assert ("wait for candidate endpoint", "failed") in _step_names(Deployment.objects.get())
    assert _active_version() == previous.version


@pytest.mark.parametrize("status", ["Updating", "Creating", "RollingBack"])
def test_sagemaker_refused_while_endpoint_busy(register_model, gate, control_plane, status):
    previous = register_model(activate=True)
    candidate = register_model()
    plane = control_plane(f"{ENDPOINT}-{candidate.version}")
    plane.missing_endpoint(CANDIDATE_ENDPOINT)
    plane.endpoint(ENDPOINT, status, f"{ENDPOINT}-{previous.version}")

    with pytest.raises(DeploymentRefused, match=f"Endpoint {ENDPOINT} is {status}; wait until it is InService"):
        deploy_version(version=candidate.version)

    assert Deployment.objects.get().status == Deployment.Status.REFUSED
    assert _active_version() == previous.version


def test_sagemaker_refused_while_candidate_endpoint_exists(register_model, gate, control_plane):
    candidate = register_model()
    plane = control_plane(f"{ENDPOINT}-{candidate.version}")
    plane.endpoint(CANDIDATE_ENDPOINT, "InService", "other-config")

    with pytest.raises(DeploymentRefused, match=f"Candidate endpoint {CANDIDATE_ENDPOINT} exists"):
        deploy_version(version=candidate.version)


def test_sagemaker_throttled_describe_fails_deployment(register_model, gate, control_plane, sagemaker_settings):
    sagemaker_settings.SAGEMAKER_CONTROL_MAX_ATTEMPTS = 1
    previous = register_model(activate=True)
    candidate = register_model()
    plane = control_plane(f"{ENDPOINT}-{candidate.version}")
    plane.stubber.add_client_error("describe_endpoint", service_error_code="ThrottlingException", http_status_code=400)

    with pytest.raises(DeploymentFailed, match="DescribeEndpoint failed, retry later"):
        deploy_version(version=candidate.version)

    assert _active_version() == previous.version
