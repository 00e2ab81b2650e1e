"""The training benchmark section: a quick run of a few hundred rows in child processes, and its report."""

import pytest

from benchmarks import training_bench


@pytest.fixture(scope="module")
def quick_results():
    return training_bench.run(quick=True)


def test_quick_run_trains_one_size(quick_results):
    [entry] = quick_results["sizes"]

    assert entry["size"] == training_bench.QUICK_SIZE
    assert entry["rows"] == training_bench.QUICK_SIZE
    assert entry["runs"] == 1
    assert entry["timed_out"] is False


def test_quick_run_figures_are_sane(quick_results):
    [entry] = quick_results["sizes"]

    assert entry["categories"] >= 2
    assert entry["features"] > 0
    assert 0.0 <= entry["holdout_top1"] <= 1.0
    for name in ("wall_seconds", "cpu_seconds", "peak_rss_mb", "artefact_mb", "predict_1000_ms"):
        assert entry[name]["min"] > 0, name
    assert entry["peak_rss_mb"]["median"] > entry["model_memory_mb"]["median"]
    assert "fitting on all rows" in entry["stage_seconds"]


def test_report_has_one_row_per_size(quick_results):
    text = training_bench.report(quick_results)

    assert text.startswith("## Training")
    assert "| 500 | 1 of 1 |" in text
    assert "Reproduce: `.venv/bin/python -m benchmarks.training_bench" in text


def test_report_marks_timed_out_size():
    results = {"sizes": [{"size": "all", "runs_planned": 1, "runs": 0, "timed_out": True, "timeout_seconds": 600}]}

    text = training_bench.report(results)

    assert "| all | 0 of 1 | timed out after 600 s |" in text
    assert "missed, the run timed out" in text


def test_report_without_all_rows_says_not_measured(quick_results):
    text = training_bench.report(quick_results)

    assert "Targets for all rows (60 s, 2048 MB): not measured in this run." in text


def test_report_gives_verdicts_for_all_rows():
    entry = {
        "size": "all",
        "runs_planned": 3,
        "runs": 3,
        "timed_out": False,
        "rows": 186_433,
        "businesses": 13,
        "categories": 2_118,
        "features": 61_479,
        "wall_seconds": {"median": 72.0, "min": 70.0, "max": 75.0},
        "peak_rss_mb": {"median": 1400.0, "min": 1390.0, "max": 1410.0},
        "stage_seconds": {"fitting on all rows": 20.0},
    }

    text = training_bench.report({"sizes": [entry]})

    assert "| 186,433 | 3 of 3 | 13 | 2,118 | 61,479 | 72 s (70-75) | n/a | 1400 MB (1390-1410) |" in text
    assert "at most 60 s: missed by 12 s; at most 2048 MB peak: met." in text
