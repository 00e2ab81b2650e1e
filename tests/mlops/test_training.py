import datetime

import pytest

from categorisation.calibration import TIERS, Calibration
from mlops.inference import predict_records
from mlops.training import TrainingError, TrainingRow, time_split, train
from tests.mlops.synthetic import synthetic_rows


def _row(
    category: str, *, business_id: str = "b1", date: datetime.date | None = None, supplier: str = "Acme"
) -> TrainingRow:
    record = {"business_id": business_id, "supplier": supplier, "amount": "10.00", "currency": "GBP"}
    return TrainingRow(record=record, category=category, date=date)


def test_train_too_few_rows():
    with pytest.raises(TrainingError, match=r"Not enough data: 5 expenses, at least 30 are needed\."):
        train(synthetic_rows(5), min_rows=30, holdout_fraction=0.2)


def test_train_single_category():
    rows = [_row("Meals", supplier=f"Cafe {index}") for index in range(40)]

    with pytest.raises(TrainingError, match="every expense has the same category"):
        train(rows, min_rows=30, holdout_fraction=0.2)


def test_train_every_category_seen_once():
    rows = [_row(f"Category {index}", supplier=f"Supplier {index}") for index in range(40)]

    with pytest.raises(TrainingError, match="fewer than two categories have 2 or more examples"):
        train(rows, min_rows=30, holdout_fraction=0.2)


def test_train_tolerates_category_seen_once():
    rows = synthetic_rows(100) + [_row("Legal fees", supplier="Solicitor", date=datetime.date(2024, 3, 1))]

    result = train(rows, min_rows=30, holdout_fraction=0.2)

    assert "Legal fees" in result.bundle["labels"]
    assert result.metrics["categories"] == 6
    assert result.metrics["final_training_rows"] == 101


def test_train_reports_holdout_metrics(tiny_training_result):
    metrics = tiny_training_result.metrics

    assert metrics["training_rows"] == 240
    assert metrics["holdout_rows"] == 60
    assert metrics["final_training_rows"] == 300
    assert metrics["top1_accuracy"] >= 0.9
    assert metrics["top3_accuracy"] >= metrics["top1_accuracy"]
    assert tiny_training_result.hyper_parameters["holdout_fraction"] == 0.2


def test_train_fits_a_calibration_on_the_holdout_replay(tiny_training_result):
    metrics = tiny_training_result.metrics
    fitted = Calibration.from_json(metrics["calibration"])

    assert fitted.fitted_rows == metrics["holdout_rows"]
    assert 0.0 <= metrics["combined_top1_accuracy"] <= 1.0
    assert set(metrics["tiers_on_holdout"]) == set(TIERS)
    assert sum(row["coverage"] for row in metrics["tiers_on_holdout"].values()) == pytest.approx(1.0, abs=0.001)


def test_train_records_labels_per_business(tiny_training_result):
    bundle = tiny_training_result.bundle

    assert bundle["labels"] == sorted(bundle["labels"])
    assert set(bundle["business_labels"]) == {"b1", "b2"}
    assert all(len(indexes) == 5 for indexes in bundle["business_labels"].values())


def test_predictions_limited_to_business_categories():
    rows = [_row("Meals", supplier="Cafe Rouge", date=datetime.date(2024, 1, day)) for day in range(1, 21)]
    rows += [_row("Travel", supplier="Trainline", date=datetime.date(2024, 1, day)) for day in range(1, 21)]
    rows += [
        _row("Catering", business_id="b2", supplier="Cafe Rouge", date=datetime.date(2024, 1, day))
        for day in range(1, 21)
    ]

    bundle = train(rows, min_rows=30, holdout_fraction=0.2).bundle
    [ranked] = predict_records(bundle, [{"business_id": "b1", "supplier": "Cafe Rouge"}], top_k=3)

    assert ranked[0]["category"] == "Meals"
    assert "Catering" not in {item["category"] for item in ranked}
    assert sum(item["confidence"] for item in ranked) == pytest.approx(1.0, abs=1e-5)


def test_unseen_business_gets_only_shared_categories():
    rows = []
    for business in ("b1", "b2", "b3"):
        rows += [
            _row("Travel", business_id=business, supplier="Trainline", date=datetime.date(2024, 1, d))
            for d in range(1, 11)
        ]
    rows += [
        _row("Secret project", business_id="b1", supplier="Trainline", date=datetime.date(2024, 2, d))
        for d in range(1, 11)
    ]

    bundle = train(rows, min_rows=30, holdout_fraction=0.2).bundle
    [ranked] = predict_records(bundle, [{"business_id": "new-business", "supplier": "Trainline"}], top_k=3)
    [own] = predict_records(bundle, [{"business_id": "b1", "supplier": "Trainline"}], top_k=3)

    assert [item["category"] for item in ranked] == ["Travel"]
    assert {item["category"] for item in own} == {"Travel", "Secret project"}


def test_time_split_holds_out_latest_rows_per_business():
    early = [_row("A", business_id="big", date=datetime.date(2024, 1, day)) for day in range(1, 11)]
    small = [_row("B", business_id="small", date=datetime.date(2023, 6, day)) for day in range(1, 6)]
    # Shuffled input order: the split must sort by date, not trust the order it is given.
    rows = early[5:] + small[::-1] + early[:5]

    train_rows, holdout_rows = time_split(rows, holdout_fraction=0.2)

    held_out = {(row.record["business_id"], row.date) for row in holdout_rows}
    assert held_out == {
        ("big", datetime.date(2024, 1, 9)),
        ("big", datetime.date(2024, 1, 10)),
        ("small", datetime.date(2023, 6, 5)),
    }
    assert len(train_rows) + len(holdout_rows) == len(rows)
    for business in ("big", "small"):
        latest_trained = max(row.date for row in train_rows if row.record["business_id"] == business)
        earliest_held = min(row.date for row in holdout_rows if row.record["business_id"] == business)
        assert latest_trained < earliest_held


def test_time_split_treats_missing_date_as_oldest():
    dated = [_row("A", date=datetime.date(2024, 1, day)) for day in range(1, 10)]
    undated = _row("A", date=None, supplier="Undated")

    train_rows, holdout_rows = time_split([undated, *dated], holdout_fraction=0.2)

    assert undated in train_rows
    assert [row.date for row in holdout_rows] == [datetime.date(2024, 1, 8), datetime.date(2024, 1, 9)]


def test_time_split_small_business_keeps_every_row():
    rows = [_row("A", business_id="tiny", date=datetime.date(2024, 1, day)) for day in range(1, 5)]

    train_rows, holdout_rows = time_split(rows, holdout_fraction=0.2)

    assert holdout_rows == []
    assert train_rows == rows


def test_train_without_text_fields():
    # Expenses with no description, department or merchant category leave those columns without
    # a single term; training must still use the supplier, amount and business.
    rows = synthetic_rows(100)
    for row in rows:
        row.record["description"] = ""

    result = train(rows, min_rows=30, holdout_fraction=0.2)
    [ranked] = predict_records(result.bundle, [{"business_id": "b1", "supplier": "Trainline 07"}], top_k=1)

    assert ranked[0]["category"] == "Travel"
