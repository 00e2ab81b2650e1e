"""Benchmark of the event pipeline: applied events per second and freshness, for each lookup store.

Each lookup store gets a fresh stack on 127.0.0.1: `sql` keeps its lookup table in a fresh
PostgreSQL database, and `dynamodb` in a table on a DynamoDB Local server. The processes are the
Procfile's: gunicorn with 2 sync workers and one Celery worker with 2 processes, with a claimed
database of the local Redis as the broker. No beat scheduler runs, because its inbox sweep only
matters when a broker message is lost. No model is trained, so predictions come from the rules
and the lookup store only.

1. Throughput: posts N expense.created events built from real rows of the shared payments file,
   in lists of 500 from one client, and measures from the first POST until the worker has
   applied every one. The end is the last `processed_at` in the inbox, not the moment the poll
   saw it. Three runs, each with new expenses.
2. Freshness: posts created events one at a time at a steady rate, each for a supplier the
   business has never seen and with a category of its own. After each 202 it polls
   POST /api/v1/predictions for that supplier every POLL_INTERVAL_SECONDS until the top
   candidate is the event's category from the lookup source. The figure is the time from the
   202 to that prediction, as p50 and p99 per run. A probe that never matches within
   FRESHNESS_TIMEOUT_SECONDS counts at the timeout. Three runs.
3. When a store misses the throughput target, the worker's apply path is profiled in a
   subprocess on the same database after the worker is stopped. The profile reports the cost
   per event of `lookup.services.apply_events` with and without cProfile, the SQL statements
   each event makes, and where the time goes under cProfile.

Every loop is bounded in count and time. Usage:
    .venv/bin/python -m benchmarks.events_bench [--quick] [--json PATH]
"""

import argparse
import collections
import concurrent.futures
import contextlib
import datetime
import json
import pstats
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from benchmarks.measure import REPO, data_expenses, machine, percentiles, prediction_body, spread, summarise
from tests.support.dynamodb_local import DynamoDBLocalServer, DynamoDBLocalUnavailable
from tests.support.stack import (
    VENV_BIN,
    StackError,
    StackProcess,
    StartedProcesses,
    celery_worker_command,
    claimed_redis_database,
    free_port,
    http_json,
    http_status,
    manage,
    postgres_database,
    procfile_command,
    service_env,
    stop_process,
)

STORES = ("sql", "dynamodb")
TARGET_EVENTS_PER_SECOND = 1000
TARGET_FRESHNESS_P99_MS = 1000
RUNS = 3
# The API accepts up to EVENTS_MAX_PER_REQUEST (1,000) events per POST; 500 leaves room for
# long descriptions under the 2 MB request limit.
POST_BATCH = 500
THROUGHPUT_EVENTS = 4000
FRESHNESS_EVENTS = 100
FRESHNESS_RATE_PER_SECOND = 20
POLL_INTERVAL_SECONDS = 0.015
FRESHNESS_TIMEOUT_SECONDS = 10.0
# Probes in flight at once. At 20 events/s, 32 threads cover 1.6 s of freshness before the
# sender has to wait for a free thread, which the results show as a lower achieved rate.
FRESHNESS_THREADS = 32
# Events posted and applied before the first run, so both gunicorn workers and both Celery
# processes have imported their code and opened their connections.
WARM_UP_EVENTS = 50
PROFILE_EVENTS = 1000
QUICK = {"throughput_events": 60, "freshness_events": 4, "profile_events": 40, "stores": ("sql",)}

RATE_LIMIT = "1000000/min"
AWS_REGION = "eu-west-2"
MIGRATE_TIMEOUT = 180
COMMAND_TIMEOUT = 60
START_TIMEOUT = 60
POST_TIMEOUT = 60
DRAIN_TIMEOUT = 180
PROFILE_TIMEOUT = 300
COMMAND = ".venv/bin/python -m benchmarks.events_bench --json test-artifacts/bench-events.json"


@dataclass
class Stack:
    """One store's stack: its started processes with their settings, and the API's URL and token."""

    store: str
    processes: StartedProcesses
    base_url: str = ""
    token: str = ""
    web: StackProcess | None = None
    worker: StackProcess | None = None

    @property
    def env(self) -> dict[str, str]:
        return self.processes.env

    @property
    def log_dir(self) -> Path:
        return self.processes.log_dir

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]


