"""Benchmark of the lookup store adapters side by side: hot-path query latency and write throughput.

Three stores, each measured in its own child Python process with Django set up for it:
- sql on a scratch SQLite file (the embedded default);
- sql on a fresh PostgreSQL database on 127.0.0.1:5432;
- dynamodb on a DynamoDB Local server started on 127.0.0.1 for the section.
Each store first takes an untimed warm-up (writes and queries), then 3 runs of:
1. N new expenses written one `apply` at a time, as the event worker writes one event (per second);
2. N more written with `apply_many` in batches of 500, as copy_lookup does (per second);
3. Q `similar_expenses` queries (limit 50) from one client, for the business and supplier of a
   random expense written so far, so often used suppliers are asked about more often (p50, p99).
The expenses are rows of the shared payments file in a seeded random order, with their real
businesses, suppliers, amounts, dates and categories. Every figure is the median of the runs with
their spread. DynamoDB Local is a Java emulator sharing the machine's cores, so its row shows the
adapter's request pattern and overhead, not DynamoDB's service latency.

Usage: .venv/bin/python -m benchmarks.lookup_bench [--quick] [--json PATH]
"""

import argparse
import json
import random
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks import measure
from tests.support.dynamodb_local import DynamoDBLocalServer
from tests.support.stack import REPO, VENV_BIN, StackError, postgres_database, service_env

STORES = ("sqlite", "postgresql", "dynamodb")
RUNS = 3
EXPENSES_PER_RUN = 500
QUERIES_PER_RUN = 500
BATCH_SIZE = 500
WARM_UP = 200
QUICK_EXPENSES_PER_RUN = 30
QUICK_QUERIES_PER_RUN = 30
QUICK_WARM_UP = 10
QUICK_SAMPLED_ROWS = 5000
QUERY_LIMIT = 50
# The default of the LOOKUP_TIMEOUT_MS setting: the prediction stops waiting for the lookup after it.
LOOKUP_TIMEOUT_MS = 1000
TABLE = "lookup-bench"
REGION = "eu-west-2"
CHILD_TIMEOUT_SECONDS = 300
SEED = 7


def run(*, quick: bool = False) -> dict:
    """Measure each store in a child process; return the figures, one entry per store.

    Removes the scratch folder and database and stops DynamoDB Local afterwards. Raises StackError
    when PostgreSQL is unreachable or a child fails or times out, and DynamoDBLocalUnavailable when
    java, javac or npm is missing.
    """
    stores = []
    with tempfile.TemporaryDirectory(prefix="lookup-bench-") as scratch_name:
        scratch = Path(scratch_name)
        sqlite_url = f"sqlite:///{scratch / 'lookup.sqlite3'}"
        stores.append(_run_child("sqlite", scratch, quick=quick, DATABASE_URL=sqlite_url, LOOKUP_STORE="sql"))
        with postgres_database("bench_lookup") as url:
            stores.append(_run_child("postgresql", scratch, quick=quick, DATABASE_URL=url, LOOKUP_STORE="sql"))

        server = DynamoDBLocalServer(scratch / "dynamodb-local.log")
        try:
            server.start()
            stores.append(
                _run_child(
                    "dynamodb",
                    scratch,
                    quick=quick,
                    DATABASE_URL=sqlite_url,
                    LOOKUP_STORE="dynamodb",
                    DYNAMODB_TABLE=TABLE,
                    **server.client_env(region=REGION),
                )
            )
        finally:
            server.stop()
    return {"runs": RUNS, "batch_size": BATCH_SIZE, "stores": stores, "machine": measure.machine(), "quick": quick}


def _run_child(store: str, scratch: Path, *, quick: bool, **settings: str) -> dict:
    output = scratch / f"{store}.json"
    env = service_env(DJANGO_SETTINGS_MODULE="config.settings.local", VAR_DIR=str(scratch / store), **settings)
    command = [str(VENV_BIN / "python"), "-m", "benchmarks.lookup_bench", "--child-store", store]
    command += ["--child-output", str(output)] + (["--quick"] if quick else [])
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(
            f"The lookup benchmark of {store} timed out after {CHILD_TIMEOUT_SECONDS} s; "
            "run it on a less loaded machine."
        ) from exc
    if completed.returncode != 0:
        raise StackError(
            f"The lookup benchmark of {store} exited with {completed.returncode}:\n{completed.stderr[-4000:]}"
        )
    # Wall time of the child, start-up included, to keep the section within its time budget.
    return json.loads(output.read_text()) | {"seconds": round(time.perf_counter() - started, 1)}


