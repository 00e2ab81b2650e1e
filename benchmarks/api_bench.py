"""Benchmark of the HTTP API on the `make run` stack: prediction latency and event learning.

Starts the Procfile's processes (gunicorn with 2 sync workers, one Celery worker, the scheduler)
on embedded defaults in a scratch folder, loads the demo data, waits for the first model, then:

1. single predictions from 1 client, then from 4 concurrent clients: latency percentiles and
   requests per second;
2. batch predictions of 1,000 expenses: time per batch;
3. events: posts N created events in lists of 500 and measures the time until every one is
   applied (events per second end to end).

Every loop is bounded in count. Usage:
    .venv/bin/python -m benchmarks.api_bench [--requests 2000] [--events 5000] [--json out.json]
"""

import argparse
import concurrent.futures
import json
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SUPPLIERS = ["SQ *BLUE HERON CAFE", "BOOKER WHOLESALE 114", "Shell Fuel", "Unknown Supplier Ltd", "PAYPAL *ADOBE"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="Single predictions per client setting.")
    parser.add_argument("--events", type=int, default=5000, help="Created events to post.")
    parser.add_argument("--json", help="Also write the results to this JSON file.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="api-bench-") as scratch:
        env = _environment(Path(scratch))
        token = _set_up(env)
        port = _free_port()
        stack = subprocess.Popen(
            [str(BIN / "honcho"), "start", "--procfile", "Procfile", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base)
            results = {
                "single_1_client": _single_predictions(base, token, args.requests, clients=1),
                "single_4_clients": _single_predictions(base, token, args.requests, clients=4),
                "batch_1000": _batch_predictions(base, token, batches=5),
                "events": _events(base, token, args.events, Path(scratch) / "var" / "db.sqlite3"),
            }
        finally:
            os.killpg(stack.pid, signal.SIGINT)
            try:
                stack.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(stack.pid, signal.SIGKILL)

    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def _environment(scratch: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "CELERY_", "DATABASE_"))}
    return env | {
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "false",
        "VAR_DIR": str(scratch / "var"),
        "PATH": f"{BIN}:{env.get('PATH', '')}",
    }


def _set_up(env) -> str:
    def manage(*args):
        return subprocess.run(
            [str(BIN / "python"), "manage.py", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout

    manage("migrate", "--noinput", "-v", "0")
    output = manage("setup_demo", "--data", "demo/expenses.csv")
    return re.search(r"Demo API token: (\S+)", output).group(1)


def _post(url, token, body, timeout=30):
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read())


def _wait_ready(base, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health/", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{base}/health/ did not return 200 within {timeout} s")


def _expense(index):
    return {
        "business_id": "harbour_bakery",
        "supplier": SUPPLIERS[index % len(SUPPLIERS)],
        "description": "benchmark",
        "amount": f"{(index % 500) + 1}.25",
        "currency": "GBP",
        "date": "2025-12-01",
    }


def _single_predictions(base, token, count, *, clients):
    url = f"{base}/api/v1/predictions"
    for index in range(50):  # warm-up
        _post(url, token, _expense(index))

    def one(index):
        started = time.perf_counter()
        status, _ = _post(url, token, _expense(index))
        if status != 200:
            raise RuntimeError(f"prediction request failed with status {status}")
        return time.perf_counter() - started

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - started
    return {"requests": count, "clients": clients, "requests_per_second": round(count / elapsed, 1)} | _percentiles(
        latencies
    )


def _batch_predictions(base, token, *, batches):
    url = f"{base}/api/v1/predictions/batch"
    body = {"expenses": [_expense(index) for index in range(1000)]}
    latencies = []
    for _ in range(batches):
        started = time.perf_counter()
        status, answer = _post(url, token, body, timeout=120)
        latencies.append(time.perf_counter() - started)
        if status != 200 or len(answer["predictions"]) != 1000:
            raise RuntimeError("batch prediction failed")
    return {"batches": batches, "expenses_per_batch": 1000} | _percentiles(latencies)


def _events(base, token, count, database: Path, timeout=600):
    url = f"{base}/api/v1/events"
    run = int(time.time())
    events = [
        {
            "event_id": f"bench-{run}-{index}",
            "type": "expense.created",
            "expense": _expense(index) | {"expense_id": f"bench-{run}-{index}", "version": 1, "category": "Bench"},
        }
        for index in range(count)
    ]
    started = time.perf_counter()
    for start in range(0, count, 500):
        status, _ = _post(url, token, events[start : start + 500], timeout=120)
        if status != 202:
            raise RuntimeError(f"events request failed with status {status}")
    accepted = time.perf_counter() - started

    deadline = time.monotonic() + timeout
    with sqlite3.connect(database, timeout=30) as connection:
        while time.monotonic() < deadline:
            pending = connection.execute(
                "SELECT COUNT(*) FROM lookup_expenseevent WHERE status = 'pending'"
            ).fetchone()[0]
            if pending == 0:
                break
            time.sleep(0.2)
    applied = time.perf_counter() - started
    return {
        "events": count,
        "accept_seconds": round(accepted, 2),
        "accepted_per_second": round(count / accepted, 1),
        "applied_seconds": round(applied, 2),
        "applied_per_second": round(count / applied, 1),
        "all_applied": pending == 0,
    }


def _percentiles(latencies):
    ordered = sorted(latencies)
    quantiles = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50_ms": round(quantiles[49] * 1000, 2),
        "p95_ms": round(quantiles[94] * 1000, 2),
        "p99_ms": round(quantiles[98] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    main()