def run(*, quick: bool = False) -> dict:
    """Run the section for each lookup store and return its figures; `quick` runs sql only, with a few events."""
    settings = _run_settings(quick)
    expenses = data_expenses(limit=_rows_needed(settings))
    started = time.monotonic()
    cpu_before = _cpu_seconds()
    stores = {}
    with tempfile.TemporaryDirectory(prefix="events-bench-") as scratch:
        for store in settings["stores"]:
            store_dir = Path(scratch) / store
            store_dir.mkdir()
            stores[store] = _bench_store(store, expenses=expenses, settings=settings, scratch=store_dir)
    return {
        "section": "events",
        "quick": quick,
        "machine": machine(),
        "settings": settings,
        "targets": {"events_per_second": TARGET_EVENTS_PER_SECOND, "freshness_p99_ms": TARGET_FRESHNESS_P99_MS},
        "stores": stores,
        "seconds": round(time.monotonic() - started, 1),
        # This process and the stack processes it started and reaped; PostgreSQL and Redis excluded.
        "cpu_seconds": round(_cpu_seconds() - cpu_before, 1),
    }


def _cpu_seconds() -> float:
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def _run_settings(quick: bool) -> dict:
    return {
        "stores": list(QUICK["stores"] if quick else STORES),
        "runs": RUNS,
        "throughput_events": QUICK["throughput_events"] if quick else THROUGHPUT_EVENTS,
        "post_batch": POST_BATCH,
        "freshness_events": QUICK["freshness_events"] if quick else FRESHNESS_EVENTS,
        "freshness_rate_per_second": FRESHNESS_RATE_PER_SECOND,
        "poll_interval_ms": POLL_INTERVAL_SECONDS * 1000,
        "freshness_timeout_seconds": FRESHNESS_TIMEOUT_SECONDS,
        "profile_events": QUICK["profile_events"] if quick else PROFILE_EVENTS,
        "worker": "1 Celery worker, --concurrency 2, Redis broker",
        "web": "gunicorn, 2 sync workers",
    }


def _rows_needed(settings: dict) -> int:
    runs = settings["runs"]
    return (
        WARM_UP_EVENTS
        + runs * settings["throughput_events"]
        + runs * settings["freshness_events"]
        + settings["profile_events"]
    )


# Each phase takes its rows from its own slice of the data file, so no two events share an expense.
def _row_slices(expenses: list[dict], settings: dict) -> dict[str, list[dict]]:
    runs, throughput, freshness = settings["runs"], settings["throughput_events"], settings["freshness_events"]
    cuts = [WARM_UP_EVENTS, runs * throughput, runs * freshness, settings["profile_events"]]
    names = ["warm_up", "throughput", "freshness", "profile"]
    slices, start = {}, 0
    for name, size in zip(names, cuts, strict=True):
        slices[name] = expenses[start : start + size]
        start += size
    return slices


def _bench_store(store: str, *, expenses: list[dict], settings: dict, scratch: Path) -> dict:
    rows = _row_slices(expenses, settings)
    phases = {}
    started = time.monotonic()
    try:
        with _stack(store, scratch=scratch) as stack:
            phases["start"] = time.monotonic() - started
            _warm_up(stack, rows["warm_up"])
            throughput = _timed(phases, "throughput", lambda: _throughput_runs(stack, rows["throughput"], settings))
            freshness = _timed(phases, "freshness", lambda: _freshness_runs(stack, rows["freshness"], settings))
            profile = None
            if throughput["events_per_second"]["median"] < TARGET_EVENTS_PER_SECOND:
                stop_process(stack.worker)
                profile = _timed(phases, "profile", lambda: _profile_apply_path(stack, rows["profile"]))
    except DynamoDBLocalUnavailable as exc:
        return {"skipped": str(exc)}
    phases["total"] = time.monotonic() - started
    return {
        "throughput": throughput,
        "freshness": freshness,
        "profile": profile,
        "phase_seconds": {name: round(seconds, 1) for name, seconds in phases.items()},
    }


def _timed(phases: dict, name: str, measure):
    started = time.monotonic()
    result = measure()
    phases[name] = time.monotonic() - started
    return result


