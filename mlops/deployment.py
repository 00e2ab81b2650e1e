"""Deploying and rolling back model versions, in process or to a SageMaker endpoint.

Every deploy is a Deployment row that records each step as it runs. The registry's active
version changes only in the last step, so a deploy that fails at any earlier step leaves the
previous version serving.

On SageMaker the new model first runs on a temporary candidate endpoint. A smoke invocation must
return a valid prediction there before the production endpoint is created or updated, so a
container that rejects the predictor's requests never receives traffic.
"""

import contextlib
import datetime
import io
import logging
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

from botocore.exceptions import ClientError
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from mlops import aws
from mlops.artefacts import ArtefactError, FilesystemArtefactStore, S3ArtefactStore, get_artefact_store
from mlops.models import Deployment, ModelVersion
from mlops.predictors import PredictorUnavailable, SageMakerPredictor
from mlops.services import activate_version

logger = logging.getLogger(__name__)

# Endpoint states in which SageMaker rejects an update, or another deploy is changing it.
BUSY_ENDPOINT_STATES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
VARIANT_NAME = "AllTraffic"
CANDIDATE_SUFFIX = "-candidate"
# SageMaker names: at most 63 letters, digits and hyphens.
MAX_SAGEMAKER_NAME_LENGTH = 63
CODE_ARCHIVE_NAME = "sourcedir.tar.gz"
# The modules the serving container needs: the entry points and the feature code they import.
INFERENCE_MODULES = (
    "mlops/__init__.py",
    "mlops/inference.py",
    "mlops/business_models.py",
    "mlops/features.py",
    "mlops/serving_features.py",
)
INFERENCE_MODULES += ("lookup/__init__.py", "lookup/normalisation.py")
INFERENCE_ENTRY_POINT = "from mlops.inference import input_fn, model_fn, output_fn, predict_fn  # noqa: F401\n"
# A known expense for the smoke invocation, sent as the version's largest business, because the
# model suggests only the categories of businesses it was trained on. Any valid ranking passes.
SMOKE_RECORD = {"business_id": "smoke-test", "supplier": "Trainline", "amount": "45.00", "currency": "GBP"}
# A container may still be loading the model on its first requests, so the smoke invocation
# retries timeouts for longer than a prediction does. Each attempt keeps the predictor's read timeout.
SMOKE_MAX_ATTEMPTS = 10
SMOKE_DEADLINE_SECONDS = 60.0


class DeploymentError(Exception):
    """A deployment could not start or did not finish, so the previous version keeps serving."""


class DeploymentRefused(DeploymentError):
    """A deployment was not started: failed promotion gate, another deploy running, or a busy endpoint."""


class DeploymentFailed(DeploymentError):
    """A deployment step failed; the Deployment row records which one and why."""


