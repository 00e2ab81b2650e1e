"""Predictors: where the model's predictions come from (in process by default, or a SageMaker endpoint)."""

import gc
import json
import logging
import random
import shutil
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from mlops import aws
from mlops.artefacts import ArtefactError, get_artefact_store, unpack_verified
from mlops.inference import JSON_CONTENT_TYPE, IncompatibleModelError, load_bundle, predict_records
from mlops.models import ModelVersion

logger = logging.getLogger(__name__)

# Full-jitter backoff between SageMaker attempts: a random wait up to base * 2**attempt seconds,
# capped, so that many workers throttled together do not retry in step.
RETRY_BACKOFF_BASE_SECONDS = 0.05
RETRY_BACKOFF_MAX_SECONDS = 1.0
# When the active version cannot be loaded and this process has no model yet, it tries at most
# this many previously activated versions, newest activation first. Each try reads, checksums
# and unpacks an artefact, so the bound keeps a start-up after a bad activation short.
FALLBACK_MAX_VERSIONS = 3


class PredictorUnavailable(Exception):
    """The model cannot predict now: no active version, or it failed to load or run."""


@dataclass(frozen=True)
class ModelPredictions:
    model_version: str
    # Per record, the ranked {"category", "confidence"} dicts of predict_records.
    results: list[list[dict]]


class InProcessPredictor:
    """Serves the active model version from this process's memory.

    Every ACTIVE_MODEL_CHECK_SECONDS it asks the registry which version is active and loads a
    new one when it changed, so web workers switch versions without a restart. If a new version
    fails to load, the previous one keeps serving. A process that has no model yet, such as one
    started after an incompatible version was activated, serves the most recently activated
    version that loads instead, and reports that version as model_version.
    """

    def __init__(self):
        self._bundle = None
        self._version = None
        self._checked_at = float("-inf")
        self._load_error = ""
        # A version that failed to load is not read again until another version is activated:
        # reading, checksumming and unpacking a large artefact on every check would load the
        # process for nothing.
        self._failed_version = None

    def predict(self, records: list[dict], *, top_k: int) -> ModelPredictions:
        bundle = self._current_bundle()
        if bundle is None:
            raise PredictorUnavailable(self._load_error or "No model version is active yet.")
        return ModelPredictions(model_version=self._version, results=predict_records(bundle, records, top_k))

    def status(self) -> dict:
        """Return the loaded version and any load error, for the health check."""
        self._current_bundle()
        return {"model_version": self._version, "error": self._load_error or None}

    def _current_bundle(self):
        now = time.monotonic()
        # Without a model every call asks the registry, so the first activation is seen at once.
        if self._bundle is not None and now - self._checked_at < settings.ACTIVE_MODEL_CHECK_SECONDS:
            return self._bundle
        self._checked_at = now

        active = ModelVersion.objects.filter(is_active=True).only("version", "artefact_uri", "artefact_sha256").first()
        if active is None:
            self._bundle, self._version = None, None
            self._load_error = "No model version is active yet."
            return None
        if active.version not in (self._version, self._failed_version):
            self._load(active)
        return self._bundle

    def _load(self, active: ModelVersion) -> None:
        try:
            bundle = load_version_bundle(active)
        except LOAD_ERRORS as exc:
            self._load_error = f"Cannot load model {active.version}: {exc}"
            self._failed_version = active.version
            logger.error(
                "Loading the active model failed; keeping the previous one",
                extra={"model_version": active.version, "error": str(exc)},
            )
            if self._bundle is None:
                self._load_fallback(failed=active)
            return
        self._bundle, self._version, self._load_error, self._failed_version = bundle, active.version, "", None
        logger.info("Loaded model version", extra={"model_version": active.version})
        if settings.MODEL_GC_FREEZE:
            _freeze_requested.set()

    def _load_fallback(self, *, failed: ModelVersion) -> None:
        """Load the most recently activated version other than `failed` that loads, trying FALLBACK_MAX_VERSIONS.

        Runs once per failed activation, because the failed version is not loaded again, so the
        fallback is logged once.
        """
        candidates = (
            ModelVersion.objects.filter(activated_at__isnull=False)
            .exclude(version=failed.version)
            .only("version", "artefact_uri", "artefact_sha256")
            .order_by("-activated_at")[:FALLBACK_MAX_VERSIONS]
        )
        for candidate in candidates:
            try:
                bundle = load_version_bundle(candidate)
            except LOAD_ERRORS as exc:
                logger.warning(
                    "Cannot load fallback model version; trying an older one",
                    extra={"model_version": candidate.version, "error": str(exc)},
                )
                continue
            self._bundle, self._version = bundle, candidate.version
            logger.warning(
                "Serving a previously activated model because the active one cannot be loaded",
                extra={"model_version": candidate.version, "active_version": failed.version},
            )
            if settings.MODEL_GC_FREEZE:
                _freeze_requested.set()
            return
        logger.error(
            "No previously activated model version loads; predictions go without the model",
            extra={"active_version": failed.version, "versions_tried": len(candidates)},
        )


