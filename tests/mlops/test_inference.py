import json
from unittest import mock

import numpy as np
import pytest
import sklearn

from mlops import inference
from mlops.artefacts import get_artefact_store, unpack_verified
from mlops.features import FEATURE_SCHEMA, FEATURE_SCHEMA_VERSION
from mlops.inference import (
    IncompatibleModelError,
    check_compatible,
    input_fn,
    load_bundle,
    model_fn,
    output_fn,
    predict_fn,
)
from mlops.predictors import get_predictor
from tests.mlops.synthetic import synthetic_records

COMPATIBLE = {
    "version": "v-test",
    "sklearn_version": sklearn.__version__,
    "feature_schema": list(FEATURE_SCHEMA),
    "feature_schema_version": FEATURE_SCHEMA_VERSION,
}


@pytest.fixture
def records():
    """Expenses seen and unseen in training, including a business the model never saw."""
    seen = [record for record, _, _ in synthetic_records(6, seed=99)]
    unseen = [
        {"business_id": "b1", "supplier": "Qzvx Holdings", "amount": "12.00", "currency": "XOF"},
        {"business_id": "new-business", "supplier": "Trainline", "amount": "45.10", "currency": "GBP"},
    ]
    return seen + unseen


def _unpacked(version):
    archive = get_artefact_store().read(version.artefact_uri)
    return unpack_verified(archive=archive, expected_sha256=version.artefact_sha256, version=version.version)


def test_check_compatible_accepts_same_environment():
    check_compatible(COMPATIBLE)


def test_check_compatible_rejects_other_sklearn_version():
    with pytest.raises(
        IncompatibleModelError, match=rf"scikit-learn 1\.0\.2, but this process runs {sklearn.__version__}"
    ):
        check_compatible(COMPATIBLE | {"sklearn_version": "1.0.2"})


def test_check_compatible_rejects_missing_sklearn_version():
    metadata = {key: value for key, value in COMPATIBLE.items() if key != "sklearn_version"}

    with pytest.raises(IncompatibleModelError, match="scikit-learn None"):
        check_compatible(metadata)


def test_check_compatible_rejects_other_feature_schema():
    schema = [*FEATURE_SCHEMA, "vat_amount"]

    with pytest.raises(IncompatibleModelError, match="expects feature schema .*vat_amount.*; retrain it"):
        check_compatible(COMPATIBLE | {"feature_schema": schema})


def test_check_compatible_rejects_other_feature_schema_version():
    with pytest.raises(IncompatibleModelError, match=r"\(version 99\)"):
        check_compatible(COMPATIBLE | {"feature_schema_version": 99})


def test_load_bundle_checks_metadata_before_unpickling(register_model):
    version = register_model(metadata_changes={"sklearn_version": "0.24.2"})
    folder = _unpacked(version)

    with mock.patch.object(inference.joblib, "load") as joblib_load, pytest.raises(IncompatibleModelError):
        load_bundle(folder)

    joblib_load.assert_not_called()


def test_predictor_keeps_previous_version_on_sklearn_skew(register_model, records):
    good = register_model(activate=True)
    predictor = get_predictor()
    assert predictor.predict(records, top_k=3).model_version == good.version

    skewed = register_model(activate=True, metadata_changes={"sklearn_version": "0.24.2"})

    assert predictor.predict(records, top_k=3).model_version == good.version
    status = predictor.status()
    assert status["model_version"] == good.version
    assert f"Cannot load model {skewed.version}" in status["error"]
    assert "scikit-learn 0.24.2" in status["error"]


def test_predictor_keeps_previous_version_on_schema_skew(register_model, records):
    good = register_model(activate=True)
    predictor = get_predictor()
    predictor.predict(records, top_k=3)

    register_model(activate=True, metadata_changes={"feature_schema": ["business_id", "supplier"]})

    assert predictor.predict(records, top_k=3).model_version == good.version
    assert "expects feature schema" in predictor.status()["error"]


def test_sagemaker_entry_points_match_in_process_predictor(register_model, records):
    version = register_model(activate=True)
    in_process = get_predictor().predict(records, top_k=3)

    model = model_fn(str(_unpacked(version)))
    request = input_fn(json.dumps({"instances": records, "top_k": 3}), "application/json")
    body, content_type = output_fn(predict_fn(request, model), "application/json")

    assert content_type == "application/json"
    assert body == json.dumps({"model_version": version.version, "predictions": in_process.results})
    assert in_process.model_version == version.version


def test_predict_fn_defaults_to_three_categories(register_model, records):
    version = register_model()
    model = model_fn(str(_unpacked(version)))

    prediction = predict_fn({"instances": records}, model)

    # The two synthetic businesses share every category, fewer than SHARED_LABEL_MIN_BUSINESSES,
    # so the business the model never saw gets nothing.
    assert [len(ranked) for ranked in prediction["predictions"]] == [3] * (len(records) - 1) + [0]


def test_input_fn_rejects_other_content_type():
    with pytest.raises(ValueError, match="Unsupported content type 'text/csv'; send application/json"):
        input_fn("a,b", "text/csv")


@pytest.mark.parametrize("body", ['[{"supplier": "x"}]', '{"instances": "x"}', "{}"])
def test_input_fn_rejects_body_without_instances(body):
    with pytest.raises(ValueError, match="Expected a JSON object"):
        input_fn(body, "application/json")


def test_output_fn_rejects_other_accept_type():
    with pytest.raises(ValueError, match="Unsupported accept type 'text/csv'"):
        output_fn({"predictions": []}, "text/csv")


@pytest.mark.parametrize("accept", ["application/json", "*/*", None, ""])
def test_output_fn_accepts_json(accept):
    assert output_fn({"predictions": []}, accept) == ('{"predictions": []}', "application/json")


def test_loaded_model_answers_as_the_trained_one(register_model, tiny_training_result, records):
    version = register_model()
    trained = tiny_training_result.bundle
    loaded = load_bundle(_unpacked(version))

    assert all(model.weights.dtype == np.float32 for model in loaded["business_models"].values())
    assert inference.predict_records(loaded, records, top_k=5) == inference.predict_records(trained, records, top_k=5)