def _measure_in_this_process(store_label: str, *, quick: bool) -> dict:
    """Set up Django and the store named by the environment, then warm it up and measure RUNS runs."""
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from lookup.stores import get_lookup_store

    if settings.LOOKUP_STORE == "sql":
        call_command("migrate", verbosity=0, interactive=False)
    else:
        from lookup.aws import dynamodb_client
        from lookup.stores.dynamodb_table import ensure_table

        ensure_table(dynamodb_client(settings.AWS_REGION), settings.DYNAMODB_TABLE, timeout_seconds=60)
    store = get_lookup_store()

    expenses = QUICK_EXPENSES_PER_RUN if quick else EXPENSES_PER_RUN
    queries = QUICK_QUERIES_PER_RUN if quick else QUERIES_PER_RUN
    warm_up = QUICK_WARM_UP if quick else WARM_UP
    rng = random.Random(SEED)
    needed = warm_up + RUNS * 2 * expenses
    # Quick mode samples from the first rows only: reading the whole file costs more than its runs.
    rows = rng.sample(measure.data_expenses(limit=QUICK_SAMPLED_ROWS if quick else None), needed)
    changes = [_change(row) for row in rows]
    written: list[tuple[str, str]] = []

    # Untimed: the first writes and queries open connections and, on DynamoDB Local, warm its JIT.
    store.apply_many(changes[:warm_up])
    written += [(change.business_id, change.expense.supplier_key) for change in changes[:warm_up]]
    _time_queries(store, rng.choices(written, k=warm_up))

    runs = []
    for run_number in range(RUNS):
        start = warm_up + run_number * 2 * expenses
        singles, batched = changes[start : start + expenses], changes[start + expenses : start + 2 * expenses]
        runs.append(_measure_run(store, singles, batched, written, rng=rng, queries=queries))

    return {
        "store": _store_label(store_label),
        "expenses_per_run": expenses,
        "queries_per_run": queries,
        "apply_per_second": measure.summarise([run["apply_per_second"] for run in runs], digits=0),
        "apply_many_per_second": measure.summarise([run["apply_many_per_second"] for run in runs], digits=0),
        "query_p50_ms": measure.summarise([run["query"]["p50_ms"] for run in runs]),
        "query_p99_ms": measure.summarise([run["query"]["p99_ms"] for run in runs]),
    }


def _measure_run(store, singles, batched, written, *, rng: random.Random, queries: int) -> dict:
    started = time.perf_counter()
    for change in singles:
        store.apply(change)
    apply_seconds = time.perf_counter() - started

    started = time.perf_counter()
    for start in range(0, len(batched), BATCH_SIZE):
        store.apply_many(batched[start : start + BATCH_SIZE])
    apply_many_seconds = time.perf_counter() - started

    written += [(change.business_id, change.expense.supplier_key) for change in singles + batched]
    latencies = _time_queries(store, rng.choices(written, k=queries))
    return {
        "apply_per_second": len(singles) / apply_seconds,
        "apply_many_per_second": len(batched) / apply_many_seconds,
        "query": measure.percentiles(latencies),
    }


def _time_queries(store, pairs: list[tuple[str, str]]) -> list[float]:
    latencies = []
    for business_id, key in pairs:
        started = time.perf_counter()
        store.similar_expenses(business_id=business_id, supplier_key=key, limit=QUERY_LIMIT)
        latencies.append(time.perf_counter() - started)
    return latencies


def _store_label(store_label: str) -> str:
    from django.db import connection

    if store_label == "sqlite":
        return "sql (SQLite file, WAL)"
    if store_label == "postgresql":
        return f"sql (PostgreSQL {connection.pg_version // 10000})"
    return "dynamodb (DynamoDB Local 1.25.1)"


def _change(row: dict):
    # A fresh id per change, so every write is a new expense even when the table already contains the row.
    return measure.expense_change(row, expense_id=f"{row['expense_id']}-{uuid.uuid4().hex[:8]}")


def report(results: dict) -> str:
    """Return the Markdown section: one row per store, the targets, what limits them, and the command."""
    lines = [
        "## Lookup store",
        "",
        f"Each store in its own process, {results['runs']} runs after an untimed warm-up. A run writes "
        f"{results['stores'][0]['expenses_per_run']:,} new expenses with `apply`, as many with `apply_many` "
        f"in batches of {results['batch_size']}, then times {results['stores'][0]['queries_per_run']:,} "
        "`similar_expenses` queries (limit 50) for the business and supplier of a random written expense. "
        "Rows are real rows of payments.csv. Cells are the median of the runs with their range.",
        "",
        "| store | apply/s | apply_many/s | query p50 | query p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    for store in results["stores"]:
        lines.append(
            f"| {store['store']} | {measure.spread(store['apply_per_second'])} | "
            f"{measure.spread(store['apply_many_per_second'])} | {measure.spread(store['query_p50_ms'], 'ms')} | "
            f"{measure.spread(store['query_p99_ms'], 'ms')} |"
        )
    verdicts = []
    for store in results["stores"]:
        excess = store["query_p99_ms"]["median"] - LOOKUP_TIMEOUT_MS
        verdicts.append(f"{store['store']} {'met' if excess <= 0 else f'missed by {excess:g} ms'}")
    lines += [
        "",
        f"Target: the query's p99 within the prediction's lookup timeout (LOOKUP_TIMEOUT_MS, "
        f"{LOOKUP_TIMEOUT_MS} ms by default): {'; '.join(verdicts)}.",
        "",
        "`apply` commits once per expense, and on SQL it runs an UPDATE, an existence check and an "
        "INSERT in a savepoint, so its rate is bound by round trips and commits. `apply_many` on SQL "
        "runs the same statements in one transaction, and on DynamoDB sends 8 concurrent conditional "
        "puts. DynamoDB Local is a Java emulator on the same two cores, so its row shows the "
        "adapter's overhead, not DynamoDB's service latency.",
        "",
        "Reproduce: `.venv/bin/python -m benchmarks.lookup_bench --json lookup.json`",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Run a tiny version in a few seconds.")
    parser.add_argument("--json", type=Path, help="Also write the results to this JSON file.")
    # The child process that run() starts for one store, with Django configured; not for direct use.
    parser.add_argument("--child-store", choices=STORES, help=argparse.SUPPRESS)
    parser.add_argument("--child-output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child_store:
        if not args.child_output:
            parser.error("--child-store needs --child-output.")
        args.child_output.write_text(json.dumps(_measure_in_this_process(args.child_store, quick=args.quick)))
        return
    results = run(quick=args.quick)
    text = json.dumps(results, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
