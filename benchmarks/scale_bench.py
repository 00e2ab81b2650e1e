"""Benchmark of how the hot path grows with a business's history and with the number of businesses.

Runs in process, without HTTP, in a child Python process with Django set up on a fresh PostgreSQL
database on 127.0.0.1:5432 and the SQL lookup store. Scenarios:
- history: one business with 100, 10,000 and 100,000 past expenses;
- businesses: 10, 1,000 and 10,000 businesses sharing 100,000 past expenses equally.

Each scenario starts from an emptied lookup table, bulk loaded with PostgreSQL COPY from the
first rows of the shared payments file (real suppliers, amounts, dates and categories, under the
scenario's business ids), then ANALYZEd. Per run it measures:
- `lookup.selectors.similar_expenses` for suppliers the business uses often (its 10 most used)
  and rarely (used once);
- `categorisation.services.predict_expenses` for one expense copied from the business's
  history, with every source on: rules, lookup, and a small model trained in process on rows of
  the same file;
- `SqlLookupStore.apply` of one new expense, the store write the worker makes for one event. The
  run deletes these expenses afterwards, untimed, so every run queries the loaded history.
Every figure is the median over 3 runs of each run's p50 or p99, with the spread. The section
also records PostgreSQL's EXPLAIN ANALYZE of the lookup query at 100,000 past expenses.

DynamoDB is not measured here. `benchmarks.lookup_bench` measured DynamoDB Local's apply_many at
hundreds of items per second on two cores, so loading 100,000 items would take minutes, beyond
this section's time budget. That section compares the stores at one size.

Usage: .venv/bin/python -m benchmarks.scale_bench [--quick] [--json PATH]
"""

import argparse
import collections
import json
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import measure
from tests.support.stack import REPO, VENV_BIN, StackError, postgres_database, service_env

HISTORY_SIZES = (100, 10_000, 100_000)
BUSINESS_COUNTS = (10, 1_000, 10_000)
SHARED_ROWS = 100_000
RUNS = 3
QUERIES_PER_RUN = 200
PREDICTIONS_PER_RUN = 100
APPLIES_PER_RUN = 100
# Quick mode keeps every step but shrinks the data and the samples to run in a few seconds.
QUICK_HISTORY_SIZES = (20, 200)
QUICK_BUSINESS_COUNTS = (2, 20)
QUICK_SHARED_ROWS = 200
QUICK_SAMPLES_PER_RUN = 10

# A supplier the business uses often is one of its OFTEN_TOP most used, and a rare one is used once.
OFTEN_TOP = 10
# The model trains on every TRAINING_STRIDE-th loaded row, without a holdout, to keep the fit short.
# Below TRAINING_MIN_ROWS such rows (quick mode) it trains on every loaded row.
TRAINING_STRIDE = 50
TRAINING_MIN_ROWS = 50
# A scenario is flat when its largest size's p50 is at most this multiple of its smallest's. A
# lookup query's work grows with the rows it returns, so a lookup measure is also compared from
# the smallest size that returns as many rows as the largest (_equal_rows_growth).
FLAT_RATIO = 1.5
# The measures whose lookup query's returned rows are counted: the query itself, and a prediction,
# which reads, converts and weighs every row its lookup returns.
LOOKUP_MEASURES = ("query_often", "query_rare", "predict")
CHILD_TIMEOUT_SECONDS = 300
QUICK_CHILD_TIMEOUT_SECONDS = 120
SEED = 8


def run(*, quick: bool = False) -> dict:
    """Measure every scenario in a child process on a scratch PostgreSQL database; return the figures.

    The database and the scratch folder are removed afterwards. Raises StackError when PostgreSQL
    is unreachable or the child fails or times out.
    """
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as scratch, postgres_database("bench_scale") as url:
        output = Path(scratch) / "results.json"
        env = service_env(
            DJANGO_SETTINGS_MODULE="config.settings.local",
            DATABASE_URL=url,
            VAR_DIR=scratch,
            LOOKUP_STORE="sql",
            PREDICTOR="inprocess",
        )
        command = [str(VENV_BIN / "python"), "-m", "benchmarks.scale_bench", "--child-output", str(output)]
        if quick:
            command.append("--quick")
        timeout = QUICK_CHILD_TIMEOUT_SECONDS if quick else CHILD_TIMEOUT_SECONDS
        started = time.perf_counter()
        try:
            completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise StackError(
                f"The scale benchmark timed out after {timeout} s; run it on a less loaded machine."
            ) from exc
        if completed.returncode != 0:
            raise StackError(f"The scale benchmark exited with {completed.returncode}:\n{completed.stderr[-4000:]}")
        results = json.loads(output.read_text())
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["machine"] = measure.machine()
    results["quick"] = quick
    return results