def deploy_version(
    *, version: str, requested_by: str = "", override_reason: str = "", kind: str = "deploy"
) -> Deployment:
    """Deploy a registered version to the PREDICTOR target and make it the active version.

    Returns the finished Deployment. Deploying the active version records a succeeded Deployment
    whose previous_version is the version itself and changes nothing. Raises DeploymentRefused
    (recorded as refused) when the promotion gate fails without an override_reason, or another
    deployment or the endpoint is busy, and DeploymentFailed (recorded as failed) when a step fails.
    """
    if kind not in Deployment.Kind.values:
        raise ValueError(f"kind={kind!r} is invalid; expected one of {Deployment.Kind.values}.")
    candidate = _registered_version(version)
    active = ModelVersion.objects.filter(is_active=True).first()
    deployment = Deployment(
        model_version=candidate,
        previous_version=active,
        target=settings.PREDICTOR,
        kind=kind,
        override_reason=override_reason.strip(),
        requested_by=requested_by,
    )
    if active == candidate:
        _record_already_active(deployment)
        return deployment

    if kind == Deployment.Kind.DEPLOY:
        refusal = _check_gate(deployment, candidate=candidate, active=active)
    else:
        deployment.steps.append(_step_entry("promotion gate", "skipped", "a roll-back skips the promotion gate"))
        refusal = ""
    _start(deployment, refusal=refusal)

    try:
        if deployment.target == Deployment.Target.SAGEMAKER:
            _deploy_to_sagemaker(deployment, candidate)
        with _step(deployment, "activate version") as entry:
            activate_version(version=candidate.version)
            entry["detail"] = f"{candidate.version} is the active version"
    except (DeploymentFailed, aws.AwsError, ArtefactError) as exc:
        _finish(deployment, Deployment.Status.FAILED, error=str(exc))
        logger.error(
            "Deployment failed", extra={"deployment": deployment.pk, "model_version": version, "error": str(exc)[:500]}
        )
        raise DeploymentFailed(f"Deploying {version} failed: {exc}") from exc
    except DeploymentRefused as exc:
        _finish(deployment, Deployment.Status.REFUSED, error=str(exc))
        raise
    except Exception as exc:
        _finish(deployment, Deployment.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise

    _finish(deployment, Deployment.Status.SUCCEEDED)
    logger.info("Deployment succeeded", extra={"deployment": deployment.pk, "model_version": version})
    return deployment


def rollback_to(*, version: str, requested_by: str = "") -> Deployment:
    """Deploy an earlier version again, without the promotion gate.

    Only a version that has been active before can be rolled back to, so the gate cannot be
    bypassed for a version that never passed it or was never deployed with an override.
    """
    earlier = _registered_version(version)
    if earlier.activated_at is None:
        raise DeploymentRefused(
            f"{version} has never been active, so it cannot be rolled back to; deploy it instead, "
            "which runs the promotion gate."
        )
    return deploy_version(version=version, requested_by=requested_by, kind=Deployment.Kind.ROLLBACK)


def _registered_version(version: str) -> ModelVersion:
    try:
        return ModelVersion.objects.get(version=version)
    except ModelVersion.DoesNotExist:
        raise DeploymentRefused(f"Model version {version!r} is not registered.") from None


def _check_gate(deployment: Deployment, *, candidate: ModelVersion, active: ModelVersion | None) -> str:
    """Run the promotion gate and record it. Return the refusal reason, or "" when the deploy may go on."""
    # Imported here because the promotion module depends on evaluation code this module does not need.
    from mlops.promotion import check_promotion_gate

    gate = check_promotion_gate(candidate=candidate, active=active)
    deployment.gate = {"passed": gate.passed, "reason": gate.reason, "comparison": gate.comparison}
    if gate.passed:
        deployment.steps.append(_step_entry("promotion gate", "succeeded", gate.reason))
        return ""
    if deployment.override_reason:
        detail = f"failed ({gate.reason}); overridden: {deployment.override_reason}"
        deployment.steps.append(_step_entry("promotion gate", "overridden", detail))
        return ""
    deployment.steps.append(_step_entry("promotion gate", "failed", gate.reason))
    return f"Promotion gate failed: {gate.reason}. Give an override reason to deploy anyway."


def _start(deployment: Deployment, *, refusal: str) -> None:
    """Save the deployment as in progress, or as refused and raise DeploymentRefused if it may not start."""
    try:
        with transaction.atomic():
            # Locking the active version's row makes two deploys that start together take turns;
            # with no active version, the one_deployment_in_progress constraint stops the second.
            list(ModelVersion.objects.select_for_update().filter(is_active=True))
            _abandon_stale_deployments()
            running = Deployment.objects.filter(status=Deployment.Status.IN_PROGRESS).first()
            if not refusal and running is not None:
                refusal = (
                    f"Deployment {running.pk} of {running.model_version} is in progress since "
                    f"{running.created_at:%Y-%m-%d %H:%M:%S} UTC; wait for it to finish."
                )
            if refusal:
                _mark_refused(deployment, refusal)
            deployment.save()
    except IntegrityError:
        refusal = "Another deployment started at the same moment; wait for it to finish."
        deployment.pk = None
        _mark_refused(deployment, refusal)
        deployment.save()
    if refusal:
        logger.warning(
            "Deployment refused: %s",
            refusal,
            extra={"deployment": deployment.pk, "model_version": deployment.model_version.version},
        )
        raise DeploymentRefused(refusal)


def _mark_refused(deployment: Deployment, refusal: str) -> None:
    deployment.status = Deployment.Status.REFUSED
    deployment.error = refusal
    deployment.finished_at = timezone.now()


def _abandon_stale_deployments() -> None:
    # A deploy waits for at most two endpoints, each up to the deploy timeout. A row still in
    # progress well after that belongs to a process that died, and must not block deploys forever.
    cutoff = timezone.now() - datetime.timedelta(seconds=3 * settings.SAGEMAKER_DEPLOY_TIMEOUT_SECONDS)
    Deployment.objects.filter(status=Deployment.Status.IN_PROGRESS, created_at__lt=cutoff).update(
        status=Deployment.Status.FAILED,
        error="Abandoned: the deploying process stopped before the deployment finished.",
        finished_at=timezone.now(),
    )


def _record_already_active(deployment: Deployment) -> None:
    detail = f"{deployment.model_version} is already the active version; nothing was deployed"
    deployment.steps.append(_step_entry("check active version", "skipped", detail))
    deployment.status = Deployment.Status.SUCCEEDED
    deployment.finished_at = timezone.now()
    deployment.save()
    logger.info("Deployment skipped: version already active", extra={"model_version": str(deployment.model_version)})


def _finish(deployment: Deployment, status: str, *, error: str = "") -> None:
    deployment.status = status
    deployment.error = error
    deployment.finished_at = timezone.now()
    deployment.save(update_fields=["status", "error", "finished_at", "steps", "endpoint_name"])


def _step_entry(name: str, status: str, detail: str = "") -> dict:
    return {"name": name, "status": status, "at": timezone.now().isoformat(), "detail": detail}


@contextlib.contextmanager
def _step(deployment: Deployment, name: str) -> Iterator[dict]:
    """Record a step as running, then as succeeded or failed. The block may set entry["detail"]."""
    entry = _step_entry(name, "running")
    deployment.steps.append(entry)
    deployment.save(update_fields=["steps"])
    try:
        yield entry
    except Exception as exc:
        entry.update(status="failed", at=timezone.now().isoformat(), detail=str(exc)[:1000])
        deployment.save(update_fields=["steps"])
        raise
    entry.update(status="succeeded", at=timezone.now().isoformat())
    deployment.save(update_fields=["steps"])


# SageMaker


def _deploy_to_sagemaker(deployment: Deployment, candidate: ModelVersion) -> None:
    endpoint = settings.SAGEMAKER_ENDPOINT_NAME
    candidate_endpoint = f"{endpoint}{CANDIDATE_SUFFIX}"
    resource_name = f"{endpoint}-{candidate.version}"
    deployment.endpoint_name = endpoint
    _check_sagemaker_settings(resource_name=resource_name, candidate_endpoint=candidate_endpoint)

    with _step(deployment, "check endpoints") as entry:
        entry["detail"] = _check_endpoints_idle(endpoint=endpoint, candidate_endpoint=candidate_endpoint)
    with _step(deployment, "upload artefact") as entry:
        model_data_uri = _upload_artefact(candidate)
        entry["detail"] = model_data_uri
    with _step(deployment, "upload inference code") as entry:
        code_uri = _upload_inference_code(candidate)
        entry["detail"] = code_uri
    with _step(deployment, "create model") as entry:
        entry["detail"] = _create_model(resource_name, model_data_uri=model_data_uri, code_uri=code_uri)
    with _step(deployment, "create endpoint config") as entry:
        entry["detail"] = _create_endpoint_config(resource_name)

    try:
        with _step(deployment, "create candidate endpoint") as entry:
            _create_endpoint(candidate_endpoint, config_name=resource_name)
            entry["detail"] = candidate_endpoint
        with _step(deployment, "wait for candidate endpoint") as entry:
            entry["detail"] = _wait_in_service(candidate_endpoint, config_name=resource_name)
        with _step(deployment, "smoke invocation") as entry:
            entry["detail"] = _smoke_invocation(candidate_endpoint, candidate)
    finally:
        with _step(deployment, "delete candidate endpoint") as entry:
            entry["detail"] = _delete_endpoint(candidate_endpoint)

    with _step(deployment, "create or update endpoint") as entry:
        entry["detail"] = _create_or_update_endpoint(endpoint, config_name=resource_name)
    with _step(deployment, "wait for endpoint") as entry:
        entry["detail"] = _wait_in_service(endpoint, config_name=resource_name)


def _check_sagemaker_settings(*, resource_name: str, candidate_endpoint: str) -> None:
    missing = [name for name in ("SAGEMAKER_ROLE_ARN", "SAGEMAKER_IMAGE_URI") if not getattr(settings, name)]
    if missing:
        raise DeploymentFailed(f"{' and '.join(missing)} must be set to deploy to SageMaker.")
    for name in (resource_name, candidate_endpoint):
        if len(name) > MAX_SAGEMAKER_NAME_LENGTH:
            raise DeploymentFailed(
                f"SageMaker name {name!r} is longer than {MAX_SAGEMAKER_NAME_LENGTH} characters; "
                "shorten SAGEMAKER_ENDPOINT_NAME."
            )


def _call(action: str, request):
    """Run request(sagemaker_client) with botocore's errors turned into AwsError or AwsUnavailable."""
    with aws.translated_errors(f"SageMaker {action}"):
        return request(aws.sagemaker_client())


def _describe_endpoint(name: str) -> dict | None:
    """Return DescribeEndpoint's response, or None if the endpoint does not exist."""
    with aws.translated_errors("SageMaker DescribeEndpoint", endpoint=name):
        try:
            return aws.sagemaker_client().describe_endpoint(EndpointName=name)
        except ClientError as exc:
            # SageMaker reports a missing endpoint as a ValidationException "Could not find endpoint".
            if aws.error_code(exc) == "ValidationException" and "Could not find" in str(exc):
                return None
            raise


def _check_endpoints_idle(*, endpoint: str, candidate_endpoint: str) -> str:
    if _describe_endpoint(candidate_endpoint) is not None:
        raise DeploymentRefused(
            f"Candidate endpoint {candidate_endpoint} exists, so another deployment is using it or one "
            "stopped before deleting it; wait for it or delete that endpoint, then deploy again."
        )
    described = _describe_endpoint(endpoint)
    if described is None:
        return f"{endpoint} does not exist yet; it will be created"
    status = described["EndpointStatus"]
    if status in BUSY_ENDPOINT_STATES:
        raise DeploymentRefused(f"Endpoint {endpoint} is {status}; wait until it is InService and deploy again.")
    if status != "InService":
        raise DeploymentRefused(
            f"Endpoint {endpoint} is {status} ({described.get('FailureReason', 'no reason given')}); "
            "delete it and deploy again."
        )
    return f"{endpoint} is InService with {described['EndpointConfigName']}"


def _upload_location() -> S3ArtefactStore:
    if settings.SAGEMAKER_MODEL_DATA_URI:
        return S3ArtefactStore.from_uri(settings.SAGEMAKER_MODEL_DATA_URI)
    store = get_artefact_store()
    if isinstance(store, S3ArtefactStore):
        return store
    raise DeploymentFailed(
        "The artefact store is a local folder; set SAGEMAKER_MODEL_DATA_URI to an s3://bucket/prefix "
        "that SageMaker can read, or use an s3:// ARTEFACT_STORE."
    )


def _upload_artefact(candidate: ModelVersion) -> str:
    """Return the S3 URI of the version's model.tar.gz, uploading it first if it is not on S3."""
    if candidate.artefact_uri.startswith("s3://"):
        source = S3ArtefactStore.from_uri(candidate.artefact_uri)
        if source.stored_sha256(candidate.artefact_uri) is None:
            raise DeploymentFailed(f"Artefact {candidate.artefact_uri} of {candidate.version} is missing from S3.")
        return candidate.artefact_uri

    target = _upload_location()
    uri = target.uri_for(candidate.version)
    stored = target.stored_sha256(uri)
    if stored == candidate.artefact_sha256:
        return uri
    if stored is not None:
        raise DeploymentFailed(
            f"{uri} contains an artefact with SHA-256 {stored or 'unknown'}, but the registry records "
            f"{candidate.artefact_sha256} for {candidate.version}; remove the object and deploy again."
        )
    archive = FilesystemArtefactStore(settings.ARTEFACT_STORE).read(candidate.artefact_uri)
    return target.save(version=candidate.version, archive=archive)


def _upload_inference_code(candidate: ModelVersion) -> str:
    """Upload the container's code for this version once and return its S3 URI.

    The artefact stays as registered (its checksum covers it), so the code goes in a separate
    sourcedir.tar.gz that SAGEMAKER_SUBMIT_DIRECTORY points to. A roll-back reuses the code that
    was uploaded with the version.
    """
    target = _upload_location()
    bucket, prefix = target.bucket, target.prefix
    key = f"{prefix}/{candidate.version}/{CODE_ARCHIVE_NAME}" if prefix else f"{candidate.version}/{CODE_ARCHIVE_NAME}"
    uri = f"s3://{bucket}/{key}"
    with aws.translated_errors("S3 PutObject", bucket=bucket, key=key, model_version=candidate.version):
        try:
            aws.s3_client().put_object(
                Bucket=bucket, Key=key, Body=package_inference_code(candidate.sklearn_version), IfNoneMatch="*"
            )
        except ClientError as exc:
            if aws.error_code(exc) != "PreconditionFailed":
                raise
    return uri


def package_inference_code(sklearn_version: str) -> bytes:
    """Return a sourcedir.tar.gz with the inference modules, an entry point and pinned scikit-learn.

    The scikit-learn container installs requirements.txt before it loads the model, so the model
    is unpickled by the scikit-learn version it was trained with, which the loader also checks.
    """
    root = Path(__file__).resolve().parent.parent
    files = {path: (root / path).read_bytes() for path in INFERENCE_MODULES}
    files["inference.py"] = INFERENCE_ENTRY_POINT.encode()
    files["requirements.txt"] = f"scikit-learn=={sklearn_version}\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _create_model(name: str, *, model_data_uri: str, code_uri: str) -> str:
    if _exists(lambda client: client.describe_model(ModelName=name)):
        return f"{name} exists; reused"
    _call(
        "CreateModel",
        lambda client: client.create_model(
            ModelName=name,
            ExecutionRoleArn=settings.SAGEMAKER_ROLE_ARN,
            PrimaryContainer={
                "Image": settings.SAGEMAKER_IMAGE_URI,
                "ModelDataUrl": model_data_uri,
                "Environment": {
                    "SAGEMAKER_PROGRAM": "inference.py",
                    "SAGEMAKER_SUBMIT_DIRECTORY": code_uri,
                    "SAGEMAKER_REGION": settings.AWS_REGION,
                },
            },
        ),
    )
    return name


def _create_endpoint_config(name: str) -> str:
    if _exists(lambda client: client.describe_endpoint_config(EndpointConfigName=name)):
        return f"{name} exists; reused"
    variant = {
        "VariantName": VARIANT_NAME,
        "ModelName": name,
        "InstanceType": settings.SAGEMAKER_INSTANCE_TYPE,
        "InitialInstanceCount": settings.SAGEMAKER_INSTANCE_COUNT,
        "InitialVariantWeight": 1.0,
    }
    _call(
        "CreateEndpointConfig",
        lambda client: client.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant]),
    )
    return name


