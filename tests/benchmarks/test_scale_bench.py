"""The scale benchmark section: a quick run on a scratch PostgreSQL database, and its report."""

import pytest

from benchmarks import scale_bench

pytestmark = pytest.mark.integration

MEASURES = ("query_often", "query_rare", "predict", "apply")


@pytest.fixture(scope="module")
def quick_results():
    return scale_bench.run(quick=True)


def test_quick_run_covers_every_scenario(quick_results):
    history_rows = [scenario["rows"] for scenario in quick_results["history"]]
    business_counts = [scenario["businesses"] for scenario in quick_results["businesses"]]
    assert history_rows == list(scale_bench.QUICK_HISTORY_SIZES)
    assert business_counts == list(scale_bench.QUICK_BUSINESS_COUNTS)
    for scenario in quick_results["businesses"]:
        assert scenario["rows"] == scale_bench.QUICK_SHARED_ROWS
        assert scenario["rows_per_business"] * scenario["businesses"] == scenario["rows"]


def test_quick_run_figures_are_sane(quick_results):
    for scenario in quick_results["history"] + quick_results["businesses"]:
        for name in MEASURES:
            figure = scenario[name]
            assert len(figure["p50_ms"]["runs"]) == scale_bench.RUNS
            assert figure["samples_per_run"] == scale_bench.QUICK_SAMPLES_PER_RUN
            assert figure["p50_ms"]["min"] > 0
            assert figure["p99_ms"]["median"] >= figure["p50_ms"]["median"]
        assert scenario["often_supplier_rows_median"] >= 1
        assert "suppliers" not in scenario


def test_quick_run_predicts_with_every_source(quick_results):
    degraded = [scenario["degraded_predictions"] for scenario in quick_results["history"]]
    assert degraded == [{}] * len(degraded)
    assert quick_results["model"]["training_rows"] > 0


def test_quick_run_explains_lookup_query(quick_results):
    for kind in ("often", "rare"):
        plan = "\n".join(quick_results["explain"][kind])
        assert "lookup_lookupexpense" in plan
        assert "Execution Time" in plan


def test_report_lists_scenarios_and_targets(quick_results):
    text = scale_bench.report(quick_results)
    assert text.startswith("## ")
    assert "| 200 |" in text
    assert "| 20 × 10 |" in text
    assert "Growth with history" in text
    assert ("(met)" in text) or ("(missed by" in text)
    assert "python -m benchmarks.scale_bench" in text
