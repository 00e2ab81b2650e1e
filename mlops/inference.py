"""Model inference: the code the in-process predictor and the SageMaker container both run.

The SageMaker scikit-learn serving container imports this module as the entry point and calls
`model_fn`, `input_fn`, `predict_fn` and `output_fn`; the in-process predictor calls
`predict_records` on the same loaded bundle, so both return identical answers for one artefact.
"""

import json
from pathlib import Path

import joblib
import numpy as np
import sklearn
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from mlops.business_models import from_global_classifier
from mlops.features import FEATURE_SCHEMA, FEATURE_SCHEMA_VERSION, records_frame
from mlops.serving_features import ServingFeatures

BUNDLE_FILENAME = "model.joblib"
METADATA_FILENAME = "metadata.json"
JSON_CONTENT_TYPE = "application/json"


class IncompatibleModelError(Exception):
    """The artefact was built by another scikit-learn version or feature schema."""


def load_bundle(model_dir: str | Path) -> dict:
    """Load a bundle from an unpacked artefact folder, rejecting incompatible artefacts."""
    model_dir = Path(model_dir)
    metadata = json.loads((model_dir / METADATA_FILENAME).read_text())
    check_compatible(metadata)
    bundle = upgrade_bundle(joblib.load(model_dir / BUNDLE_FILENAME))
    bundle["metadata"] = metadata
    return bundle


def upgrade_bundle(bundle: dict) -> dict:
    """Return a bundle of the first model format (one classifier across businesses) as business models.

    Such an artefact contains a fitted pipeline: its column transformer and one multinomial
    LogisticRegression. Split into business models it gives the same probabilities, so an active
    version keeps serving after this code is deployed. A bundle of business models is returned as is.
    """
    if "business_models" in bundle:
        return bundle
    pipeline = bundle.get("pipeline")
    classifier = pipeline[-1] if pipeline is not None else None
    if type(classifier) is not LogisticRegression:
        raise IncompatibleModelError(
            f"Unsupported model: the artefact contains a {type(classifier).__name__}, "
            "which this version cannot serve; retrain it."
        )
    business_models, shared_model = from_global_classifier(classifier, bundle["business_labels"])
    return {
        "features": pipeline[0],
        "labels": bundle["labels"],
        "business_labels": bundle["business_labels"],
        "business_models": business_models,
        "shared_model": shared_model,
    }


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


def predict_records(bundle: dict, records: list[dict], top_k: int) -> list[list[dict]]:
    """Return, per record, the top_k categories with calibrated probabilities, best first.

    Each record is ranked by its business's model, over the categories that business has used,
    because each business keeps its own chart of accounts. A business the model never saw gets the
    shared model's categories (those that mlops.business_models.SHARED_LABEL_MIN_BUSINESSES or
    more businesses use), and nothing when there are none.
    """
    if not records:
        return []
    matrix = _feature_matrix(bundle, records)
    rows_by_business: dict[str, list[int]] = {}
    for row, record in enumerate(records):
        rows_by_business.setdefault(record.get("business_id") or "", []).append(row)

    labels = bundle["labels"]
    results: list[list[dict]] = [[] for _ in records]
    for business_id, rows in rows_by_business.items():
        model = bundle["business_models"].get(business_id, bundle["shared_model"])
        if model is None:
            continue
        probabilities = model.probabilities(matrix if len(rows) == len(records) else matrix[rows])
        best = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        confidences = np.take_along_axis(probabilities, best, axis=1).tolist()
        for row, indexes, values in zip(rows, model.labels[best].tolist(), confidences, strict=True):
            results[row] = [
                {"category": labels[index], "confidence": round(value, 6)}
                for index, value in zip(indexes, values, strict=True)
                if value > 0
            ]
    return results


def _feature_matrix(bundle: dict, records: list[dict]) -> sparse.csr_matrix:
    """Return the records' float32 feature matrix, as the business models were fitted on."""
    features = bundle["features"]
    if "serving_features" not in bundle:
        bundle["serving_features"] = ServingFeatures.from_transformer(features)
    serving = bundle["serving_features"]
    if serving is not None:
        return serving.transform(records, dtype=np.float32)
    return sparse.csr_matrix(features.transform(records_frame(records)), dtype=np.float32)


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
