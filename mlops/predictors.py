"""Predictors: where the model's answers come from (in process by default)."""

import logging
import shutil
import time
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

from mlops.artefacts import ArtefactError, get_artefact_store, unpack_verified
from mlops.inference import IncompatibleModelError, load_bundle, predict_records
from mlops.models import ModelVersion

logger = logging.getLogger(__name__)


class PredictorUnavailable(Exception):
    """The model cannot answer now: no active version, or it failed to load or run."""


@dataclass(frozen=True)
class ModelPredictions:
    model_version: str
    # Per record, the ranked {"category", "confidence"} dicts of predict_records.
    results: list[list[dict]]


class InProcessPredictor:
    """Serves the active model version from this process's memory.

    Every ACTIVE_MODEL_CHECK_SECONDS it asks the registry which version is active and loads a
    new one when it changed, so web workers switch versions without a restart. If a new version
    fails to load, the previous one keeps serving.
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
        except (ArtefactError, IncompatibleModelError, OSError, ValueError) as exc:
            self._load_error = f"Cannot load model {active.version}: {exc}"
            self._failed_version = active.version
            logger.error(
                "Loading the active model failed; keeping the previous one",
                extra={"model_version": active.version, "error": str(exc)},
            )
            return
        self._bundle, self._version, self._load_error, self._failed_version = bundle, active.version, "", None
        logger.info("Loaded model version", extra={"model_version": active.version})


def load_version_bundle(version: ModelVersion) -> dict:
    """Fetch, verify and load a registered version's bundle."""
    archive = get_artefact_store().read(version.artefact_uri)
    folder = unpack_verified(archive=archive, expected_sha256=version.artefact_sha256, version=version.version)
    try:
        return load_bundle(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@lru_cache(maxsize=1)
def get_predictor() -> InProcessPredictor:
    """Return the process-wide predictor chosen by the PREDICTOR setting."""
    return InProcessPredictor()