def _exists(describe) -> bool:
    """Return whether a SageMaker Describe call finds its resource (a ValidationException if not)."""
    with aws.translated_errors("SageMaker Describe"):
        try:
            describe(aws.sagemaker_client())
        except ClientError as exc:
            if aws.error_code(exc) == "ValidationException":
                return False
            raise
    return True


def _create_endpoint(endpoint: str, *, config_name: str) -> None:
    _call(
        "CreateEndpoint", lambda client: client.create_endpoint(EndpointName=endpoint, EndpointConfigName=config_name)
    )


def _create_or_update_endpoint(endpoint: str, *, config_name: str) -> str:
    if _describe_endpoint(endpoint) is None:
        _create_endpoint(endpoint, config_name=config_name)
        return f"created {endpoint} with {config_name}"
    _call(
        "UpdateEndpoint", lambda client: client.update_endpoint(EndpointName=endpoint, EndpointConfigName=config_name)
    )
    return f"updating {endpoint} to {config_name}"


def _wait_in_service(endpoint: str, *, config_name: str) -> str:
    """Poll until the endpoint is InService with config_name, up to SAGEMAKER_DEPLOY_TIMEOUT_SECONDS."""
    started = time.monotonic()
    deadline = started + settings.SAGEMAKER_DEPLOY_TIMEOUT_SECONDS
    while True:
        described = _describe_endpoint(endpoint)
        if described is None:
            raise DeploymentFailed(f"Endpoint {endpoint} disappeared while waiting for it to be InService.")
        status = described["EndpointStatus"]
        if status == "InService":
            break
        if status == "Failed":
            raise DeploymentFailed(f"Endpoint {endpoint} failed: {described.get('FailureReason', 'no reason given')}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeploymentFailed(
                f"Endpoint {endpoint} was still {status} after {settings.SAGEMAKER_DEPLOY_TIMEOUT_SECONDS} s; "
                "raise SAGEMAKER_DEPLOY_TIMEOUT_SECONDS or check the endpoint in the SageMaker console."
            )
        time.sleep(min(settings.SAGEMAKER_DEPLOY_POLL_SECONDS, remaining))

    # A failed update returns the endpoint to InService on its previous configuration.
    if described["EndpointConfigName"] != config_name:
        raise DeploymentFailed(
            f"Endpoint {endpoint} is InService with {described['EndpointConfigName']}, not {config_name}: "
            f"{described.get('FailureReason', 'the update did not take effect')}"
        )
    return f"{endpoint} InService after {time.monotonic() - started:.0f} s"


