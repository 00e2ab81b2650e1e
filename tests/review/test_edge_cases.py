"""Edge cases of the per-business models, the batch validation and read paths, and the GC freeze.

Each test pins a case found by attacking those changes: a defect since fixed, or behaviour that
held and had no test of its own.
"""

import datetime
import gc
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import warnings

import numpy as np
import pytest
import sklearn
from rest_framework import serializers
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from categorisation.serializers import PredictionBatchRequestSerializer, PredictionRequestSerializer
from lookup.serializer_fields import CleanCharField, StrictSerializer, validated_data
from lookup.serializers import EventSerializer
from lookup.stores import sql as sql_store
from mlops import business_models, training
from mlops.artefacts import package_bundle
from mlops.business_models import BusinessModel
from mlops.deployment import package_inference_code
from mlops.features import FEATURE_SCHEMA, FEATURE_SCHEMA_VERSION, build_pipeline_features, records_frame
from mlops.inference import predict_records, upgrade_bundle
from mlops.predictors import freeze_after_model_load
from tests.factories import expense_payload
from tests.mlops.conftest import register_model, tiny_training_result  # noqa: F401 (fixtures)
from tests.mlops.synthetic import synthetic_records, synthetic_rows

# A model that loads during a request is frozen between requests, without that request's objects:
# frozen objects in a reference cycle are never collected.


@pytest.mark.django_db
def test_model_load_mid_request_leaks_nothing(api_client, register_model, settings):  # noqa: F811
    settings.MODEL_GC_FREEZE = True
    register_model(activate=True)
    body = {"expenses": [expense_payload(supplier=f"Supplier {number}") for number in range(1000)]}
    gc.collect()
    gc.unfreeze()
    try:
        # The first prediction loads the model, as the first request after an activation does.
        response = api_client.post("/api/v1/predictions/batch", body, format="json")
        assert response.status_code == 200
        del response
        # What the WSGI entry point does before the next request.
        assert freeze_after_model_load() is True
        assert gc.get_freeze_count() > 0
        gc.collect()

        # What a collection finds only after unfreezing is garbage the freeze kept alive.
        gc.unfreeze()
        kept_alive = gc.collect()
    finally:
        gc.unfreeze()

    assert kept_alive == 0


# One expense and a batch go through the same sparse product. A dense product for one expense
# summed float32 values in another order, so /predictions and /predictions/batch disagreed in the
# sixth decimal for 9 of 2,000 purchase-card expenses.


def test_business_model_one_row_equals_batch_row():
    rng = np.random.default_rng(0)
    columns = 400
    matrix = sparse.random(200, columns, density=0.1, format="csr", random_state=1, dtype=np.float32)
    model = BusinessModel(
        labels=np.arange(30, dtype=np.int32),
        columns=np.arange(columns, dtype=np.int32),
        weights=rng.normal(scale=0.3, size=(columns, 30)).astype(np.float32),
        intercept=rng.normal(size=30).astype(np.float32),
    )

    # Rounded to six decimals, as predict_records returns confidences.
    batch = np.round(model.probabilities(matrix), 6)

    differing = [
        row
        for row in range(matrix.shape[0])
        if not np.array_equal(np.round(model.probabilities(matrix[row]), 6), batch[row : row + 1])
    ]
    assert differing == []


# Training sets no warning filters. warnings.catch_warnings is not thread-safe: a context in the
# refit's thread could cross one in the holdout analysis, where scikit-learn's check_array opens
# one for IsotonicRegression.fit, and the context that exits last restored filters that the other
# had changed. Events force that order here.

_overlap = {}


class _AnalysisWarning(Warning):
    """A stand-in for numpy's ComplexWarning, which check_array turns into an error inside its context."""


def _analysis_overlapping_refit(train_rows, holdout_rows, ranked):
    """A holdout analysis whose catch_warnings context crosses the refit's."""
    assert _overlap["refit_inside"].wait(10)
    with warnings.catch_warnings():
        warnings.simplefilter("error", _AnalysisWarning)
        _overlap["analysis_inside"].set()
        assert _overlap["refit_done"].wait(10)
    return {}


