"""The benchmark runner: the summary of targets and the written page, on fixed section results."""

from benchmarks import suite
from benchmarks.measure import summarise

MACHINE = {
    "date": "2026-12-05 03:00 UTC",
    "cores": 2,
    "memory_gib": 23.6,
    "cpu": "x86_64",
    "python": "3.11.7",
    "system": "Linux",
    "load_average": [0.1, 0.2, 0.3],
}
SECTIONS = {
    "http_bench": {
        "seconds": 10.0,
        "results": {
            "targets": {
                "peak_rps": {"value": 320.0, "target": 500.0, "met": False, "text": "missed by 180 req/s"},
                "worker_rss_mb": {"value": 240.0, "target": 250.0, "met": True, "text": "met"},
            }
        },
    },
    "events_bench": {
        "seconds": 10.0,
        "results": {
            "stores": {
                "sql": {
                    "throughput": {"events_per_second": summarise([1200.0, 1100.0, 1300.0])},
                    "freshness": {"p99_ms": summarise([1500.0, 1400.0, 1600.0])},
                }
            }
        },
    },
    "scale_bench": {
        "seconds": 5.0,
        "results": {
            "flat_ratio": 1.5,
            "history": [{"rows": 100}, {"rows": 10_000}, {"rows": 100_000}],
            "growth": {"history": {"query_often": 4.86}},
            "equal_rows_growth": {"history": {}},
        },
    },
    "training_bench": {
        "seconds": 5.0,
        "results": {
            "sizes": [
                {"size": 10_000, "rows": 10_000, "wall_seconds": summarise([5.0]), "peak_rss_mb": summarise([400.0])},
                {"size": "all", "rows": 186_000, "wall_seconds": summarise([75.0]), "peak_rss_mb": summarise([1500.0])},
            ]
        },
    },
}


def test_summary_verdicts():
    summary = suite._summary(SECTIONS)

    assert "| single prediction peak requests/s (at least 500) | 320 | missed by 180 req/s |" in summary
    assert "| RSS per web worker with the model loaded (at most 250 MB) | 240 | met |" in summary
    assert "| events applied per second, sql store (at least 1,000) | 1200 | met |" in summary
    assert "| freshness p99, sql store (at most 1,000 ms) | 1500 ms | missed by 500 ms |" in summary
    assert "| scale: query_often at 100,000 past expenses / at 100 (flat: at most 1.5) | 4.86 |" in summary
    assert "| 4.86 | grows with history |" in summary
    assert "| training on all 186,000 rows: time (at most 60 s) | 75 s | missed by 15 s |" in summary
    assert "| training on all 186,000 rows: peak memory (at most 2,048 MB) | 1500 MB | met |" in summary
    assert "training on 10,000 rows" not in summary


def test_summary_skips_missing_sections():
    summary = suite._summary({"http_bench": SECTIONS["http_bench"]})

    assert summary.count("\n|") == 4  # the header, its rule and the two HTTP targets


def test_document_names_command_machine_and_sections():
    results = {"machine_before": MACHINE, "machine_after": MACHINE, "quick": False, "seconds": 42.0, "sections": {}}

    page = suite._document(results, ["## First section\n\nbody", "## Second section"], [])

    assert page.startswith("# Benchmarks\n")
    assert "- Command: `make bench`" in page
    assert "2 cores (x86_64), 23.6 GiB of memory" in page
    assert page.index("## Targets") < page.index("## How the figures are made") < page.index("## First section")
    assert page.index("## First section") < page.index("## Second section")


def test_summary_all_rows_timed_out():
    training = {
        "seconds": 5.0,
        "results": {
            "sizes": [
                {"size": 10_000, "rows": 10_000, "wall_seconds": summarise([30.0]), "peak_rss_mb": summarise([400.0])},
                {"size": "all", "runs": 0, "timed_out": True, "timeout_seconds": 600},
            ],
        },
    }

    summary = suite._summary({"training_bench": training})

    assert "| training on all rows (at most 60 s) | timed out after 600 s | missed |" in summary
    assert "training on 10,000 rows" not in summary


def test_summary_quick_training_is_for_reference():
    training = {
        "seconds": 5.0,
        "results": {
            "sizes": [{"size": 500, "rows": 500, "wall_seconds": summarise([3.0]), "peak_rss_mb": summarise([300.0])}]
        },
    }

    summary = suite._summary({"training_bench": training})

    assert "| training on 500 rows: time, peak memory | 3 s, 300 MB | for reference |" in summary


def test_summary_scale_at_equal_returned_rows():
    comparison = {"rows_returned": 50, "smallest_rows_returned": 3, "baseline": 1, "ratio": 0.95}
    scale = {
        "seconds": 5.0,
        "results": {
            "flat_ratio": 1.5,
            "history": [{"rows": 100}, {"rows": 10_000}, {"rows": 100_000}],
            "growth": {"history": {"query_often": 1.52, "query_rare": 1.14}},
            "equal_rows_growth": {"history": {"query_often": comparison}},
        },
    }

    summary = suite._summary({"scale_bench": scale})

    equal = "| scale: query_often at 100,000 past expenses / at 10,000, both returning 50 rows (flat: at most 1.5) |"
    assert f"{equal} 0.95 | met |" in summary
    smallest = "| scale: query_often at 100,000 past expenses / at 100, which returns 3 rows, not 50 |"
    assert f"{smallest} 1.52 | above 1.5, from 47 more rows returned; see Scale |" in summary
    assert "| scale: query_rare at 100,000 past expenses / at 100 (flat: at most 1.5) | 1.14 | met |" in summary