def _measure_in_this_process(*, quick: bool) -> dict:
    """Set up Django from the environment, then load and measure each scenario."""
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0, interactive=False)
    history_sizes = QUICK_HISTORY_SIZES if quick else HISTORY_SIZES
    business_counts = QUICK_BUSINESS_COUNTS if quick else BUSINESS_COUNTS
    shared_rows = QUICK_SHARED_ROWS if quick else SHARED_ROWS
    samples = QUICK_SAMPLES_PER_RUN if quick else None
    rows = measure.data_expenses(limit=max(*history_sizes, shared_rows))
    model = _train_and_activate_model(rows)

    rng = random.Random(SEED)
    history = []
    for size in history_sizes:
        history.append(_scenario(rows[:size], businesses=1, rng=rng, samples=samples))
    explain = _explain_lookup(history[-1])
    by_businesses = []
    for count in business_counts:
        by_businesses.append(_scenario(rows[:shared_rows], businesses=count, rng=rng, samples=samples))

    for scenario in history + by_businesses:
        del scenario["suppliers"]
    return {
        "store": "sql",
        "database": f"PostgreSQL {connection.pg_version // 10000}",
        "model": model,
        "runs": RUNS,
        "history": history,
        "businesses": by_businesses,
        "explain_rows": history_sizes[-1],
        "explain": explain,
        "flat_ratio": FLAT_RATIO,
        "lookup_max_matches": settings.LOOKUP_MAX_MATCHES,
        "growth": {"history": _growth(history), "businesses": _growth(by_businesses)},
        "equal_rows_growth": {"history": _equal_rows_growth(history), "businesses": _equal_rows_growth(by_businesses)},
    }


def _train_and_activate_model(rows: list[dict]) -> dict:
    from mlops import services
    from mlops.training import TrainingRow, train

    sample = rows[::TRAINING_STRIDE] if len(rows) >= TRAINING_STRIDE * TRAINING_MIN_ROWS else rows
    training_rows = [
        TrainingRow(record=_model_record(row), category=row["category"], date=measure.parse_date(row["date"]))
        for row in sample
    ]
    started = time.perf_counter()
    result = train(training_rows, min_rows=2, holdout_fraction=0.0)
    seconds = time.perf_counter() - started
    version = services.register_version(result=result, training_data={"store": "benchmark", "rows": len(training_rows)})
    services.activate_version(version=version.version)
    return {
        "training_rows": len(training_rows),
        "categories": result.metrics["categories"],
        "fit_seconds": round(seconds, 1),
    }


def _scenario(rows: list[dict], *, businesses: int, rng: random.Random, samples: int | None) -> dict:
    """Load ROWS spread over BUSINESSES businesses into an empty lookup table, then measure RUNS runs."""
    per_business = len(rows) // businesses
    owned = [(f"business-{index // per_business}", row) for index, row in enumerate(rows[: per_business * businesses])]
    load_seconds = _load(owned)
    suppliers = _supplier_choices(owned)

    runs = {name: [] for name in ("query_often", "query_rare", "predict", "apply")}
    degraded = collections.Counter()
    returned = {name: [] for name in LOOKUP_MEASURES}
    for run_number in range(RUNS):
        measured, run_degraded, run_returned = _measure_run(
            owned, suppliers, rng=rng, samples=samples, run_number=run_number
        )
        degraded.update(run_degraded)
        for name, counts in run_returned.items():
            returned[name] += counts
        for name, latencies in measured.items():
            runs[name].append(measure.percentiles(latencies))
    figures = {
        name: {
            "p50_ms": measure.summarise([result["p50_ms"] for result in results]),
            "p99_ms": measure.summarise([result["p99_ms"] for result in results]),
            "samples_per_run": results[0]["count"],
        }
        for name, results in runs.items()
    }
    return {
        "rows": len(owned),
        "businesses": businesses,
        "rows_per_business": per_business,
        "load_seconds": round(load_seconds, 1),
        # Median rows of an often used supplier: what the lookup query sorts to keep the newest 50,
        # unless an index returns them in date order.
        "often_supplier_rows_median": suppliers["often_rows_median"],
        # Median rows each lookup query returned, at most LOOKUP_MAX_MATCHES: its work grows with them.
        "rows_returned": {name: int(statistics.median(counts)) for name, counts in returned.items()},
        "often_index_read": _index_read(*suppliers["often"][0]),
        "suppliers": suppliers,
        # Predictions that skipped a source (timed out or failed), by source, over every run.
        "degraded_predictions": dict(degraded),
        **figures,
    }


