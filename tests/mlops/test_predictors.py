import gc
from pathlib import Path
from unittest import mock

import pytest

from mlops import predictors, services
from mlops.models import ModelVersion
from mlops.predictors import (
    FALLBACK_MAX_VERSIONS,
    InProcessPredictor,
    PredictorUnavailable,
    freeze_after_model_load,
    get_predictor,
)

RECORD = {"business_id": "b1", "supplier": "Trainline 12", "amount": "45.00", "currency": "GBP"}


def test_predictor_without_active_version(db):
    with pytest.raises(PredictorUnavailable, match="No model version is active yet"):
        get_predictor().predict([RECORD], top_k=3)

    assert get_predictor().status() == {"model_version": None, "error": "No model version is active yet."}


def test_predictor_switches_after_activate_version(register_model):
    first = register_model(activate=True)
    second = register_model()
    predictor = get_predictor()
    assert predictor.predict([RECORD], top_k=3).model_version == first.version

    services.activate_version(version=second.version)

    assert predictor.predict([RECORD], top_k=3).model_version == second.version
    assert list(ModelVersion.objects.filter(is_active=True).values_list("version", flat=True)) == [second.version]


def test_predictor_sees_first_activation_at_once(register_model, settings):
    settings.ACTIVE_MODEL_CHECK_SECONDS = 60.0
    predictor = get_predictor()
    with pytest.raises(PredictorUnavailable):
        predictor.predict([RECORD], top_k=3)

    version = register_model(activate=True)

    assert predictor.predict([RECORD], top_k=3).model_version == version.version


def test_predictor_switches_after_check_interval(register_model, settings):
    settings.ACTIVE_MODEL_CHECK_SECONDS = 5.0
    first = register_model(activate=True)
    second = register_model()
    predictor = get_predictor()

    with mock.patch("mlops.predictors.time.monotonic", return_value=1000.0):
        assert predictor.predict([RECORD], top_k=3).model_version == first.version
        services.activate_version(version=second.version)
        # Within the interval the loaded model predicts without a registry query.
        assert predictor.predict([RECORD], top_k=3).model_version == first.version

    with mock.patch("mlops.predictors.time.monotonic", return_value=1005.0):
        assert predictor.predict([RECORD], top_k=3).model_version == second.version


def test_predictor_keeps_previous_version_on_changed_artefact(register_model):
    good = register_model(activate=True)
    predictor = get_predictor()
    predictor.predict([RECORD], top_k=3)
    tampered = register_model()
    path = Path(tampered.artefact_uri)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))

    services.activate_version(version=tampered.version)

    assert predictor.predict([RECORD], top_k=3).model_version == good.version
    assert "it was changed or corrupted" in predictor.status()["error"]


def test_predictor_recovers_when_fixed_version_is_activated(register_model):
    skewed = register_model(activate=True, metadata_changes={"sklearn_version": "0.24.2"})
    predictor = get_predictor()
    with pytest.raises(PredictorUnavailable, match=f"Cannot load model {skewed.version}"):
        predictor.predict([RECORD], top_k=3)

    fixed = register_model(activate=True)

    assert predictor.predict([RECORD], top_k=3).model_version == fixed.version
    assert predictor.status() == {"model_version": fixed.version, "error": None}


def test_predictor_new_process_falls_back_to_compatible_version(register_model, caplog):
    older = register_model(activate=True)
    previous = register_model(activate=True)
    skewed = register_model(activate=True, metadata_changes={"sklearn_version": "0.24.2"})
    # A process started after the skewed activation: it has never loaded a model.
    predictor = InProcessPredictor()

    answer = predictor.predict([RECORD], top_k=3)

    assert answer.model_version == previous.version
    assert answer.model_version != older.version
    status = predictor.status()
    assert status["model_version"] == previous.version
    assert status["error"].startswith(f"Cannot load model {skewed.version}")
    fallback_logs = [record for record in caplog.records if record.message.startswith("Serving a previously")]
    assert len(fallback_logs) == 1
    assert fallback_logs[0].model_version == previous.version


def test_predictor_fallback_skips_incompatible_older_versions(register_model):
    compatible = register_model(activate=True)
    register_model(activate=True, metadata_changes={"feature_schema_version": 999})
    skewed = register_model(activate=True, metadata_changes={"sklearn_version": "0.24.2"})
    predictor = InProcessPredictor()

    assert predictor.predict([RECORD], top_k=3).model_version == compatible.version
    assert predictor.status()["error"].startswith(f"Cannot load model {skewed.version}")


def test_predictor_fallback_bounded_to_recent_versions(register_model):
    register_model(activate=True)
    for _ in range(FALLBACK_MAX_VERSIONS):
        register_model(activate=True, metadata_changes={"sklearn_version": "0.24.2"})
    skewed = register_model(activate=True, metadata_changes={"sklearn_version": "0.24.2"})
    predictor = InProcessPredictor()

    with pytest.raises(PredictorUnavailable, match=f"Cannot load model {skewed.version}"):
        predictor.predict([RECORD], top_k=3)


def test_predictor_fallback_switches_to_fixed_activation(register_model):
    previous = register_model(activate=True)
    register_model(activate=True, metadata_changes={"sklearn_version": "0.24.2"})
    predictor = InProcessPredictor()
    assert predictor.predict([RECORD], top_k=3).model_version == previous.version

    fixed = register_model(activate=True)

    assert predictor.predict([RECORD], top_k=3).model_version == fixed.version
    assert predictor.status() == {"model_version": fixed.version, "error": None}


def test_model_load_freezes_gc_between_requests(register_model, settings):
    settings.MODEL_GC_FREEZE = True
    register_model(activate=True)
    gc.unfreeze()
    try:
        assert get_predictor().predict([RECORD], top_k=3).results
        assert gc.get_freeze_count() == 0

        assert freeze_after_model_load() is True
        assert gc.get_freeze_count() > 0
        assert freeze_after_model_load() is False
    finally:
        gc.unfreeze()


def test_model_load_without_freeze(register_model):
    register_model(activate=True)
    gc.unfreeze()

    get_predictor().predict([RECORD], top_k=3)

    assert freeze_after_model_load() is False
    assert gc.get_freeze_count() == 0


def test_wsgi_entry_point_freezes_before_the_request(monkeypatch):
    from config import wsgi

    counts = []

    def django_application(environ, start_response):
        counts.append(gc.get_freeze_count())
        return [b""]

    monkeypatch.setattr(wsgi, "django_application", django_application)
    predictors._freeze_requested.set()
    gc.unfreeze()
    try:
        assert wsgi.application({}, lambda status, headers: None) == [b""]
    finally:
        gc.unfreeze()

    assert counts[0] > 0
