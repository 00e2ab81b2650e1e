"""Field cases C13-C15: unseen and featureless input, label edge cases and version skew, through the API."""

import datetime

import pytest

from categorisation import calibration
from lookup.models import ExpenseEvent
from mlops import services as mlops_services
from mlops.artefacts import get_artefact_store, package_bundle, sha256_hex
from mlops.features import FEATURE_SCHEMA, FEATURE_SCHEMA_VERSION
from mlops.models import ModelVersion, TrainingRun
from mlops.predictors import get_predictor
from mlops.training import train
from tests.factories import created_event, deleted_event
from tests.field_cases.conftest import BACKGROUND_BUSINESS
from tests.mlops.synthetic import synthetic_rows

pytestmark = pytest.mark.django_db

# Suppliers that share no word with any training expense: a bare digit, a short brand, another
# script, emoji and an invented name.
UNSEEN_SUPPLIERS = ["7", "3M", "株式会社テスト", "🍕🍕", "Qzvx Holdings"]
# Below this a prediction is a suggestion for a person to confirm, not a category to file unreviewed.
CONFIDENT = 0.5
MAJORITY_CATEGORIES = {"Meals": 16, "Travel": 4, "Software": 4}
# An expense with no usable feature carries no evidence, so an honest confidence is at most the
# share of the business's most frequent category.
MAJORITY_SHARE = max(MAJORITY_CATEGORIES.values()) / sum(MAJORITY_CATEGORIES.values())


def majority_history() -> list[dict]:
    """B1's history: mostly Meals, some Travel and Software, each from known suppliers."""
    start = datetime.date(2024, 1, 1)
    suppliers = {
        "Meals": ("Blue Heron Cafe", "coffee"),
        "Travel": ("Northern Rail", "train ticket"),
        "Software": ("Atlassian", "licence renewal"),
    }
    plan = [(category, *suppliers[category]) for category, count in MAJORITY_CATEGORIES.items() for _ in range(count)]
    return [
        created_event(
            supplier=supplier,
            description=description,
            category=category,
            date=(start + datetime.timedelta(days=3 * number)).isoformat(),
        )
        for number, (category, supplier, description) in enumerate(plan)
    ]


def unseen_expense(supplier: str) -> dict:
    # XOF (West African CFA franc) is a valid ISO 4217 code that no training expense used.
    return {"supplier": supplier, "description": "", "currency": "XOF", "amount": "12.00"}


# C13: unseen and featureless input.


@pytest.mark.parametrize("supplier", UNSEEN_SUPPLIERS)
def test_c13_unseen_supplier_low_confidence(predict, train_active_model, supplier):
    version = train_active_model(majority_history())

    body = predict(**unseen_expense(supplier))

    assert body["model_version"] == version
    assert body["degraded"] == []
    assert body["categories"], body
    assert body["categories"][0]["source"] == "model"
    assert body["categories"][0]["confidence"] <= MAJORITY_SHARE, body
    assert body["tier"] != calibration.AUTO_APPLY, body


def test_c13_unseen_suppliers_in_one_batch(api_client, train_active_model):
    train_active_model(majority_history())
    expenses = [{"business_id": "b1", "date": "2024-11-13"} | unseen_expense(supplier) for supplier in UNSEEN_SUPPLIERS]

    response = api_client.post("/api/v1/predictions/batch", {"expenses": expenses}, format="json")

    assert response.status_code == 200, response.content
    predictions = response.json()["predictions"]
    assert len(predictions) == len(UNSEEN_SUPPLIERS)
    for supplier, prediction in zip(UNSEEN_SUPPLIERS, predictions, strict=True):
        assert prediction["categories"][0]["confidence"] <= MAJORITY_SHARE, (supplier, prediction)
        assert prediction["tier"] != calibration.AUTO_APPLY, (supplier, prediction)


def test_c13_known_supplier_still_confident(predict, train_active_model):
    # The contrast that makes the low-confidence checks meaningful.
    train_active_model(majority_history())

    body = predict(supplier="Northern Rail", description="train ticket", amount="80.00")

    assert body["categories"][0]["category"] == "Travel"
    assert body["categories"][0]["confidence"] >= CONFIDENT


