"""The scale benchmark section: its flatness comparisons on fixed figures, and a quick run on PostgreSQL."""

import pytest

from benchmarks import scale_bench
from benchmarks.measure import summarise

MEASURES = ("query_often", "query_rare", "predict", "apply")


def _scenario(rows: int, *, often_ms: float, often_returned: int, buffers: int = 10) -> dict:
    figures = {name: {"p50_ms": summarise([2.0]), "p99_ms": summarise([3.0])} for name in MEASURES}
    figures["query_often"] = {"p50_ms": summarise([often_ms]), "p99_ms": summarise([often_ms + 0.5])}
    return figures | {
        "rows": rows,
        "businesses": 1,
        "rows_per_business": rows,
        "often_supplier_rows_median": often_returned,
        "rows_returned": {"query_often": often_returned, "query_rare": 1},
        "often_index_read": {"rows": often_returned, "buffers": buffers},
    }


HISTORY = [
    _scenario(100, often_ms=1.6, often_returned=3, buffers=4),
    _scenario(10_000, often_ms=2.55, often_returned=50),
    _scenario(100_000, often_ms=2.43, often_returned=50),
]


def test_equal_rows_growth_baseline():
    [(name, comparison)] = scale_bench._equal_rows_growth(HISTORY).items()

    assert name == "query_often"
    assert comparison["baseline"] == 1
    assert comparison["rows_returned"] == 50
    assert comparison["smallest_rows_returned"] == 3
    assert comparison["ratio"] == 0.95
    assert comparison["ms_per_returned_row"] == pytest.approx(0.0177, abs=0.0001)


def test_equal_rows_growth_covers_predictions():
    history = [
        scenario | {"rows_returned": scenario["rows_returned"] | {"predict": returned}}
        for scenario, returned in zip(HISTORY, (4, 50, 50), strict=True)
    ]

    comparisons = scale_bench._equal_rows_growth(history)

    assert sorted(comparisons) == ["predict", "query_often"]
    assert comparisons["predict"]["baseline"] == 1
    assert comparisons["predict"]["smallest_rows_returned"] == 4


def test_sorts_below_limit():
    whole_history = ["Limit", "  ->  Sort", "        Sort Key: date DESC", "        ->  Bitmap Heap Scan"]
    lateral = ["Sort", "  Sort Key: wanted.position", "  ->  Nested Loop", "    ->  Limit", "      ->  Index Scan"]

    assert scale_bench._sorts_below_limit(whole_history)
    assert not scale_bench._sorts_below_limit(lateral)


def test_equal_rows_growth_without_baseline():
    comparison = scale_bench._equal_rows_growth(HISTORY[:1] + HISTORY[2:])["query_often"]

    assert comparison["baseline"] == 1
    assert comparison["ratio"] is None


def test_equal_rows_growth_equal_results():
    flat = [_scenario(100, often_ms=1.0, often_returned=50), _scenario(100_000, often_ms=1.2, often_returned=50)]

    assert scale_bench._equal_rows_growth(flat) == {}


def test_targets_show_both_ratios():
    businesses = [
        _scenario(100_000, often_ms=2.3, often_returned=50),
        _scenario(100_000, often_ms=1.5, often_returned=1),
    ]
    results = {
        "flat_ratio": 1.5,
        "lookup_max_matches": 50,
        "history": HISTORY,
        "businesses": businesses,
        "growth": {"history": scale_bench._growth(HISTORY), "businesses": scale_bench._growth(businesses)},
        "equal_rows_growth": {"history": scale_bench._equal_rows_growth(HISTORY)},
    }

    text = "\n".join(scale_bench._targets(results) + scale_bench._flatness_lines(results))

    assert "lookup, often supplier 0.95× from 10,000 past expenses, both returning 50 rows (met)" in text
    assert "and 1.52× from 100 past expenses, which returns 3 rows (above 1.5×)" in text
    assert "lookup, rare supplier 1× (met)" in text
    assert "touches 4, 10, 10 buffers at 100, 10,000, 100,000 past expenses, returning 3, 50, 50 rows." in text
    assert "the ratio is 0.95×, within the same 1.5× limit" in text
    assert "for each of the 47 more rows returned" in text


@pytest.fixture(scope="module")
def quick_results():
    return scale_bench.run(quick=True)


@pytest.mark.integration
def test_quick_run_covers_every_scenario(quick_results):
    history_rows = [scenario["rows"] for scenario in quick_results["history"]]
    business_counts = [scenario["businesses"] for scenario in quick_results["businesses"]]
    assert history_rows == list(scale_bench.QUICK_HISTORY_SIZES)
    assert business_counts == list(scale_bench.QUICK_BUSINESS_COUNTS)
    for scenario in quick_results["businesses"]:
        assert scenario["rows"] == scale_bench.QUICK_SHARED_ROWS
        assert scenario["rows_per_business"] * scenario["businesses"] == scenario["rows"]


@pytest.mark.integration
def test_quick_run_figures_are_sane(quick_results):
    for scenario in quick_results["history"] + quick_results["businesses"]:
        for name in MEASURES:
            figure = scenario[name]
            assert len(figure["p50_ms"]["runs"]) == scale_bench.RUNS
            assert figure["samples_per_run"] == scale_bench.QUICK_SAMPLES_PER_RUN
            assert figure["p50_ms"]["min"] > 0
            assert figure["p99_ms"]["median"] >= figure["p50_ms"]["median"]
        assert scenario["often_supplier_rows_median"] >= 1
        assert 1 <= scenario["rows_returned"]["query_often"] <= quick_results["lookup_max_matches"]
        assert scenario["rows_returned"]["query_rare"] >= 1
        assert scenario["often_index_read"]["buffers"] >= 1
        assert "suppliers" not in scenario


@pytest.mark.integration
def test_quick_run_predicts_with_every_source(quick_results):
    degraded = [scenario["degraded_predictions"] for scenario in quick_results["history"]]
    assert degraded == [{}] * len(degraded)
    assert quick_results["model"]["training_rows"] > 0


@pytest.mark.integration
def test_quick_run_explains_lookup_query(quick_results):
    for kind in ("often", "rare"):
        plan = "\n".join(quick_results["explain"][kind])
        assert "lookup_lookupexpense" in plan
        assert "Execution Time" in plan


@pytest.mark.integration
def test_report_lists_scenarios_and_targets(quick_results):
    text = scale_bench.report(quick_results)
    assert text.startswith("## ")
    assert "| 200 |" in text
    assert "| 20 × 10 |" in text
    assert "Growth with history" in text
    assert ("(met)" in text) or ("(missed by" in text)
    assert "python -m benchmarks.scale_bench" in text
