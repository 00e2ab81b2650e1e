"""Benchmark of the lookup store adapters side by side: hot-path query latency and write throughput.

For each store (SQL on a scratch SQLite file, or on DATABASE_URL when it is set; DynamoDB on a
DynamoDB Local server started on 127.0.0.1 for the run):
1. writes N new expenses one `apply` at a time, as the event worker does (events per second);
2. writes N more with `apply_many` in batches of 500, as copy_lookup does (events per second);
3. runs Q `similar_expenses` queries (limit 50) for random business and supplier pairs, one
   client, and reports p50 and p99 latency.

Every loop is bounded by N and Q. DynamoDB Local is an emulator on this machine, so its figures
show the adapter's overhead and request pattern, not DynamoDB's service latency. Usage:
    .venv/bin/python -m benchmarks.lookup_bench [--expenses 3000] [--queries 2000] [--json out.json]
"""

import argparse
import datetime
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUSINESSES = 20
SUPPLIERS_PER_BUSINESS = 50
QUERY_LIMIT = 50
BATCH_SIZE = 500


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expenses", type=int, default=3000, help="Expenses written per write phase (default 3000).")
    parser.add_argument("--queries", type=int, default=2000, help="Hot-path queries per store (default 2000).")
    parser.add_argument("--json", type=Path, help="Also write the results to this JSON file.")
    args = parser.parse_args()
    if args.expenses < 1 or args.queries < 1:
        parser.error("--expenses and --queries must be at least 1.")

    scratch = Path(tempfile.mkdtemp(prefix="lookup-bench-"))
    _configure_environment(scratch)
    server = _start_dynamodb_local(scratch)
    try:
        results = [_bench_store(_sql_store(), args), _bench_store(_dynamodb_store(server), args)]
    finally:
        server.stop()

    _print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _configure_environment(scratch: Path) -> None:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{scratch / 'bench.sqlite3'}")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    # Fake credentials and no instance metadata: every request goes to the local server.
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
    )
    os.environ.pop("AWS_PROFILE", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _start_dynamodb_local(scratch: Path):
    from tests.support.dynamodb_local import DynamoDBLocalServer

    server = DynamoDBLocalServer(scratch / "dynamodb-local.log")
    server.start()
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = server.endpoint_url
    return server


def _sql_store():
    from django.db import connection

    from lookup.stores.sql import SqlLookupStore

    return SqlLookupStore(), f"sql ({connection.vendor})"


def _dynamodb_store(server):
    from lookup.aws import dynamodb_client
    from lookup.stores.dynamodb import DynamoDBLookupStore
    from lookup.stores.dynamodb_table import ensure_table

    table = f"lookup-bench-{uuid.uuid4().hex[:8]}"
    ensure_table(dynamodb_client("eu-west-2"), table, timeout_seconds=60)
    return DynamoDBLookupStore(table_name=table, region="eu-west-2"), "dynamodb (DynamoDB Local 1.25.1)"


def _bench_store(store_and_label, args) -> dict:
    store, label = store_and_label
    run = uuid.uuid4().hex[:6]
    rng = random.Random(7)

    singles = [_change(run, number, rng) for number in range(args.expenses)]
    started = time.perf_counter()
    for change in singles:
        store.apply(change)
    apply_seconds = time.perf_counter() - started

    batched = [_change(run, args.expenses + number, rng) for number in range(args.expenses)]
    started = time.perf_counter()
    for start in range(0, len(batched), BATCH_SIZE):
        store.apply_many(batched[start : start + BATCH_SIZE])
    apply_many_seconds = time.perf_counter() - started

    latencies = []
    for _ in range(args.queries):
        business, supplier = rng.randrange(BUSINESSES), rng.randrange(SUPPLIERS_PER_BUSINESS)
        started = time.perf_counter()
        store.similar_expenses(business_id=f"{run}-b{business}", supplier_key=f"supplier {supplier}", limit=QUERY_LIMIT)
        latencies.append((time.perf_counter() - started) * 1000)

    percentiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "store": label,
        "expenses_per_phase": args.expenses,
        "apply_per_second": round(args.expenses / apply_seconds),
        "apply_many_per_second": round(args.expenses / apply_many_seconds),
        "queries": args.queries,
        "query_p50_ms": round(percentiles[49], 2),
        "query_p99_ms": round(percentiles[98], 2),
    }


def _change(run: str, number: int, rng: random.Random):
    from lookup.domain import ChangeKind, Expense, ExpenseChange

    business_id = f"{run}-b{rng.randrange(BUSINESSES)}"
    supplier = rng.randrange(SUPPLIERS_PER_BUSINESS)
    expense = Expense(
        business_id=business_id,
        expense_id=f"e{number}",
        version=1,
        supplier=f"Supplier {supplier} Ltd",
        supplier_key=f"supplier {supplier}",
        category=rng.choice(["Meals", "Travel", "Software", "Office"]),
        amount=Decimal(rng.randrange(100, 50_000)) / 100,
        currency="GBP",
        date=datetime.date(2024, 1, 1) + datetime.timedelta(days=rng.randrange(365)),
        description="Receipt line " * rng.randrange(1, 20),
    )
    return ExpenseChange(
        kind=ChangeKind.UPSERT,
        business_id=business_id,
        expense_id=expense.expense_id,
        version=1,
        event_id=f"bench-{run}-{number}",
        expense=expense,
    )


def _print_table(results: list[dict]) -> None:
    header = "| store | apply/s | apply_many/s | query p50 ms | query p99 ms |"
    print(header)
    print("|---|---:|---:|---:|---:|")
    for row in results:
        print(
            f"| {row['store']} | {row['apply_per_second']} | {row['apply_many_per_second']} | "
            f"{row['query_p50_ms']} | {row['query_p99_ms']} |"
        )


if __name__ == "__main__":
    main()