def test_training_restores_warning_filters(settings, monkeypatch):
    settings.MODEL_HOLDOUT_ANALYSIS = f"{__name__}._analysis_overlapping_refit"
    _overlap.update(
        refitting=threading.Event(),
        refit_inside=threading.Event(),
        analysis_inside=threading.Event(),
        refit_done=threading.Event(),
    )
    fit_business_model, fit = business_models.fit_business_model, training._fit

    def fit_in_refit(*args, **kwargs):
        if _overlap["refitting"].is_set() and not _overlap["refit_inside"].is_set():
            _overlap["refit_inside"].set()
            assert _overlap["analysis_inside"].wait(10)
        return fit_business_model(*args, **kwargs)

    def fit_then_signal(rows, params):
        # The split's fit runs in the calling thread, the refit in the background one.
        refit = threading.current_thread() is not threading.main_thread()
        if refit:
            _overlap["refitting"].set()
        bundle = fit(rows, params)
        if refit:
            _overlap["refit_done"].set()
        return bundle

    monkeypatch.setattr(business_models, "fit_business_model", fit_in_refit)
    monkeypatch.setattr(training, "_fit", fit_then_signal)
    monkeypatch.setattr(training, "_training_threads", lambda: 1)
    # The outer context puts the process's filters back whatever the training leaves.
    with warnings.catch_warnings():
        before = list(warnings.filters)
        training.train(synthetic_rows(300, businesses=("b1", "b2", "b3")), min_rows=30, holdout_fraction=0.2)
        after = list(warnings.filters)

    assert after == before


# The dict fast path leaves a subclass's own to_internal_value or run_validators to DRF's path.


class _LowerCaseCode(StrictSerializer):
    code = CleanCharField()

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        return value | {"code": value["code"].lower()}


def test_strict_serializer_keeps_subclass_to_internal_value():
    assert _LowerCaseCode().run_validation({"code": "ABC"}) == {"code": "abc"}


# the SageMaker sourcedir imports and serves with only its own files on sys.path.


def test_sourcedir_serves_from_clean_interpreter(tmp_path, tiny_training_result):  # noqa: F811
    code, model = tmp_path / "code", tmp_path / "model"
    with tarfile.open(fileobj=io.BytesIO(package_inference_code(sklearn.__version__))) as archive:
        archive.extractall(code, filter="data")
    metadata = {
        "version": "v-review",
        "sklearn_version": sklearn.__version__,
        "feature_schema": list(FEATURE_SCHEMA),
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "labels": tiny_training_result.bundle["labels"],
    }
    with tarfile.open(fileobj=io.BytesIO(package_bundle(tiny_training_result.bundle, metadata))) as archive:
        archive.extractall(model, filter="data")
    records = [record for record, _, _ in synthetic_records(4, businesses=("b1", "never-seen"))]
    # -I leaves the project off sys.path, so only the archive and the installed packages remain.
    script = (
        "import json, sys\n"
        f"sys.path = [{str(code)!r}] + [path for path in sys.path if 'site-packages' in path or 'lib/python' in path]\n"
        "import inference\n"
        "import mlops.inference\n"
        f"assert mlops.inference.__file__.startswith({str(code)!r}), mlops.inference.__file__\n"
        "assert not [name for name in sys.modules if name.split('.')[0] in ('django', 'config', 'categorisation')]\n"
        f"model = inference.model_fn({str(model)!r})\n"
        f"request = inference.input_fn(json.dumps({{'instances': {records!r}, 'top_k': 3}}), 'application/json')\n"
        "print(inference.output_fn(inference.predict_fn(request, model), 'application/json')[0])\n"
    )

    finished = subprocess.run(
        [sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )

    assert finished.returncode == 0, finished.stderr
    answer = json.loads(finished.stdout)
    assert answer["predictions"] == predict_records(tiny_training_result.bundle, records, top_k=3)


# an artefact of the first format with two labels (one logistic, not a softmax) and an
# empty business id serves the probabilities the first format's serving gave.


def test_first_format_with_two_labels_upgrades():
    triples = [
        triple
        for triple in synthetic_records(300, businesses=("b1", "b2", "b3", ""), seed=9)
        if triple[1] in ("Travel", "Meals")
    ]
    records = [record for record, _, _ in triples]
    pipeline = Pipeline([("features", build_pipeline_features(min_df=1)), ("classifier", LogisticRegression())])
    pipeline.fit(records_frame(records), [category for _, category, _ in triples])
    business_labels = {"b1": [0, 1], "b2": [0, 1], "b3": [1], "": [1]}
    bundle = {"pipeline": pipeline, "labels": list(pipeline.classes_), "business_labels": business_labels}
    upgraded = upgrade_bundle(dict(bundle))
    queries = [{**records[0], "business_id": business} for business in ("b1", "b3", "", "unseen")]

    answers = predict_records(upgraded, queries, top_k=2)

    probabilities = pipeline.predict_proba(records_frame(queries))
    b1, _, _, unseen = answers
    assert [item["category"] for item in b1] == [bundle["labels"][index] for index in np.argsort(-probabilities[0])]
    assert [item["confidence"] for item in b1] == pytest.approx(sorted(probabilities[0], reverse=True), abs=2e-6)
    assert answers[1] == [{"category": "Travel", "confidence": 1.0}]
    assert answers[2] == [{"category": "Travel", "confidence": 1.0}]
    # Two businesses use "Meals" and four use "Travel", so only "Travel" is shared.
    assert [item["category"] for item in unseen] == ["Travel"]


# the dict fast path returns DRF's result, the validated data or the errors, on odd inputs.

_ODD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    10**30,
    1e308,
    "",
    " ",
    "x" * 400,
    [],
    ["a"],
    {},
    {"nested": {"deeper": 1}},
    "2024-02-30",
    "gbp",
    "1e3",
    4.5,
    "\x00",
    2**62 + 1,
]
_EXPENSE = expense_payload()
_ODD_FIELDS = [*_EXPENSE, "expense_id", "vat_amount", "department", "top_k", "unknown", "version", "category"]


