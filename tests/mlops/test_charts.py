import pytest

from mlops.charts import ChartUnavailable, confusion_matrix_png, per_category_png
from mlops.evaluation import OTHER_CATEGORIES_LABEL, confusion_counts

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_confusion_matrix_png(tiny_training_result):
    image = confusion_matrix_png(tiny_training_result.metrics)

    assert image.startswith(PNG_SIGNATURE)


def test_per_category_png(tiny_training_result):
    image = per_category_png(tiny_training_result.metrics)

    assert image.startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("chart", [confusion_matrix_png, per_category_png])
def test_chart_without_holdout_metrics(chart):
    with pytest.raises(ChartUnavailable):
        chart({"holdout_rows": 0})


def test_metrics_hold_confusion_matrix(tiny_training_result):
    matrix = tiny_training_result.metrics["confusion_matrix"]

    assert matrix["labels"][-1] == OTHER_CATEGORIES_LABEL
    assert len(matrix["counts"]) == len(matrix["labels"]) == 6
    assert sum(map(sum, matrix["counts"])) == tiny_training_result.metrics["holdout_rows"]


def test_confusion_counts_rows_true_columns_predicted():
    matrix = confusion_counts(true_labels=["A", "A", "B"], predicted_labels=["A", "B", "B"])

    assert matrix == {"labels": ["A", "B", OTHER_CATEGORIES_LABEL], "counts": [[1, 1, 0], [0, 1, 0], [0, 0, 0]]}


def test_confusion_counts_folds_rare_categories(monkeypatch):
    monkeypatch.setattr("mlops.evaluation.CONFUSION_MATRIX_MAX_CATEGORIES", 2)
    true_labels = ["A", "A", "A", "B", "B", "C", "D"]
    # "" is a row with no prediction.
    predicted = ["A", "C", "", "B", "A", "D", "C"]

    matrix = confusion_counts(true_labels=true_labels, predicted_labels=predicted)

    assert matrix["labels"] == ["A", "B", OTHER_CATEGORIES_LABEL]
    assert matrix["counts"] == [[1, 0, 2], [1, 1, 0], [0, 0, 2]]