# C14: label edge cases.


def test_c14_one_category_keeps_previous_model(seed, predict, train_active_model):
    previous = train_active_model()
    background = ExpenseEvent.objects.filter(business_id=BACKGROUND_BUSINESS)
    seed([deleted_event(business_id=BACKGROUND_BUSINESS, expense_id=row.expense_id, version=2) for row in background])
    seed([created_event(supplier=f"Cafe {number}", category="Meals") for number in range(40)])
    run = TrainingRun.objects.create(activate=True)

    assert mlops_services.run_training(run_id=run.pk) is None

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert run.error.startswith("Not enough categories: every expense has the same category")
    assert ModelVersion.objects.get(is_active=True).version == previous
    body = predict(supplier="Northern Rail", description="train ticket")
    assert body["model_version"] == previous
    assert body["degraded"] == []


def test_c14_category_seen_once_trains(seed, predict, train_active_model):
    version = train_active_model([created_event(supplier="Quayside Solicitors", category="Legal fees")])

    labels = ModelVersion.objects.get(version=version).labels
    assert "Legal fees" in labels
    body = predict(supplier="Quayside Solicitors", description="")
    assert body["categories"][0]["category"] == "Legal fees"


# C15: version skew.


def test_c15_version_skew_keeps_previous_model(seed, predict, train_active_model):
    previous = train_active_model()
    seed([created_event(supplier="Blue Heron Cafe", category="Meals")])
    assert predict(supplier="Blue Heron Cafe")["model_version"] == previous
    skewed = register_skewed_version(sklearn_version="0.24.2")

    mlops_services.activate_version(version=skewed.version)
    body = predict(supplier="Blue Heron Cafe")

    assert body["model_version"] == previous
    assert body["degraded"] == []
    assert get_predictor().status()["error"].startswith(f"Cannot load model {skewed.version}")


def test_c15_version_skew_new_process_serves_previous_model(seed, predict, train_active_model):
    previous = train_active_model()
    seed([created_event(supplier="Blue Heron Cafe", category="Meals")])
    skewed = register_skewed_version(sklearn_version="0.24.2")
    mlops_services.activate_version(version=skewed.version)
    # A web process started after the activation: it has never loaded a model.
    get_predictor.cache_clear()

    body = predict(supplier="Blue Heron Cafe")

    assert body["model_version"] == previous
    assert body["degraded"] == []
    assert get_predictor().status()["error"].startswith(f"Cannot load model {skewed.version}")
    assert ModelVersion.objects.get(is_active=True).version == skewed.version


def test_c15_version_skew_without_previous_model_degrades(seed, predict):
    seed([created_event(supplier="Blue Heron Cafe", category="Meals")])
    skewed = register_skewed_version(sklearn_version="0.24.2")

    mlops_services.activate_version(version=skewed.version)
    body = predict(supplier="Blue Heron Cafe")

    assert body["model_version"] is None
    assert body["degraded"] == ["model"]
    assert body["categories"][0]["category"] == "Meals"
    assert body["categories"][0]["source"] == "lookup"


def register_skewed_version(*, sklearn_version: str) -> ModelVersion:
    """Register an artefact whose metadata names another scikit-learn, as another build would write."""
    result = train(synthetic_rows(60), min_rows=30, holdout_fraction=0.2)
    version = mlops_services.new_version_id()
    metadata = {
        "version": version,
        "sklearn_version": sklearn_version,
        "feature_schema": list(FEATURE_SCHEMA),
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "labels": result.bundle["labels"],
    }
    archive = package_bundle(result.bundle, metadata)
    return ModelVersion.objects.create(
        version=version,
        artefact_uri=get_artefact_store().save(version=version, archive=archive),
        artefact_sha256=sha256_hex(archive),
        sklearn_version=sklearn_version,
        feature_schema=list(FEATURE_SCHEMA),
        labels=result.bundle["labels"],
        training_data={"store": "synthetic", "rows": 60},
    )