@contextlib.contextmanager
def _stack(store: str, *, scratch: Path):
    """Start a store's stack on fresh PostgreSQL, Redis and DynamoDB state; stop all of it after."""
    log_dir = scratch / "logs"
    log_dir.mkdir()
    with contextlib.ExitStack() as resources:
        database_url = resources.enter_context(postgres_database(prefix="events_bench"))
        broker_url = resources.enter_context(claimed_redis_database())
        store_env = {"LOOKUP_STORE": store}
        if store == "dynamodb":
            server = DynamoDBLocalServer(log_dir / "dynamodb-local.log")
            resources.callback(server.stop)
            server.start()
            store_env |= {"DYNAMODB_TABLE": f"events-bench-{uuid.uuid4().hex[:12]}"} | server.client_env(
                region=AWS_REGION
            )
        env = service_env(
            DJANGO_SETTINGS_MODULE="config.settings.local",
            DJANGO_DEBUG="false",
            DATABASE_URL=database_url,
            CELERY_BROKER_URL=broker_url,
            VAR_DIR=str(scratch / "var"),
            ARTEFACT_STORE=str(scratch / "artefacts"),
            API_RATE_EVENTS=RATE_LIMIT,
            API_RATE_PREDICTIONS=RATE_LIMIT,
            **store_env,
        )
        stack = Stack(store=store, processes=StartedProcesses(env=env, log_dir=log_dir))
        resources.callback(stack.processes.stop_all)
        _start(stack)
        yield stack


def _start(stack: Stack) -> None:
    manage(stack.env, "migrate", "--noinput", "-v", "0", timeout=MIGRATE_TIMEOUT)
    if stack.store == "dynamodb":
        manage(stack.env, "create_lookup_table", "--timeout", str(COMMAND_TIMEOUT), timeout=COMMAND_TIMEOUT + 30)
    stack.token = manage(stack.env, "create_api_token", "events-bench", timeout=COMMAND_TIMEOUT).stdout.split()[-1]

    port = free_port()
    stack.base_url = f"http://127.0.0.1:{port}"
    stack.web = stack.processes.start("gunicorn", procfile_command("web", port=port))
    worker_command = celery_worker_command(hostname="events-bench@%h", concurrency=2)
    stack.worker = stack.processes.start("celery-worker", worker_command)

    # Without a model /health/ returns 503, which still shows that gunicorn serves requests.
    _wait(stack, lambda: http_status(f"{stack.base_url}/health/") is not None, START_TIMEOUT, "gunicorn to answer")
    _wait(stack, lambda: "ready." in stack.worker.log_path.read_text(errors="replace"), START_TIMEOUT, "the worker")


def _wait(stack: Stack, predicate, timeout: float, description: str, interval: float = 0.2) -> None:
    stack.processes.wait_until(predicate, timeout=timeout, interval=interval, description=description)


def _created_event(expense: dict) -> dict:
    fields = {key: value for key, value in expense.items() if key not in ("business_id", "expense_id")}
    return {
        "event_id": f"{expense['expense_id']}:created",
        "type": "expense.created",
        "expense": {"business_id": expense["business_id"], "expense_id": expense["expense_id"], "version": 1} | fields,
    }


def _post_events(stack: Stack, events: list[dict]) -> None:
    status, body = http_json(f"{stack.base_url}/api/v1/events", body=events, token=stack.token, timeout=POST_TIMEOUT)
    if status != 202:
        raise StackError(f"POST /api/v1/events returned {status}: {str(body)[:1000]}")
    if body["accepted"] != len(events):
        raise StackError(f"POST /api/v1/events accepted {body['accepted']} of {len(events)} new events: {body}")


def _warm_up(stack: Stack, rows: list[dict]) -> None:
    first_pk = _max_event_pk(stack.database_url)
    _post_events(stack, [_created_event(row) for row in rows])
    _wait_until_resolved(stack, first_pk=first_pk, count=len(rows))
    for row in rows[:10]:
        http_json(f"{stack.base_url}/api/v1/predictions", body=prediction_body(row), token=stack.token)


def _max_event_pk(database_url: str) -> int:
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        [pk] = connection.execute("SELECT coalesce(max(id), 0) FROM lookup_expenseevent").fetchone()
    return pk


def _resolution(database_url: str, *, first_pk: int) -> tuple[dict[str, int], datetime.datetime | None]:
    """Return the status counts of the events after first_pk and their last processed_at."""
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        rows = connection.execute(
            "SELECT status, count(*), max(processed_at) FROM lookup_expenseevent WHERE id > %s GROUP BY status",
            [first_pk],
        ).fetchall()
    counts = {status: count for status, count, _ in rows}
    processed = [last for _, _, last in rows if last is not None]
    return counts, max(processed, default=None)