def smoke_record(candidate: ModelVersion) -> dict:
    """Return the smoke invocation's expense, as the candidate's largest business."""
    return SMOKE_RECORD | {"business_id": candidate.metrics.get("largest_business", SMOKE_RECORD["business_id"])}


def _smoke_invocation(endpoint: str, candidate: ModelVersion) -> str:
    """Invoke the endpoint as the predictor does and check that the new version returns a valid prediction."""
    predictor = SageMakerPredictor(
        endpoint_name=endpoint,
        max_attempts=SMOKE_MAX_ATTEMPTS,
        deadline_seconds=SMOKE_DEADLINE_SECONDS,
        attempt_timeout_seconds=settings.SAGEMAKER_INVOKE_TIMEOUT_SECONDS,
    )
    try:
        answer = predictor.predict([smoke_record(candidate)], top_k=1)
    except PredictorUnavailable as exc:
        raise DeploymentFailed(f"Smoke invocation of {endpoint} failed: {exc}") from exc
    if answer.model_version != candidate.version:
        raise DeploymentFailed(
            f"Smoke invocation of {endpoint} returned a prediction of model {answer.model_version!r}, "
            f"not {candidate.version}."
        )
    ranked = answer.results[0]
    if not ranked or ranked[0]["category"] not in candidate.labels:
        raise DeploymentFailed(
            f"Smoke invocation of {endpoint} returned {ranked!r}; expected one of the version's categories."
        )
    return f"predicted {ranked[0]['category']} ({ranked[0]['confidence']})"


def _delete_endpoint(endpoint: str) -> str:
    # Best effort: the endpoint may not exist (creation failed) or may still be Creating, and a
    # failure here must not hide the error of the step that ran before.
    try:
        with aws.translated_errors("SageMaker DeleteEndpoint", endpoint=endpoint):
            try:
                aws.sagemaker_client().delete_endpoint(EndpointName=endpoint)
            except ClientError as exc:
                if aws.error_code(exc) == "ValidationException" and "Could not find" in str(exc):
                    return f"{endpoint} did not exist"
                raise
    except aws.AwsError as exc:
        logger.warning("Deleting the candidate endpoint failed", extra={"endpoint": endpoint, "error": str(exc)})
        return f"could not delete {endpoint}; delete it before the next deploy: {exc}"
    return f"deleted {endpoint}"
