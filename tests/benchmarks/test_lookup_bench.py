"""The lookup benchmark section: a quick run of every store on loopback servers, and its report."""

import os

import pytest

from benchmarks import lookup_bench
from tests.support.dynamodb_local import missing_tools

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def quick_results():
    missing = missing_tools()
    if missing and os.environ.get("CI") != "true":
        pytest.skip(f"DynamoDB Local needs {', '.join(missing)} on PATH")
    return lookup_bench.run(quick=True)


def test_quick_run_measures_every_store(quick_results):
    labels = [store["store"] for store in quick_results["stores"]]
    assert len(labels) == len(lookup_bench.STORES)
    assert labels[0].startswith("sql (SQLite")
    assert labels[1].startswith("sql (PostgreSQL")
    assert labels[2].startswith("dynamodb")


def test_quick_run_figures_are_sane(quick_results):
    for store in quick_results["stores"]:
        assert store["expenses_per_run"] == lookup_bench.QUICK_EXPENSES_PER_RUN
        for name in ("apply_per_second", "apply_many_per_second", "query_p50_ms", "query_p99_ms"):
            assert len(store[name]["runs"]) == lookup_bench.RUNS
            assert store[name]["min"] > 0
        assert store["query_p99_ms"]["median"] >= store["query_p50_ms"]["median"]


def test_report_has_one_row_per_store(quick_results):
    text = lookup_bench.report(quick_results)
    assert text.startswith("## ")
    for store in quick_results["stores"]:
        assert f"| {store['store']} |" in text
    assert "Target:" in text
    assert "python -m benchmarks.lookup_bench" in text
