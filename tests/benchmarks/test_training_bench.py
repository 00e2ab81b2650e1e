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


def test_quick_run_has_no_all_rows_estimate(quick_results):
    assert "all_rows_estimate" not in quick_results


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


def test_report_states_estimate_when_all_rows_skipped(quick_results):
    results = quick_results | {
        "all_rows_estimate": {"rows": 186_433, "categories": 2_118, "cpu_seconds": 900, "scaled_from_rows": 500}
    }

    text = training_bench.report(results)

    assert "900 s of CPU time for 186,433 rows" in text
    assert "missed by 840 s" in text


def test_report_adds_separate_run_of_unmeasured_size(monkeypatch, quick_results):
    separate = {
        "size": 50_000,
        "date": "2026-12-05",
        "rows": 50_000,
        "businesses": 4,
        "categories": 900,
        "features": 30_000,
        "wall_seconds": 700,
        "cpu_seconds": 650,
        "peak_rss_mb": 1500,
        "model_memory_mb": 200,
        "artefact_mb": 80,
        "predict_1000_ms": 400,
    }
    monkeypatch.setattr(training_bench, "SEPARATE_RUNS", (separate,))

    text = training_bench.report(quick_results)

    assert "| 50,000 (separate run, 2026-12-05) | 1 | 4 | 900 | 30,000 | 700 s | 650 s | 1500 MB |" in text
