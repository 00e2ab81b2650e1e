"""Model inference: the code the in-process predictor and the SageMaker container both run.

The SageMaker scikit-learn serving container imports this module as the entry point and calls
`model_fn`, `input_fn`, `predict_fn` and `output_fn`; the in-process predictor calls
`predict_records` on the same loaded bundle, so both return identical answers for one artefact.
"""

import collections
import json
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.utils.extmath import softmax

from mlops.features import FEATURE_SCHEMA, FEATURE_SCHEMA_VERSION, records_frame
from mlops.serving_features import ServingFeatures

BUNDLE_FILENAME = "model.joblib"
METADATA_FILENAME = "metadata.json"
JSON_CONTENT_TYPE = "application/json"
# A category name that this many businesses use is a common chart-of-accounts entry ("Travel"),
# not one business's own, so the model may suggest it to a business it has not seen yet.
SHARED_LABEL_MIN_BUSINESSES = 3


class IncompatibleModelError(Exception):
    """The artefact was built by another scikit-learn version or feature schema."""


def load_bundle(model_dir: str | Path) -> dict:
    """Load a bundle from an unpacked artefact folder, rejecting incompatible artefacts."""
    model_dir = Path(model_dir)
    metadata = json.loads((model_dir / METADATA_FILENAME).read_text())
    check_compatible(metadata)
    bundle = joblib.load(model_dir / BUNDLE_FILENAME)
    bundle["metadata"] = metadata
    _keep_coefficients_in_float32(bundle["pipeline"][-1])
    return bundle


def _keep_coefficients_in_float32(classifier) -> None:
    """Store a loaded multinomial LogisticRegression's coefficients in float32, half their memory.

    classifier_probabilities casts the feature matrix to float32 to match, so no call copies the
    coefficients: scipy upcasts float32 coefficients to float64 on every product with a float64
    matrix, which made a prediction twice as slow. Probabilities move by about 1e-6 at most.
    """
    if type(classifier) is LogisticRegression and len(classifier.classes_) > 2:
        classifier.coef_ = classifier.coef_.astype(np.float32)
        classifier.intercept_ = classifier.intercept_.astype(np.float32)


def check_compatible(metadata: dict) -> None:
    """Raise IncompatibleModelError unless this process can serve the artefact exactly."""
    trained_with = metadata.get("sklearn_version")
    if trained_with != sklearn.__version__:
        raise IncompatibleModelError(
            f"Model {metadata.get('version')} was trained with scikit-learn {trained_with}, "
            f"but this process runs {sklearn.__version__}; retrain it or serve it from a matching environment."
        )
    if tuple(metadata.get("feature_schema", ())) != FEATURE_SCHEMA or (
        metadata.get("feature_schema_version") != FEATURE_SCHEMA_VERSION
    ):
        raise IncompatibleModelError(
            f"Model {metadata.get('version')} expects feature schema {metadata.get('feature_schema')} "
            f"(version {metadata.get('feature_schema_version')}), not {list(FEATURE_SCHEMA)} "
            f"(version {FEATURE_SCHEMA_VERSION}); retrain it."
        )


def shared_labels(business_labels: dict[str, list[int]]) -> list[int]:
    """Return the label indexes used by at least SHARED_LABEL_MIN_BUSINESSES businesses."""
    counts = collections.Counter(index for indexes in business_labels.values() for index in indexes)
    return sorted(index for index, count in counts.items() if count >= SHARED_LABEL_MIN_BUSINESSES)


def predict_records(bundle: dict, records: list[dict], top_k: int) -> list[list[dict]]:
    """Return, per record, the top_k categories with calibrated probabilities, best first.

    Probabilities are restricted to the categories the record's business has used, because each
    business keeps its own chart of accounts and another business's category names are its own.
    A business the model never saw gets only the categories that SHARED_LABEL_MIN_BUSINESSES or
    more businesses use, and nothing when there are none.
    """
    if not records:
        return []
    probabilities = _probabilities(bundle, records)
    labels = bundle["labels"]
    business_labels = bundle["business_labels"]
    # Counted once per loaded model: it reads every business's labels, so per call it grew with
    # the number of businesses.
    if "shared_labels" not in bundle:
        bundle["shared_labels"] = shared_labels(business_labels)
    shared = bundle["shared_labels"]

    # One mask row per distinct business, then every row masked, renormalised and ranked at once.
    masks: dict[str, np.ndarray] = {}
    mask_rows = []
    for record in records:
        business_id = record.get("business_id") or ""
        mask = masks.get(business_id)
        if mask is None:
            mask = masks[business_id] = np.zeros(len(labels), dtype=bool)
            mask[business_labels.get(business_id, shared)] = True
        mask_rows.append(mask)
    masked = np.where(np.array(mask_rows), probabilities, 0.0)
    totals = masked.sum(axis=1, keepdims=True)
    masked = np.divide(masked, totals, out=masked, where=totals > 0)
    best = np.argsort(-masked, axis=1, kind="stable")[:, :top_k]
    confidences = np.take_along_axis(masked, best, axis=1)

    results = []
    for indexes, values in zip(best.tolist(), confidences.tolist(), strict=True):
        results.append(
            [
                {"category": labels[index], "confidence": round(value, 6)}
                for index, value in zip(indexes, values, strict=True)
                if value > 0
            ]
        )
    return results


def _probabilities(bundle: dict, records: list[dict]) -> np.ndarray:
    pipeline = bundle["pipeline"]
    if "serving_features" not in bundle:
        bundle["serving_features"] = ServingFeatures.from_pipeline(pipeline)
    features = bundle["serving_features"]
    if features is None:
        return pipeline.predict_proba(records_frame(records))
    return classifier_probabilities(pipeline[-1], features.transform(records))


def classifier_probabilities(classifier, matrix) -> np.ndarray:
    """Return classifier.predict_proba(matrix), computed directly for a multinomial LogisticRegression.

    The same product, intercept and softmax as scikit-learn's own method, without its input checks
    on every call, which cost more than the product for one expense. With float32 coefficients
    (a loaded model) the product is in float32 and the softmax in float64. Other classifiers, and
    two classes (a logistic, not a softmax), go through predict_proba.
    """
    if type(classifier) is not LogisticRegression or len(classifier.classes_) <= 2:
        return classifier.predict_proba(matrix)
    coefficients = classifier.coef_
    if coefficients.dtype == np.float32:
        matrix = matrix.astype(np.float32)
    scores = matrix @ coefficients.T + classifier.intercept_
    return softmax(np.asarray(scores, dtype=np.float64), copy=False)


# SageMaker scikit-learn container entry points.


def model_fn(model_dir):
    return load_bundle(model_dir)


def input_fn(request_body, request_content_type):
    if request_content_type != JSON_CONTENT_TYPE:
        raise ValueError(f"Unsupported content type {request_content_type!r}; send {JSON_CONTENT_TYPE}.")
    payload = json.loads(request_body)
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        raise ValueError('Expected a JSON object {"instances": [record, ...], "top_k": N}.')
    return payload


def predict_fn(input_data, model):
    top_k = int(input_data.get("top_k", 3))
    return {
        "model_version": model["metadata"]["version"],
        "predictions": predict_records(model, input_data["instances"], top_k),
    }


def output_fn(prediction, accept):
    if accept not in (JSON_CONTENT_TYPE, "*/*", None, ""):
        raise ValueError(f"Unsupported accept type {accept!r}; accept {JSON_CONTENT_TYPE}.")
    return json.dumps(prediction), JSON_CONTENT_TYPE
