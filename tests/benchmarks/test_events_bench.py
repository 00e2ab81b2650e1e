"""The events benchmark section: its helpers on fixed inputs, its report, and a quick run on a real stack."""

import pytest

from benchmarks import events_bench
from benchmarks.measure import data_expenses, summarise
from lookup.normalisation import supplier_key
from lookup.serializers import EventSerializer


def _store_figures(rate: float, p99_ms: float, *, timed_out: int = 0) -> dict:
    return {
        "throughput": {
            "events_per_second": summarise([rate, rate + 10, rate - 10], digits=1),
            "accepted_per_second": summarise([1500.0, 1600.0, 1400.0], digits=1),
            "runs": [],
        },
        "freshness": {
            "p50_ms": summarise([40.0, 45.0, 50.0], digits=1),
            "p99_ms": summarise([p99_ms, p99_ms, p99_ms], digits=1),
            "runs": [{"timed_out": timed_out}, {"timed_out": 0}, {"timed_out": 0}],
        },
        "profile": None,
        "phase_seconds": {"start": 20.0, "throughput": 30.0, "freshness": 10.0, "total": 60.0},
    }


PROFILE = {
    "store": "sql",
    "events": 900,
    "batch_size": 200,
    "statuses": {"applied": 1000},
    "per_event_ms": 2.5,
    "profiled_per_event_ms": 6.0,
    "sql_statements_per_event": 5.0,
    "sql_ms_per_event": 1.5,
    "dynamodb_calls_per_event": {},
    "sql": [{"statement": "UPDATE lookup_lookupexpense", "per_event": 1.0, "ms_per_event": 0.5}],
    "calls": [
        {"depth": 0, "function": "lookup/services.py:apply_events", "ms_per_event": 6.0, "share": 1.0},
        {"depth": 1, "function": "lookup/stores/sql.py:apply_many", "ms_per_event": 5.0, "share": 0.83},
    ],
    "hot_spots": [{"function": "psycopg/connection.py:wait", "calls_per_event": 5.0, "own_ms_per_event": 1.2}],
}


def test_report_targets_missed_and_met():
    sql = _store_figures(400.0, 1500.0, timed_out=2) | {"profile": PROFILE}
    dynamodb = _store_figures(1200.0, 300.0)
    results = {
        "settings": events_bench._run_settings(quick=False),
        "stores": {"sql": sql, "dynamodb": dynamodb},
    }

    text = events_bench.report(results)

    assert text.startswith("## Events")
    assert "| sql | 400 (390-410) |" in text
    assert "missed by 600 events/s" in text
    assert "missed by 500 ms (2 probes never matched" in text
    assert "dynamodb: at least 1,000 applied events/s: met. Freshness p99 at most 1,000 ms: met." in text
    assert "apply about 800 events/s" in text
    assert "| `UPDATE lookup_lookupexpense` | 1 | 0.500 |" in text
    assert "| &nbsp;&nbsp;`lookup/stores/sql.py:apply_many` | 5.000 | 83% |" in text
    assert "| `psycopg/connection.py:wait` | 5 | 1.200 |" in text
    assert events_bench.COMMAND in text


def test_report_skipped_store():
    results = {
        "settings": events_bench._run_settings(quick=False),
        "stores": {"sql": _store_figures(1100.0, 200.0), "dynamodb": {"skipped": "DynamoDB Local needs java"}},
    }

    text = events_bench.report(results)

    assert "| dynamodb | skipped: DynamoDB Local needs java |" in text
    assert "the apply path was not profiled" in text


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ('UPDATE "lookup_lookupexpense" SET "version" = 1 WHERE ("id" = 1)', "UPDATE lookup_lookupexpense"),
        ('SELECT 1 AS "a" FROM "lookup_lookupexpense" WHERE "id" = 1 LIMIT 1', "SELECT EXISTS lookup_lookupexpense"),
        ('SELECT "lookup_expenseevent"."id" FROM "lookup_expenseevent"', "SELECT lookup_expenseevent"),
        ('INSERT INTO "lookup_lookupexpense" ("business_id") VALUES (%s)', "INSERT lookup_lookupexpense"),
        ('SAVEPOINT "s140_x1"', "SAVEPOINT"),
        ('RELEASE SAVEPOINT "s140_x1"', "RELEASE SAVEPOINT"),
        ('ROLLBACK TO SAVEPOINT "s140_x1"', "ROLLBACK TO"),
    ],
)
def test_statement_kind(sql, kind):
    assert events_bench._statement_kind(sql) == kind


def test_probe_suppliers_have_distinct_keys():
    row = data_expenses(limit=1)[0]
    probes = [events_bench._probe_expense(row, run_index=run, index=index) for run in range(3) for index in range(300)]

    keys = {supplier_key(probe["supplier"]) for probe in probes}
    categories = {probe["category"] for probe in probes}

    assert len(keys) == len(probes)
    assert len(categories) == len(probes)
    assert all(probe["business_id"] == row["business_id"] for probe in probes)


def test_created_events_from_real_rows_are_valid():
    events = [events_bench._created_event(row) for row in data_expenses(limit=200)]

    serializer = EventSerializer(data=events, many=True)

    assert serializer.is_valid(), [error for error in serializer.errors if error][:3]
    assert len({event["event_id"] for event in events}) == len(events)


def test_row_slices_do_not_overlap():
    settings = events_bench._run_settings(quick=True)
    expenses = [{"expense_id": str(index)} for index in range(events_bench._rows_needed(settings))]

    slices = events_bench._row_slices(expenses, settings)

    ids = [row["expense_id"] for rows in slices.values() for row in rows]
    assert len(ids) == len(set(ids)) == len(expenses)
    assert len(slices["throughput"]) == settings["runs"] * settings["throughput_events"]


@pytest.mark.integration
def test_quick_run_on_real_stack(monkeypatch):
    # A store is profiled only when it misses the target, which a quick run may meet.
    monkeypatch.setattr(events_bench, "TARGET_EVENTS_PER_SECOND", float("inf"))
    results = events_bench.run(quick=True)

    sql = results["stores"]["sql"]
    throughput_runs = sql["throughput"]["runs"]
    freshness_runs = sql["freshness"]["runs"]
    assert len(throughput_runs) == events_bench.RUNS
    assert all(run["events"] == results["settings"]["throughput_events"] for run in throughput_runs)
    assert all(run["events_per_second"] > 0 for run in throughput_runs)
    assert len(freshness_runs) == events_bench.RUNS
    assert all(run["count"] == results["settings"]["freshness_events"] for run in freshness_runs)
    assert sum(run["timed_out"] for run in freshness_runs) == 0
    assert sql["freshness"]["p50_ms"]["median"] <= sql["freshness"]["p99_ms"]["median"]
    # The target is out of reach here, so the apply path is profiled.
    assert sql["profile"]["statuses"] == {"applied": results["settings"]["profile_events"]}
    assert sql["profile"]["sql_statements_per_event"] > 0
    assert sql["profile"]["calls"][0]["share"] == 1.0
    assert events_bench.report(results).startswith("## Events")