def _load(owned: list[tuple[str, dict]]) -> float:
    """Empty the lookup table and COPY the rows into it, then ANALYZE it; return the seconds taken.

    The rows are built by the SQL store's own mapping, so they are the rows `apply` would write.
    ANALYZE does now what autovacuum would soon do on a table that grew this much.
    """
    from django.db import connection, transaction

    from lookup.models import LookupExpense
    from lookup.stores.sql import _row_values

    table = LookupExpense._meta.db_table
    started = time.perf_counter()
    changes = [measure.expense_change(row, business_id=business_id) for business_id, row in owned]
    columns = ["business_id", "expense_id", *_row_values(changes[0])]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {table}")
        with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for change in changes:
                copy.write_row([change.business_id, change.expense_id, *_row_values(change).values()])
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")
    return time.perf_counter() - started


def _supplier_choices(owned: list[tuple[str, dict]]) -> dict:
    from lookup.normalisation import supplier_key

    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for business_id, row in owned:
        counts[business_id][supplier_key(row["supplier"])] += 1
    often, rare, often_rows = [], [], []
    for business_id, counter in counts.items():
        for key, count in counter.most_common(OFTEN_TOP):
            often.append((business_id, key))
            often_rows.append(count)
        once = [key for key, count in counter.items() if count == 1]
        # A business whose every supplier repeats gets its least used one as the rare supplier.
        rare += [(business_id, key) for key in once] or [(business_id, counter.most_common()[-1][0])]
    often_rows.sort()
    return {"often": often, "rare": rare, "often_rows_median": often_rows[len(often_rows) // 2]}


def _measure_run(
    owned, suppliers, *, rng: random.Random, samples: int | None, run_number: int
) -> tuple[dict, dict, dict]:
    """Time each measure over its samples, then delete the applied expenses.

    Returns the latencies, the predictions' degraded sources and the rows each lookup query returned.
    """
    from categorisation.serializers import PredictionRequestSerializer
    from categorisation.services import predict_expenses
    from lookup.models import LookupExpense
    from lookup.normalisation import supplier_key
    from lookup.selectors import similar_expenses
    from lookup.stores import get_lookup_store

    queries = samples or QUERIES_PER_RUN
    predictions = samples or PREDICTIONS_PER_RUN
    applies = samples or APPLIES_PER_RUN

    def timed(call, arguments) -> list[float]:
        # The first argument is an untimed call, so a run does not time a cold model or connection.
        call(arguments[0])
        latencies = []
        for argument in arguments[1:]:
            started = time.perf_counter()
            call(argument)
            latencies.append(time.perf_counter() - started)
        return latencies

    returned = {name: [] for name in LOOKUP_MEASURES}

    def query_counting(counts: list[int]):
        def query(pair):
            counts.append(len(similar_expenses(business_id=pair[0], key=pair[1])))

        return query

    bodies = []
    for business_id, row in rng.choices(owned, k=predictions + 1):
        serializer = PredictionRequestSerializer(data=measure.prediction_body(row) | {"business_id": business_id})
        serializer.is_valid(raise_exception=True)
        bodies.append(dict(serializer.validated_data))
    # The rows each timed prediction's lookup returns, counted untimed beforehand.
    for body in bodies[1:]:
        query_counting(returned["predict"])((body["business_id"], supplier_key(body["supplier"])))

    degraded = collections.Counter()

    def predict(body):
        expense = dict(body)
        [prediction] = predict_expenses(expenses=[expense], top_k=expense.pop("top_k"))
        degraded.update(prediction.degraded)

    store = get_lookup_store()
    new_expenses = [
        measure.expense_change(row, business_id=business_id, expense_id=f"new-{run_number}-{index}")
        for index, (business_id, row) in enumerate(rng.choices(owned, k=applies + 1))
    ]
    latencies = {
        "query_often": timed(query_counting(returned["query_often"]), rng.choices(suppliers["often"], k=queries + 1)),
        "query_rare": timed(query_counting(returned["query_rare"]), rng.choices(suppliers["rare"], k=queries + 1)),
        "predict": timed(predict, bodies),
        "apply": timed(store.apply, new_expenses),
    }
    LookupExpense.objects.filter(expense_id__startswith=f"new-{run_number}-").delete()
    return latencies, dict(degraded), returned


def _lookup_sql(business_id: str, key: str) -> str:
    """Return the exact SQL, parameters filled in, that the lookup query runs for this business and supplier."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from lookup.selectors import similar_expenses

    with CaptureQueriesContext(connection) as captured:
        similar_expenses(business_id=business_id, key=key)
    return captured.captured_queries[-1]["sql"]


def _explain_lookup(scenario: dict) -> dict:
    """Return EXPLAIN ANALYZE of the exact SQL the lookup query runs, for an often and a rare supplier."""
    from django.db import connection

    plans = {}
    for kind in ("often", "rare"):
        sql = _lookup_sql(*scenario["suppliers"][kind][0])
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            plans[kind] = [line for (line,) in cursor.fetchall()]
    return plans


def _index_read(business_id: str, key: str) -> dict:
    """Return the rows one lookup query returns and the shared buffers it touches, from EXPLAIN ANALYZE.

    Buffers are 8 kB pages of the index and table, found in PostgreSQL's cache or read in.
    """
    from django.db import connection

    sql = _lookup_sql(business_id, key)
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
        [(document,)] = cursor.fetchall()
    # psycopg 3 returns a json column decoded, and other drivers may return its text.
    plan = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
    return {"rows": plan["Actual Rows"], "buffers": plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]}


def _growth(scenarios: list[dict]) -> dict:
    """Return, per measure, the largest scenario's median p50 divided by the smallest's."""
    first, last = scenarios[0], scenarios[-1]
    return {
        name: round(last[name]["p50_ms"]["median"] / first[name]["p50_ms"]["median"], 2)
        for name in ("query_often", "query_rare", "predict", "apply")
        if first[name]["p50_ms"]["median"] > 0
    }


def _equal_rows_growth(scenarios: list[dict]) -> dict:
    """Compare each lookup measure between scenarios whose queries return as many rows as the largest's.

    Only measures whose smallest scenario returns fewer rows than the largest get an entry, because
    otherwise the plain ratio already compares the largest with a scenario doing as much work. Its
    `ratio` is the largest scenario's median p50 over that of the smallest scenario returning at
    least as many rows (`baseline`, an index into SCENARIOS), or None when only the largest does.
    `ms_per_returned_row` estimates the cost of one more returned row from the smallest and the
    largest scenario's medians.
    """
    first, last = scenarios[0], scenarios[-1]
    comparisons = {}
    for name in LOOKUP_MEASURES:
        rows = last["rows_returned"].get(name)
        if rows is None or first["rows_returned"][name] >= rows:
            continue
        baseline = next(index for index, scenario in enumerate(scenarios) if scenario["rows_returned"][name] >= rows)
        base_p50 = scenarios[baseline][name]["p50_ms"]["median"]
        extra_ms = last[name]["p50_ms"]["median"] - first[name]["p50_ms"]["median"]
        comparisons[name] = {
            "rows_returned": rows,
            "smallest_rows_returned": first["rows_returned"][name],
            "baseline": baseline,
            "ratio": round(last[name]["p50_ms"]["median"] / base_p50, 2) if baseline < len(scenarios) - 1 else None,
            "ms_per_returned_row": round(extra_ms / (rows - first["rows_returned"][name]), 4),
        }
    return comparisons


def _model_record(row: dict) -> dict:
    fields = ("business_id", "supplier", "description", "amount", "currency", "payment_method")
    return {name: row.get(name, "") for name in (*fields, "merchant_category", "department")}


def report(results: dict) -> str:
    """Return the Markdown section: tables per scenario kind, the targets, EXPLAIN and the command."""
    lines = [
        "## Scale: history and number of businesses",
        "",
        f"In process (no HTTP), with the SQL lookup store on a scratch {results['database']} database. "
        "Each scenario empties the lookup table and bulk loads real rows of payments.csv. Predictions "
        f"use every source, with a model trained in process on {results['model']['training_rows']:,} rows. "
        f"Every cell is the median of {results['runs']} runs' p50 or p99 in ms, with the range of the runs "
        "in brackets. A lookup returns at most "
        f"{results['lookup_max_matches']} rows (LOOKUP_MAX_MATCHES); the column of rows it returns is the median "
        "over the often supplier's timed queries. The buffers are the 8 kB pages of index and table that "
        "EXPLAIN ANALYZE counts for one query of the first business's most used supplier, with the rows it "
        "returned.",
        "",
    ]
    lines += _scenario_table("Past expenses of one business", results["history"], lambda s: f"{s['rows']:,}")
    lines.append("")
    lines += _scenario_table(
        f"Businesses sharing {results['businesses'][0]['rows']:,} past expenses",
        results["businesses"],
        lambda s: f"{s['businesses']:,} × {s['rows_per_business']:,}",
    )
    lines += ["", *_targets(results), "", *_flatness_lines(results), _limits(results), ""]
    lines += [
        f"EXPLAIN ANALYZE of the lookup query for a supplier the business uses often, at "
        f"{results['explain_rows']:,} past expenses:",
        "",
        "```",
        *results["explain"]["often"],
        "```",
        "",
        "Reproduce: `.venv/bin/python -m benchmarks.scale_bench --json scale.json`",
    ]
    return "\n".join(lines)


def _scenario_table(title: str, scenarios: list[dict], label) -> list[str]:
    lines = [
        f"| {title} | rows of an often supplier | rows its lookup returns | EXPLAIN of the most used: buffers (rows) "
        "| lookup, often supplier p50 / p99 | lookup, rare supplier p50 / p99 | prediction p50 / p99 "
        "| apply p50 / p99 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in scenarios:
        cells = [
            f"{measure.spread(scenario[name]['p50_ms'])} / {measure.spread(scenario[name]['p99_ms'])}"
            for name in ("query_often", "query_rare", "predict", "apply")
        ]
        read = scenario["often_index_read"]
        lines.append(
            f"| {label(scenario)} | {scenario['often_supplier_rows_median']:,} | "
            f"{scenario['rows_returned']['query_often']} | {read['buffers']} ({read['rows']}) | {' | '.join(cells)} |"
        )
    return lines


def _limits(results: dict) -> str:
    """Explain, from the EXPLAIN plan and the figures, what limits the lookup and the prediction."""
    largest = results["history"][-1]
    share = (
        f"At {largest['rows']:,} past expenses the often supplier's lookup p50 is "
        f"{largest['query_often']['p50_ms']['median']:g} ms and the prediction's "
        f"{largest['predict']['p50_ms']['median']:g} ms. A prediction reads, converts and weighs every row its "
        "lookup returns, so it grows with those rows, up to the limit, like the lookup."
    )
    if _sorts_below_limit(results["explain"]["often"]):
        return (
            "The lookup query for an often used supplier reads every live row of that supplier (the column "
            '"rows of an often supplier") and sorts them to return the newest 50, because the plan below does '
            "not read the index on (business, supplier key, date, version) in date order. " + share
        )
    return f"The lookup query reads at most its 50 rows from an index in date order. {share}"


def _sorts_below_limit(plan: list[str]) -> bool:
    """Return True if the plan sorts rows before its Limit: it then reads every row of the supplier.

    A Sort above the Limit, as in the LATERAL statement, only orders the rows already cut to the limit.
    """
    limit_lines = [index for index, line in enumerate(plan) if "Limit" in line]
    return bool(limit_lines) and any("Sort Key" in line for line in plan[limit_lines[0] :])


_NAMES = {
    "query_often": "lookup, often supplier",
    "query_rare": "lookup, rare supplier",
    "predict": "prediction",
    "apply": "apply",
}


def _targets(results: dict) -> list[str]:
    """State the target, the hot path staying flat, per measure: met, or the ratio above the limit."""
    flat = results["flat_ratio"]
    lines = [
        f"Target: the hot path does not grow with history, read as the largest scenario's p50 within "
        f"{flat:g}× of the smallest's. A lookup's work grows with the rows it returns, up to "
        f"{results['lookup_max_matches']}, so a lookup is compared from the smallest scenario that returns as many "
        "rows as the largest; the ratio from the smallest scenario is shown beside it.",
        "",
    ]
    for kind, title, unit in (("history", "history", "past expenses"), ("businesses", "number of businesses", "")):
        comparisons = results["equal_rows_growth"].get(kind, {})
        verdicts = [
            _growth_verdict(name, ratio, comparisons.get(name), results[kind], unit=unit, flat=flat)
            for name, ratio in results["growth"][kind].items()
        ]
        lines.append(f"- Growth with {title}: {'; '.join(verdicts)}.")
    return lines


def _growth_verdict(
    name: str, ratio: float, comparison: dict | None, scenarios: list[dict], *, unit: str, flat: float
) -> str:
    plain = f"{_NAMES[name]} {ratio:g}× ({_verdict(ratio, flat)})"
    if comparison is None:
        return plain
    if comparison["ratio"] is None:
        return (
            f"{plain}, where the smallest scenario returns {_rows(comparison['smallest_rows_returned'])} "
            f"and the largest {_rows(comparison['rows_returned'])}"
        )
    baseline = _scenario_label(scenarios[comparison["baseline"]], unit)
    return (
        f"{_NAMES[name]} {comparison['ratio']:g}× from {baseline}, both returning "
        f"{_rows(comparison['rows_returned'])} ({_verdict(comparison['ratio'], flat)}), and {ratio:g}× from "
        f"{_scenario_label(scenarios[0], unit)}, which returns {_rows(comparison['smallest_rows_returned'])} "
        f"({'within' if ratio <= flat else 'above'} {flat:g}×)"
    )


def _rows(count: int) -> str:
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


def _verdict(ratio: float, flat: float) -> str:
    return "met" if ratio <= flat else f"missed: above {flat:g}×"


def _scenario_label(scenario: dict, unit: str) -> str:
    if unit:
        return f"{scenario['rows']:,} {unit}"
    return f"{scenario['businesses']:,} businesses"


def _flatness_lines(results: dict) -> list[str]:
    """Explain why a lookup whose returned rows grow with history is also compared at equal returned rows."""
    history, flat = results["history"], results["flat_ratio"]
    lines = []
    for name, comparison in results["equal_rows_growth"].get("history", {}).items():
        if comparison["ratio"] is None:
            continue
        first, base, last = history[0], history[comparison["baseline"]], history[-1]
        sizes = ", ".join(f"{scenario['rows']:,}" for scenario in history)
        buffers = ", ".join(str(scenario["often_index_read"]["buffers"]) for scenario in history)
        explained_rows = ", ".join(str(scenario["often_index_read"]["rows"]) for scenario in history)
        fewer, returned = comparison["smallest_rows_returned"], comparison["rows_returned"]
        rise = last[name]["p50_ms"]["median"] - first[name]["p50_ms"]["median"]
        sentences = [
            f"Why the {_NAMES[name]} is also compared from {base['rows']:,} past expenses: the lookup query returns "
            f"the newest matches, at most {results['lookup_max_matches']}. At {first['rows']:,} past expenses the "
            f"median lookup of this measure returns {_rows(fewer)}, and from {base['rows']:,} on it returns "
            f"{_rows(returned)}.",
            f"EXPLAIN ANALYZE of the most used supplier's query touches {buffers} buffers at {sizes} past "
            f"expenses, returning {explained_rows} rows.",
            f"From {first['rows']:,} to {last['rows']:,} past expenses the p50 changes by {rise:+.2f} ms, about "
            f"{comparison['ms_per_returned_row']:g} ms for each of the {returned - fewer} more rows returned "
            "(an estimate from two medians, if the rows returned are the whole difference).",
        ]
        if comparison["ratio"] <= flat:
            sentences.append(
                f"Between {base['rows']:,} and {last['rows']:,} past expenses, where both return {_rows(returned)}, "
                f"the ratio is {comparison['ratio']:g}×, within the same {flat:g}× limit: the cost grows with the rows "
                "the lookup returns, which stop at the limit, and not with the history behind them."
            )
        else:
            sentences.append(
                f"Between {base['rows']:,} and {last['rows']:,} past expenses, where both return {_rows(returned)}, "
                f"the ratio is {comparison['ratio']:g}×, above the {flat:g}× limit, so in this run it grew with "
                "history beyond the rows the lookup returns."
            )
        sentences.append(f"The {first['rows']:,}-expense figure stays in the table and in the target line.")
        lines += [" ".join(sentences), ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Run a tiny version in a few seconds.")
    parser.add_argument("--json", type=Path, help="Also write the results to this JSON file.")
    # The child process that run() starts with Django configured; not for direct use.
    parser.add_argument("--child-output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child_output:
        args.child_output.write_text(json.dumps(_measure_in_this_process(quick=args.quick)))
        return
    results = run(quick=args.quick)
    text = json.dumps(results, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
