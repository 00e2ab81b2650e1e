"""python -m evaluation.replay: the command writes the page, the charts and the JSON record."""

import json

import pytest

from evaluation import replay
from tests.evaluation.files import expense_row, write_csv

SUPPLIERS = {"Office": "Staples", "Travel": "Trainline", "Meals": "Costa Coffee"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def small_file(tmp_path):
    rows = []
    for business in ("b1", "b2"):
        for number in range(1, 31):
            category = list(SUPPLIERS)[number % 3]
            rows.append(
                expense_row(business, number, supplier=f"{SUPPLIERS[category]} {number % 4}", category=category)
            )
    return write_csv(tmp_path / "small_expenses.csv", rows)


def test_cli_writes_report(small_file, tmp_path):
    out, images, record_path = tmp_path / "docs" / "quality.md", tmp_path / "docs" / "images", tmp_path / "e.json"

    status = replay.main(
        ["--data", str(small_file), "--out", str(out), "--images", str(images), "--json", str(record_path)]
    )

    assert status == 0
    page = out.read_text(encoding="utf-8")
    assert "## small_expenses.csv" in page
    assert "## How the replay measures" in page
    assert "## End-to-end test through the API" in page
    assert "![Reliability diagram of small_expenses.csv](images/small_expenses-reliability.png)" in page
    for chart in ("small_expenses-reliability.png", "small_expenses-precision-coverage.png"):
        assert (images / chart).read_bytes().startswith(PNG_SIGNATURE)
    record = json.loads(record_path.read_text(encoding="utf-8"))
    (facts,) = record["files"]
    # 30 rows per business: the earliest 18 train the model, the later 12 are evaluated.
    assert facts["evaluated_rows"] == 24
    assert facts["overall"]["sources"]["combined"]["rows"] == 24
    assert set(facts["by_business"]) == {"b1", "b2"}
    phases = {"read", "model training", "model prediction", "text baseline", "replay"}
    assert set(facts["timings_seconds"]) == phases
    assert set(facts["cpu_seconds"]) == phases
    assert record["total_cpu_seconds"] > 0


def test_cli_limit_per_business(small_file, tmp_path):
    record_path = tmp_path / "e.json"
    arguments = ["--data", str(small_file), "--limit-per-business", "20", "--json", str(record_path)]

    replay.main([*arguments, "--out", str(tmp_path / "q.md"), "--images", str(tmp_path / "images")])

    record = json.loads(record_path.read_text(encoding="utf-8"))
    assert record["limit_per_business"] == 20
    assert record["files"][0]["evaluated_rows"] == 16


def test_cli_rejects_missing_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        replay.main(["--data", str(tmp_path / "absent.csv")])

    assert exit_info.value.code == 2
    assert f"data file not found: {tmp_path / 'absent.csv'}" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-3", "ten"])
def test_cli_rejects_invalid_limit(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        replay.main(["--limit-per-business", value])

    assert exit_info.value.code == 2
    assert "expected a whole number of rows, 1 or more" in capsys.readouterr().err