def _wait_until_resolved(stack: Stack, *, first_pk: int, count: int) -> tuple[dict[str, int], datetime.datetime]:
    """Wait until COUNT events after first_pk have left `pending`; return their statuses and last processed_at."""
    outcome = {}

    def resolved() -> bool:
        counts, last = _resolution(stack.database_url, first_pk=first_pk)
        outcome.update(counts=counts, last=last)
        return sum(counts.values()) == count and counts.get("pending", 0) == 0

    _wait(stack, resolved, DRAIN_TIMEOUT, f"the worker to apply {count} events", interval=0.1)
    return outcome["counts"], outcome["last"]


def _throughput_runs(stack: Stack, rows: list[dict], settings: dict) -> dict:
    size = settings["throughput_events"]
    runs = [_throughput_run(stack, rows[index * size : (index + 1) * size]) for index in range(settings["runs"])]
    return {
        "events_per_second": summarise([run["events_per_second"] for run in runs], digits=1),
        "accepted_per_second": summarise([run["accepted_per_second"] for run in runs], digits=1),
        "runs": runs,
    }


def _throughput_run(stack: Stack, rows: list[dict]) -> dict:
    events = [_created_event(row) for row in rows]
    first_pk = _max_event_pk(stack.database_url)
    started_wall = datetime.datetime.now(datetime.UTC)
    started = time.perf_counter()
    for start in range(0, len(events), POST_BATCH):
        _post_events(stack, events[start : start + POST_BATCH])
    accept_seconds = time.perf_counter() - started

    counts, last_processed = _wait_until_resolved(stack, first_pk=first_pk, count=len(events))
    if counts.get("applied", 0) != len(events):
        raise StackError(f"Expected every created event to be applied; the inbox shows {counts}.")
    # processed_at comes from the worker's clock, the same machine clock as started_wall.
    seconds = (last_processed - started_wall).total_seconds()
    return {
        "events": len(events),
        "accept_seconds": round(accept_seconds, 2),
        "accepted_per_second": round(len(events) / accept_seconds, 1),
        "applied_seconds": round(seconds, 2),
        "events_per_second": round(len(events) / seconds, 1),
    }


def _freshness_runs(stack: Stack, rows: list[dict], settings: dict) -> dict:
    size = settings["freshness_events"]
    runs = [
        _freshness_run(stack, rows[index * size : (index + 1) * size], run_index=index)
        for index in range(settings["runs"])
    ]
    return {
        "p50_ms": summarise([run["p50_ms"] for run in runs], digits=1),
        "p99_ms": summarise([run["p99_ms"] for run in runs], digits=1),
        "runs": runs,
    }


def _freshness_run(stack: Stack, rows: list[dict], *, run_index: int) -> dict:
    probes = [_probe_expense(row, run_index=run_index, index=index) for index, row in enumerate(rows)]
    interval = 1 / FRESHNESS_RATE_PER_SECOND
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=FRESHNESS_THREADS) as pool:
        futures = []
        for index, expense in enumerate(probes):
            delay = started + index * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(_probe, stack, expense))
        results = [future.result() for future in futures]

    latencies = [result["seconds"] for result in results]
    # From the POSTs themselves: a probe waiting for a free thread posts late, which lowers the rate.
    post_starts = sorted(result["post_started"] for result in results)
    sending_seconds = post_starts[-1] - post_starts[0]
    return percentiles(latencies) | {
        "timed_out": sum(result["timed_out"] for result in results),
        "achieved_rate_per_second": round((len(probes) - 1) / sending_seconds, 1) if sending_seconds else None,
        "post_p50_ms": percentiles([result["post_seconds"] for result in results])["p50_ms"],
        "polls_per_probe": round(sum(result["polls"] for result in results) / len(results), 1),
    }


def _probe_expense(row: dict, *, run_index: int, index: int) -> dict:
    """Return a real row under a supplier no business has seen, with a category of its own.

    The lookup key drops tokens with digits (store numbers, references), so the unique part of
    the supplier is spelled in letters.
    """
    tag = _letters(run_index * 100_000 + index)
    return row | {
        "expense_id": f"{row['expense_id']}-fresh",
        "supplier": f"Freshness Probe {tag}",
        "category": f"{row['category']} (probe {tag})",
    }