def _drf_result(serializer_class, data):
    """Validate with DRF's Serializer.run_validation in place of the fast path, nested serializers included."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StrictSerializer, "run_validation", serializers.Serializer.run_validation)
        serializer = serializer_class(data=data)
        if serializer.is_valid():
            return "valid", serializer.validated_data
        return "invalid", serializer.errors


def _fast_result(serializer_class, data):
    try:
        return "valid", validated_data(serializer_class, data)
    except serializers.ValidationError as exc:
        return "invalid", exc.detail


@pytest.mark.django_db
@pytest.mark.parametrize("field", _ODD_FIELDS)
def test_fast_path_matches_drf_on_odd_values(field):
    cases = [_EXPENSE | {field: value} for value in _ODD_VALUES]
    cases.append({name: value for name, value in _EXPENSE.items() if name != field})
    event = {"event_id": "evt-1", "type": "expense.created"}
    event_expense = {"expense_id": "e-1", "version": 1, "category": "Meals"}

    for data in cases:
        for serializer_class, body in [
            (PredictionRequestSerializer, data),
            (PredictionBatchRequestSerializer, {"expenses": [_EXPENSE, data]}),
            (EventSerializer, event | {"expense": event_expense | data}),
        ]:
            fast, drf = _fast_result(serializer_class, body), _drf_result(serializer_class, body)
            assert fast == drf, body
            assert list(fast[1]) == list(drf[1]), body


# learned_at read as epoch microseconds equals psycopg's timestamptz value at the far dates
# Python allows and across DST changes, whatever the session's time zone. The test runs against
# the PostgreSQL on 127.0.0.1:5432 in a database of its own, and is skipped when there is none.

_LEARNED_AT_CASES = [
    datetime.datetime(1, 1, 1, tzinfo=datetime.UTC),
    datetime.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.UTC),
    datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC),
    datetime.datetime(2025, 3, 30, 0, 59, 59, 999999, tzinfo=datetime.UTC),
    datetime.datetime(2025, 3, 30, 1, 0, tzinfo=datetime.UTC),
    datetime.datetime(2025, 10, 26, 1, 30, 0, 1, tzinfo=datetime.UTC),
    datetime.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.UTC),
]


@pytest.fixture
def review_postgres():
    """A connection to a new PostgreSQL database named review_*, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    server = "host=127.0.0.1 port=5432 user=postgres connect_timeout=3"
    name = f"review_epoch_{os.getpid()}"
    try:
        admin = psycopg.connect(f"{server} dbname=postgres", autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432: {exc}")
    with admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
        try:
            with psycopg.connect(f"{server} dbname={name}") as connection:
                yield connection
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.mark.parametrize("session_time_zone", ["UTC", "Europe/London", "America/St_Johns"])
def test_learned_at_microseconds_match_postgresql(review_postgres, session_time_zone):
    review_postgres.execute("CREATE TABLE recent (position int, learned_at timestamptz)")
    for position, learned_at in enumerate(_LEARNED_AT_CASES):
        review_postgres.execute("INSERT INTO recent VALUES (%s, %s)", (position, learned_at))
    review_postgres.execute(f"SET TIME ZONE '{session_time_zone}'")

    rows = review_postgres.execute(
        f"SELECT {sql_store._LEARNED_AT_MICROSECONDS} FROM recent ORDER BY position"
    ).fetchall()

    empty_row = [None] * len(sql_store._EXPENSE_FIELDS)
    for (microseconds,), expected in zip(rows, _LEARNED_AT_CASES, strict=True):
        empty_row[sql_store._LEARNED_AT_POSITION] = microseconds
        learned_at = sql_store._similar_row_to_expense(tuple(empty_row)).learned_at
        assert learned_at == expected
        assert learned_at.utcoffset() == datetime.timedelta(0)