# The exceptions of load_version_bundle for an artefact that is missing, changed, or built for
# another scikit-learn version or feature schema.
LOAD_ERRORS = (ArtefactError, IncompatibleModelError, OSError, ValueError)


# Set when a model has loaded in this process and MODEL_GC_FREEZE is on.
_freeze_requested = threading.Event()


def freeze_after_model_load() -> bool:
    """Move every object alive now out of the cyclic GC's scans if a model loaded since the last call.

    The web worker's WSGI entry point (config/wsgi.py) calls it before each request. The objects
    frozen are then the loaded model and the modules imported so far, not those of the request
    that loaded the model, because frozen objects in a reference cycle are never collected. A full
    collection walked all of them: 85 to 100 ms, about 0.4 times per 1,000-expense batch, a quarter
    of the batch's CPU time. Frozen objects are still freed when nothing refers to them, so a
    replaced model's memory returns. Returns whether it froze.
    """
    if not _freeze_requested.is_set():
        return False
    _freeze_requested.clear()
    gc.collect()
    gc.freeze()
    return True


def load_version_bundle(version: ModelVersion) -> dict:
    """Fetch, verify and load a registered version's bundle."""
    archive = get_artefact_store().read(version.artefact_uri)
    folder = unpack_verified(archive=archive, expected_sha256=version.artefact_sha256, version=version.version)
    try:
        return load_bundle(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class SageMakerPredictor:
    """Serves predictions from a SageMaker endpoint running mlops.inference.

    Each attempt is bounded by the runtime client's read timeout, and the whole prediction by
    SAGEMAKER_INVOKE_DEADLINE_SECONDS. Throttling, 5xx responses and timeouts are retried with
    full jitter while a whole attempt still fits before the deadline. A ModelError or any other
    4xx is not retried. Every failure raises PredictorUnavailable.
    """

    def __init__(
        self,
        *,
        endpoint_name: str,
        max_attempts: int,
        deadline_seconds: float,
        attempt_timeout_seconds: float,
    ):
        self.endpoint_name = endpoint_name
        self.max_attempts = max_attempts
        self.deadline_seconds = deadline_seconds
        self.attempt_timeout_seconds = attempt_timeout_seconds
        self._last_version = None
        self._last_error = ""

    @classmethod
    def from_settings(cls) -> "SageMakerPredictor":
        return cls(
            endpoint_name=settings.SAGEMAKER_ENDPOINT_NAME,
            max_attempts=settings.SAGEMAKER_INVOKE_MAX_ATTEMPTS,
            deadline_seconds=settings.SAGEMAKER_INVOKE_DEADLINE_SECONDS,
            attempt_timeout_seconds=settings.SAGEMAKER_INVOKE_TIMEOUT_SECONDS,
        )

    def predict(self, records: list[dict], *, top_k: int) -> ModelPredictions:
        if not records:
            return ModelPredictions(model_version=self._last_version, results=[])
        body = json.dumps({"instances": records, "top_k": top_k})
        try:
            payload = self._invoke_with_retries(body)
            predictions = parse_endpoint_response(payload, expected_count=len(records))
        except PredictorUnavailable as exc:
            self._last_error = str(exc)
            raise
        self._last_version, self._last_error = predictions.model_version, ""
        return predictions

    def status(self) -> dict:
        """Return the version and error of the last prediction, without invoking the endpoint.

        Before the first prediction the version is the registry's active one, which a deploy
        activates only once the endpoint serves it.
        """
        if self._last_version is None and not self._last_error:
            active = ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()
            return {"model_version": active, "error": None if active else "No model version is active yet."}
        return {"model_version": self._last_version, "error": self._last_error or None}

    def _invoke_with_retries(self, body: str) -> bytes:
        deadline = time.monotonic() + self.deadline_seconds
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._invoke(body)
            except (BotoCoreError, ClientError) as exc:
                error = exc
            detail = {"endpoint": self.endpoint_name, "attempt": attempt, "error": str(error)[:500]}
            if not aws.is_transient(error):
                logger.warning("SageMaker invocation failed; not retrying", extra=detail)
                raise PredictorUnavailable(f"SageMaker endpoint {self.endpoint_name} failed: {error}") from error

            backoff = random.uniform(0, min(RETRY_BACKOFF_MAX_SECONDS, RETRY_BACKOFF_BASE_SECONDS * 2**attempt))
            # Start another attempt only if it can run to its read timeout before the deadline.
            if time.monotonic() + backoff + self.attempt_timeout_seconds > deadline:
                break
            if attempt < self.max_attempts:
                logger.warning("SageMaker invocation failed; retrying", extra=detail)
                time.sleep(backoff)
        raise PredictorUnavailable(
            f"SageMaker endpoint {self.endpoint_name} did not respond after {attempt} attempt(s) "
            f"within {self.deadline_seconds} s: {error}"
        ) from error

    def _invoke(self, body: str) -> bytes:
        response = aws.sagemaker_runtime_client().invoke_endpoint(
            EndpointName=self.endpoint_name, Body=body, ContentType=JSON_CONTENT_TYPE, Accept=JSON_CONTENT_TYPE
        )
        return response["Body"].read()


def parse_endpoint_response(payload: bytes, *, expected_count: int) -> ModelPredictions:
    """Check an endpoint's output_fn body and return it as ModelPredictions."""
    try:
        answer = json.loads(payload)
    except ValueError as exc:
        raise PredictorUnavailable(f"SageMaker endpoint returned a body that is not JSON: {payload[:200]!r}") from exc
    results = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(results, list) or len(results) != expected_count:
        raise PredictorUnavailable(
            f"SageMaker endpoint returned {payload[:200]!r}; expected "
            f'{{"model_version": ..., "predictions": [...]}} with {expected_count} prediction(s).'
        )
    for ranked in results:
        if not isinstance(ranked, list) or not all(_is_candidate(candidate) for candidate in ranked):
            raise PredictorUnavailable(
                f"SageMaker endpoint returned an invalid prediction {ranked!r:.200}; expected a list of "
                '{"category": str, "confidence": number}.'
            )
    return ModelPredictions(model_version=answer.get("model_version"), results=results)


def _is_candidate(candidate) -> bool:
    return (
        isinstance(candidate, dict)
        and isinstance(candidate.get("category"), str)
        and isinstance(candidate.get("confidence"), int | float)
    )


@lru_cache(maxsize=1)
def get_predictor() -> InProcessPredictor | SageMakerPredictor:
    """Return the process-wide predictor chosen by the PREDICTOR setting."""
    if settings.PREDICTOR == "sagemaker":
        return SageMakerPredictor.from_settings()
    return InProcessPredictor()