def _letters(number: int) -> str:
    digits = []
    while True:
        number, remainder = divmod(number, 26)
        digits.append(chr(ord("a") + remainder))
        if not number:
            return "".join(reversed(digits))


def _probe(stack: Stack, expense: dict) -> dict:
    """Post one created event, then poll predictions until one returns its category from the lookup."""
    post_started = time.perf_counter()
    _post_events(stack, [_created_event(expense)])
    accepted = time.perf_counter()
    body = prediction_body(expense)
    deadline = accepted + FRESHNESS_TIMEOUT_SECONDS
    polls = 0
    while True:
        status, answer = http_json(f"{stack.base_url}/api/v1/predictions", body=body, token=stack.token)
        polls += 1
        now = time.perf_counter()
        if status != 200:
            raise StackError(f"POST /api/v1/predictions returned {status}: {str(answer)[:1000]}")
        matched = _answers_category(answer, expense["category"])
        if matched or now >= deadline:
            return {
                "seconds": now - accepted if matched else FRESHNESS_TIMEOUT_SECONDS,
                "timed_out": not matched,
                "polls": polls,
                "post_started": post_started,
                "post_seconds": accepted - post_started,
            }
        time.sleep(POLL_INTERVAL_SECONDS)


def _answers_category(answer: dict, category: str) -> bool:
    candidates = answer.get("categories") or []
    return bool(candidates) and candidates[0]["category"] == category and candidates[0]["source"] == "lookup"


def _profile_apply_path(stack: Stack, rows: list[dict]) -> dict:
    """Profile apply_events in a subprocess with the stack's settings, on its database and store.

    The subprocess queues nothing on the stack's broker (its broker is in memory), and the
    worker is stopped first, so only the profiled process applies these events.
    """
    events_path = stack.log_dir / "profile-events.json"
    events_path.write_text(json.dumps([_created_event(row) for row in rows]))
    env = stack.env | {"CELERY_BROKER_URL": "memory://"}
    command = [str(VENV_BIN / "python"), "-m", "benchmarks.events_bench", "--profile-apply", str(events_path)]
    try:
        completed = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=PROFILE_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"The apply-path profile timed out after {PROFILE_TIMEOUT} s") from exc
    if completed.returncode != 0:
        raise StackError(f"The apply-path profile exited with {completed.returncode}:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout)


def report(results: dict) -> str:
    """Return the section's Markdown: figures per store, targets, limits, the profile and the command."""
    lines = [
        "## Events: applied events per second and freshness",
        "",
        "Each store runs gunicorn (2 sync workers), one Celery worker with 2 processes and Redis as the "
        "broker, on PostgreSQL; `dynamodb` keeps its lookup table on DynamoDB Local on the same machine. "
        f"Throughput: {results['settings']['throughput_events']:,} created events from real payment rows, "
        f"posted in lists of {results['settings']['post_batch']} by one client, timed from the first POST "
        "to the last event applied. Freshness: created events for new suppliers at "
        f"{results['settings']['freshness_rate_per_second']} per second, "
        f"{results['settings']['freshness_events']} per run, each timed from its 202 to the first prediction "
        f"whose top candidate is its category from the lookup (polled every "
        f"{results['settings']['poll_interval_ms']:g} ms). No model is trained, so predictions come from the "
        "rules and the lookup without a model call. Medians of "
        f"{results['settings']['runs']} runs, with the range over the runs in brackets.",
        "",
        "| store | applied events/s | accepted events/s | freshness p50 | freshness p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    for store, figures in results["stores"].items():
        if "skipped" in figures:
            lines.append(f"| {store} | skipped: {figures['skipped']} | | | |")
            continue
        lines.append(
            f"| {store} | {spread(figures['throughput']['events_per_second'])} "
            f"| {spread(figures['throughput']['accepted_per_second'])} "
            f"| {spread(figures['freshness']['p50_ms'], 'ms')} | {spread(figures['freshness']['p99_ms'], 'ms')} |"
        )
    lines += ["", *_target_lines(results), "", *_limit_lines(results)]
    for store, figures in results["stores"].items():
        if figures.get("profile"):
            lines += ["", *_profile_lines(store, figures["profile"])]
    lines += ["", f"Reproduce with `{COMMAND}` (`--quick` for a smoke run on sql only)."]
    return "\n".join(lines) + "\n"


def _target_lines(results: dict) -> list[str]:
    lines = []
    for store, figures in results["stores"].items():
        if "skipped" in figures:
            continue
        rate = figures["throughput"]["events_per_second"]["median"]
        p99 = figures["freshness"]["p99_ms"]["median"]
        shortfall = TARGET_EVENTS_PER_SECOND - rate
        rate_verdict = (
            "met"
            if shortfall <= 0
            else f"missed by {shortfall:,.0f} events/s (reached {rate / TARGET_EVENTS_PER_SECOND:.0%} of it)"
        )
        p99_verdict = "met" if p99 <= TARGET_FRESHNESS_P99_MS else f"missed by {p99 - TARGET_FRESHNESS_P99_MS:,.0f} ms"
        timed_out = sum(run["timed_out"] for run in figures["freshness"]["runs"])
        lines.append(
            f"- {store}: at least {TARGET_EVENTS_PER_SECOND:,} applied events/s: {rate_verdict}. "
            f"Freshness p99 at most {TARGET_FRESHNESS_P99_MS:,} ms: {p99_verdict}"
            + (f" ({timed_out} probes never matched within {FRESHNESS_TIMEOUT_SECONDS:g} s)." if timed_out else ".")
        )
    return lines


def _limit_lines(results: dict) -> list[str]:
    sentences = []
    for store, figures in results["stores"].items():
        profile = figures.get("profile")
        if not profile:
            continue
        per_event = profile["per_event_ms"]
        calls = ", ".join(f"{count:g} {name}" for name, count in profile["dynamodb_calls_per_event"].items())
        sentences.append(
            f"On {store}, `apply_events` takes {per_event:.2f} ms of one process per event "
            f"({profile['sql_statements_per_event']:g} SQL statements{f' and {calls}' if calls else ''} per event, "
            f"{profile['sql_ms_per_event']:.2f} ms of it waiting on them). At that cost the worker's 2 processes, "
            f"each applying one batch at a time, apply about {2000 / per_event:,.0f} events/s."
        )
    if not sentences:
        return ["Every store met the throughput target, so the apply path was not profiled."]
    sentences.append("gunicorn, PostgreSQL, Redis and the client share the same 2 cores during the run.")
    slow_accept = [
        f"{store} {figures['throughput']['accepted_per_second']['median']:,.0f}"
        for store, figures in results["stores"].items()
        if "skipped" not in figures
        and figures["throughput"]["accepted_per_second"]["median"] < TARGET_EVENTS_PER_SECOND
    ]
    if slow_accept:
        sentences.append(
            "Accepting is below the target as well (events/s while the worker applies: "
            f"{', '.join(slow_accept)}), and no event is applied before it is accepted."
        )
    return [" ".join(sentences)]


def _profile_lines(store: str, profile: dict) -> list[str]:
    lines = [
        f"### Where an applied event's time goes on {store}",
        "",
        f"`lookup.services.apply_events` on {profile['events']:,} created events in batches of "
        f"{profile['batch_size']}, in one process on the stack's database with the worker stopped: "
        f"{profile['per_event_ms']:.2f} ms per event without a profiler, {profile['profiled_per_event_ms']:.2f} ms "
        "under cProfile. SQL statements per event, timed around each execute without a profiler:",
        "",
        "| statement | per event | ms per event |",
        "|---|---:|---:|",
    ]
    for statement in profile["sql"]:
        lines.append(f"| `{statement['statement']}` | {statement['per_event']:g} | {statement['ms_per_event']:.3f} |")
    outside = profile["per_event_ms"] - profile["sql_ms_per_event"]
    lines.append(f"| everything else (query building, Python, commits, store calls) | | {outside:.3f} |")
    if profile["dynamodb_calls_per_event"]:
        calls = ", ".join(f"{name} {count:g}" for name, count in profile["dynamodb_calls_per_event"].items())
        lines += ["", f"DynamoDB calls per event, made from the store's write threads: {calls}."]
    lines += [
        "",
        "Under cProfile, by call (cumulative ms per event; callees are indented under their caller, and a",
        "call with one significant callee is shown as a chain `a > b`):",
        "",
        "| call | ms per event | share |",
        "|---|---:|---:|",
    ]
    for call in profile["calls"]:
        indent = "&nbsp;&nbsp;" * call["depth"]
        lines.append(f"| {indent}`{call['function']}` | {call['ms_per_event']:.3f} | {call['share']:.0%} |")
    lines += [
        "",
        "Under cProfile, the functions with the most own time (callees excluded), summed over every caller:",
        "",
        "| function | calls per event | own ms per event |",
        "|---|---:|---:|",
    ]
    for spot in profile["hot_spots"]:
        lines.append(f"| `{spot['function']}` | {spot['calls_per_event']:g} | {spot['own_ms_per_event']:.3f} |")
    return lines


def profile_apply_events(events_path: Path) -> dict:
    """Accept the events in EVENTS_PATH into the inbox and profile applying them, as the worker does.

    Runs in a process whose environment contains the stack's settings. The first batch warms up the
    connections and imports. Half of the rest is timed with every SQL statement recorded, the other
    half under cProfile, each in batches of EVENT_BATCH_SIZE in pk order as enqueue_events sends them.
    """
    import cProfile

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from lookup import services
    from lookup.models import ExpenseEvent
    from lookup.serializers import EventSerializer

    events = json.loads(events_path.read_text())
    for start in range(0, len(events), POST_BATCH):
        serializer = EventSerializer(data=events[start : start + POST_BATCH], many=True)
        serializer.is_valid(raise_exception=True)
        services.accept_events(events=serializer.validated_data)
    ids = [event["event_id"] for event in events]
    pks = list(ExpenseEvent.objects.filter(event_id__in=ids).order_by("pk").values_list("pk", flat=True))

    size = settings.EVENT_BATCH_SIZE
    warm_up, rest = pks[: min(size, len(pks) // 10 or 1)], pks[min(size, len(pks) // 10 or 1) :]
    timed, profiled = rest[: len(rest) // 2], rest[len(rest) // 2 :]
    services.apply_events(event_pks=warm_up)

    recorder = _StatementRecorder()
    store_calls = _count_dynamodb_calls() if settings.LOOKUP_STORE == "dynamodb" else collections.Counter()
    started = time.perf_counter()
    with connection.execute_wrapper(recorder):
        for start in range(0, len(timed), size):
            services.apply_events(event_pks=timed[start : start + size])
    timed_seconds = time.perf_counter() - started
    store_calls_per_event = {name: round(count / len(timed), 3) for name, count in store_calls.items()}

    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for start in range(0, len(profiled), size):
        services.apply_events(event_pks=profiled[start : start + size])
    profiler.disable()
    profiled_seconds = time.perf_counter() - started

    statuses = collections.Counter(ExpenseEvent.objects.filter(pk__in=pks).values_list("status", flat=True))
    return {
        "store": settings.LOOKUP_STORE,
        "events": len(timed) + len(profiled),
        "batch_size": size,
        "statuses": dict(statuses),
        "per_event_ms": round(timed_seconds * 1000 / len(timed), 3),
        "profiled_per_event_ms": round(profiled_seconds * 1000 / len(profiled), 3),
        "sql_statements_per_event": round(recorder.count / len(timed), 2),
        "sql": recorder.summary(events=len(timed)),
        "sql_ms_per_event": round(recorder.seconds * 1000 / len(timed), 3),
        "dynamodb_calls_per_event": store_calls_per_event,
        "calls": _call_tree(profiler, events=len(profiled)),
        "hot_spots": _hot_spots(profiler, events=len(profiled)),
    }


def _count_dynamodb_calls() -> collections.Counter:
    """Count the store's DynamoDB calls by operation, from every thread, until the process ends."""
    from lookup.stores import get_lookup_store

    calls = collections.Counter()

    def count(model, **_):
        calls[model.name] += 1

    get_lookup_store().client.meta.events.register("before-call.dynamodb", count)
    return calls


class _StatementRecorder:
    """A Django execute wrapper that counts and times SQL statements by kind (verb and table)."""

    def __init__(self):
        self.count = 0
        self.seconds = 0.0
        self.by_kind: dict[str, list[float]] = collections.defaultdict(list)

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed = time.perf_counter() - started
            self.count += 1
            self.seconds += elapsed
            self.by_kind[_statement_kind(sql)].append(elapsed)

    def summary(self, *, events: int) -> list[dict]:
        rows = [
            {
                "statement": kind,
                "per_event": round(len(times) / events, 3),
                "ms_per_event": round(sum(times) * 1000 / events, 4),
            }
            for kind, times in self.by_kind.items()
        ]
        return sorted(rows, key=lambda row: row["ms_per_event"], reverse=True)


def _statement_kind(sql: str) -> str:
    """Name a statement by its verb and first table: `UPDATE lookup_lookupexpense`, `SAVEPOINT`."""
    words = sql.split()
    verb = words[0].upper() if words else "?"
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK"):
        return " ".join(words[:2]).upper() if verb != "SAVEPOINT" else verb
    if verb == "SELECT" and sql.startswith("SELECT 1 AS"):
        verb = "SELECT EXISTS"
    match = _TABLE.search(sql)
    return f"{verb} {match.group(1)}" if match else verb


_TABLE = re.compile(r'(?:FROM|INTO|UPDATE)\s+"([^"]+)"')
# Calls under apply_events shown in the profile: at least this share of its time. The tree
# descends only through the project's own functions; a library call is a leaf.
CALL_TREE_MIN_SHARE = 0.02
# Functions listed by their own time (excluding callees), summed over every caller.
HOT_SPOTS = 10


def _call_tree(profiler, *, events: int) -> list[dict]:
    """Flatten cProfile's caller graph under apply_events into rows of (depth, calls, ms per event).

    pstats keeps one caller level, so a row's time is its cumulative time when called from its
    parent row's function. That is exact for the apply path's own functions, each called from one
    place, but not below a library function shared by many callers, so library calls are leaves.
    A call with one significant callee is shown with it as one chain (`a > b`).
    """
    stats = pstats.Stats(profiler).stats
    callees = collections.defaultdict(list)
    for function, (_, _, _, _, callers) in stats.items():
        for caller, (_, _, _, cumulative) in callers.items():
            callees[caller].append((cumulative, function))
    root = next(function for function in stats if function[2] == "apply_events" and function[0].endswith("services.py"))
    total = stats[root][3]
    rows = []

    def significant(function, seen):
        if not _is_project_code(function):
            return []
        return [
            (time_, callee)
            for time_, callee in sorted(callees[function], reverse=True)
            if time_ >= CALL_TREE_MIN_SHARE * total and callee not in seen
        ]

    def visit(function, cumulative, depth, seen):
        chain = [function]
        below = significant(function, seen)
        while len(below) == 1 and _is_project_code(below[0][1]):
            cumulative, function = below[0]
            chain.append(function)
            seen = seen | {function}
            below = significant(function, seen)
        rows.append(
            {
                "depth": depth,
                "function": " > ".join(_function_label(link) for link in chain),
                "ms_per_event": round(cumulative * 1000 / events, 4),
                "share": round(cumulative / total, 3),
            }
        )
        for callee_time, callee in below:
            visit(callee, callee_time, depth + 1, seen | {callee})

    visit(root, total, 0, {root})
    return rows


def _hot_spots(profiler, *, events: int) -> list[dict]:
    """Return the functions with the most own time (callees excluded), in ms per event."""
    stats = pstats.Stats(profiler).stats
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:HOT_SPOTS]
    return [
        {
            "function": _function_label(function),
            "calls_per_event": round(calls / events, 2),
            "own_ms_per_event": round(own * 1000 / events, 4),
        }
        for function, (_, calls, own, _, _) in ranked
    ]


def _is_project_code(function: tuple) -> bool:
    path = Path(function[0])
    return path.is_relative_to(REPO) and ".venv" not in path.parts


def _function_label(function: tuple) -> str:
    """Name a pstats function key as `path:function`, the path inside the repository or site-packages."""
    filename, _, name = function
    if filename == "~":
        return name
    path = Path(filename)
    if _is_project_code(function):
        path = path.relative_to(REPO)
    elif "site-packages" in path.parts:
        path = Path(*path.parts[path.parts.index("site-packages") + 1 :])
    elif "lib" in path.parts:
        path = Path(*path.parts[len(path.parts) - 1 - path.parts[::-1].index("lib") + 2 :])
    return f"{path}:{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="A smoke run: the sql store only, with a few events per run."
    )
    parser.add_argument("--json", type=Path, help="Also write the results to this JSON file.")
    parser.add_argument(
        "--profile-apply",
        type=Path,
        metavar="EVENTS_JSON",
        help="Used by the benchmark itself: profile apply_events on these events with the settings in the "
        "environment, and print the profile as JSON.",
    )
    args = parser.parse_args()

    if args.profile_apply:
        print(json.dumps(profile_apply_events(args.profile_apply)))
        return
    results = run(quick=args.quick)
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
