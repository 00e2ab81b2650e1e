"""Benchmark of single and batch predictions over HTTP, beside the floors under them.

Set-up: a fresh PostgreSQL database on 127.0.0.1, migrated. The earliest rows of each business in
the purchase-card file go into the SQL lookup store through `apply_many` (as copy_lookup writes), a
model is trained and activated in process (`train_model --activate`), and an API token is created.
gunicorn then starts as the Procfile's `web` line starts it (config.wsgi, 2 sync workers) on a
free port on 127.0.0.1, with raised API rate limits.

Measured, each figure over `runs` runs:
1. POST /api/v1/predictions with wrk at fixed request rates and unpaced (4 connections): achieved
   rate, p50, p99 and errors, and the web workers' CPU time per request (from /proc);
2. the trivial authenticated endpoint GET /api/v1/client under the same gunicorn, unpaced;
3. POST /api/v1/predictions/batch with 1,000 expenses, two clients at once: expenses per second;
4. VmRSS of each gunicorn worker after the loads, with the model loaded;
5. with gunicorn stopped, in one process: `predict_expenses` on the same bodies (calls per second,
   p50, p99, CPU per call), then a cProfile CPU breakdown of predictions through Django's WSGI
   handler (HTTP/DRF, rules, lookup, model, combination).

Request bodies are the rows that follow each business's history in the same file: real suppliers
(some the history contains, some new), amounts, dates and businesses, interleaved by business.

wrk (4.1, Debian) drives the loads rather than locust: its C event loop needs a few per cent of
one core, where locust's Python users would take a large share of the 2 cores from the 2 workers.
wrk 4.1 has no fixed-rate mode, so benchmarks/wrk/bodies.lua paces each thread with the delay()
hook. Latency then counts from when a request is written, which makes it a closed loop near
saturation.

Usage: .venv/bin/python -m benchmarks.http_bench [--quick] [--json PATH]
"""

import argparse
import collections
import concurrent.futures
import contextlib
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

from benchmarks.measure import (
    PURCHASE_CARDS,
    REPO,
    cpu_seconds,
    data_expenses,
    expense_change,
    machine,
    memory_mb,
    percentiles,
    prediction_body,
    spread,
    summarise,
)
from tests.support.stack import (
    LOG_TAIL_CHARS,
    StackError,
    StartedProcesses,
    child_pids,
    free_port,
    http_json,
    http_status,
    postgres_database,
    procfile_command,
    procfile_line,
    service_env,
)

# Purchase-card rows: card merchants as an expense app receives them. Their first 2,000 rows per
# business have 176 categories, so training in the set-up takes about a minute on 2 cores. The
# payments file has about 1,000 categories in as many rows, and training on it took over 6 minutes.
DATA_FILE = PURCHASE_CARDS
WRK = Path("/usr/bin/wrk")
WRK_SCRIPT = REPO / "benchmarks" / "wrk" / "bodies.lua"
PREDICTIONS_PATH = "/api/v1/predictions"
BATCH_PATH = "/api/v1/predictions/batch"
CLIENT_PATH = "/api/v1/client"
# Far above any rate this machine reaches, so the throttle counts requests but never rejects one.
RAISED_RATE_LIMIT = "1000000/min"
BENCH_CLIENT = "http-bench"

# Targets of the section: the p99 latency at TARGET_RATE requests/s, the unpaced peak, batch
# expenses per second and the resident memory of one web worker.
TARGET_RATE = 300
TARGET_P99_MS = 25.0
TARGET_PEAK_RPS = 500.0
TARGET_BATCH_EXPENSES_PER_SECOND = 10_000.0
TARGET_WORKER_RSS_MB = 250.0
# A paced run counts as reaching its rate when it achieves this share of it.
RATE_REACHED_SHARE = 0.95

# wrk settings. Paced runs keep spare connections, so a slow response does not hold the next slot.
# Unpaced runs keep two requests per worker in flight, so neither worker waits for the network.
PACED_CONNECTIONS = 8
PEAK_CONNECTIONS = 4
WRK_TIMEOUT = "10s"
# Bounds of the set-up and of each child phase, in seconds.
SET_UP_TIMEOUT = 240
IN_PROCESS_TIMEOUT = 180
WEB_READY_TIMEOUT = 90
BATCH_REQUEST_TIMEOUT = 60.0

# Files and functions that the profile breakdown attributes by name: the combination modules, the
# service call, and the rule matching that the request thread runs on the rules source's result.
_COMBINATION_FILES = ("categorisation/policy.py", "categorisation/calibration.py")
_SERVICE_FUNCTION = ("categorisation/services.py", "predict_expenses")
_RULE_MATCH_FUNCTION = ("lookup/selectors.py", "first_rule_not_archived")
# Django opening a database connection, in whichever thread and part it happens.
_CONNECT_FUNCTION = ("django/db/backends/base/base.py", "connect")
# Names of the profile's parts in the report.
_PART_LABELS = {
    "http_drf": "HTTP/DRF",
    "rules": "rules",
    "lookup": "lookup",
    "model": "model",
    "combination": "combination",
    "service_glue": "service glue",
}


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of one benchmark run."""

    history_per_business: int
    bodies_per_business: int
    rates: tuple[int, ...]
    wrk_seconds: int
    warm_up_seconds: int
    runs: int
    batch_size: int
    batches_per_run: int
    in_process_seconds: float
    profile_requests: int


# The full run: about 70 s of set-up (mostly training), 7 settings x 3 runs x 6 s of wrk, the
# batches, and 30 s in process. It took 4.0 minutes while other benchmarks loaded the same 2 cores
# (load average 3 to 6), and 5.9 minutes at load average 8 to 11.
FULL = Plan(
    history_per_business=2000,
    bodies_per_business=600,
    rates=(50, 100, 200, 300),
    wrk_seconds=6,
    warm_up_seconds=3,
    runs=3,
    batch_size=1000,
    batches_per_run=6,
    in_process_seconds=4.0,
    profile_requests=300,
)
QUICK = Plan(
    history_per_business=40,
    bodies_per_business=16,
    rates=(50,),
    wrk_seconds=1,
    warm_up_seconds=1,
    runs=3,
    batch_size=100,
    batches_per_run=2,
    in_process_seconds=0.5,
    profile_requests=20,
)


def run(*, quick: bool = False) -> dict:
    """Set up the stack, run every load and the in-process floor, stop everything; return the figures.

    Raises StackError when PostgreSQL, wrk or gunicorn is missing or fails, with the log's tail.
    """
    plan = QUICK if quick else FULL
    if not WRK.exists():
        raise StackError(f"{WRK} is missing; install Debian's wrk package (apt-get install wrk).")

    results = {"machine": machine(), "plan": asdict(plan)}
    phase_seconds = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="http-bench-") as scratch, postgres_database("http_bench") as url:
        work = Path(scratch)
        env = _stack_env(work, database_url=url)
        corpus = _write_corpus(work, plan)
        (work / "plan.json").write_text(json.dumps(asdict(plan)))
        set_up = _child_phase("set-up", work, env, timeout=SET_UP_TIMEOUT)
        results["set_up"] = corpus["summary"] | set_up["summary"]
        phase_seconds["set_up"] = time.monotonic() - started

        results |= _http_loads(work, env, plan, token=set_up["token"], database_url=url)
        phase_seconds["http"] = time.monotonic() - started - sum(phase_seconds.values())

        in_process_env = env | {"BENCH_TOKEN": set_up["token"]}
        results["in_process"] = _child_phase("in-process", work, in_process_env, timeout=IN_PROCESS_TIMEOUT)
        phase_seconds["in_process"] = time.monotonic() - started - sum(phase_seconds.values())

    results["ratios"] = _ratios(results)
    results["targets"] = _targets(results)
    results["phase_seconds"] = {name: round(seconds, 1) for name, seconds in phase_seconds.items()}
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


def _stack_env(work: Path, *, database_url: str) -> dict[str, str]:
    return service_env(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DJANGO_DEBUG="false",
        DATABASE_URL=database_url,
        LOOKUP_STORE="sql",
        PREDICTOR="inprocess",
        VAR_DIR=str(work / "var"),
        API_RATE_PREDICTIONS=RAISED_RATE_LIMIT,
        API_RATE_EVENTS=RAISED_RATE_LIMIT,
    )


# Request bodies and history.


def _write_corpus(work: Path, plan: Plan) -> dict:
    """Write the history (history.json), single bodies (bodies.jsonl) and batches (batches.jsonl)."""
    by_business = collections.defaultdict(list)
    for expense in data_expenses(DATA_FILE):
        by_business[expense["business_id"]].append(expense)

    history, later = [], []
    for rows in by_business.values():
        history.extend(rows[: plan.history_per_business])
        later.append(rows[plan.history_per_business : plan.history_per_business + plan.bodies_per_business])
    # Round-robin over businesses, so consecutive requests come from different businesses.
    bodies = [
        prediction_body(rows[index]) for index in range(max(map(len, later))) for rows in later if index < len(rows)
    ]

    (work / "history.json").write_text(json.dumps(history))
    (work / "bodies.jsonl").write_text("".join(json.dumps(body) + "\n" for body in bodies))
    batches = [bodies[start : start + plan.batch_size] for start in range(0, len(bodies), plan.batch_size)]
    full_batches = [batch for batch in batches if len(batch) == plan.batch_size] or batches[:1]
    (work / "batches.jsonl").write_text("".join(json.dumps({"expenses": batch}) + "\n" for batch in full_batches))
    return {
        "summary": {
            "data_file": str(DATA_FILE.relative_to(REPO.parent)),
            "businesses": len(by_business),
            "history_rows": len(history),
            "bodies": len(bodies),
            "known_supplier_share": _known_supplier_share(history, bodies),
            "batch_size": len(full_batches[0]),
            "distinct_batches": len(full_batches),
        }
    }


def _known_supplier_share(history: list[dict], bodies: list[dict]) -> float:
    from lookup.normalisation import supplier_key

    known = {(row["business_id"], supplier_key(row["supplier"])) for row in history}
    hits = sum((body["business_id"], supplier_key(body["supplier"])) in known for body in bodies)
    return round(hits / len(bodies), 3)


# Child phases: Django runs in a child process, so this process never configures Django and a
# suite that runs several sections in one process is unaffected.


def _child_phase(phase: str, work: Path, env: dict[str, str], *, timeout: float) -> dict:
    command = [sys.executable, "-m", "benchmarks.http_bench", "--phase", phase, "--work-dir", str(work)]
    try:
        completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"The {phase} phase timed out after {timeout} s.") from exc
    if completed.returncode != 0:
        raise StackError(
            f"The {phase} phase exited with {completed.returncode}:\n"
            f"{completed.stdout[-LOG_TAIL_CHARS:]}\n{completed.stderr[-LOG_TAIL_CHARS:]}"
        )
    return json.loads((work / f"{phase}.json").read_text())


def _phase_set_up(work: Path) -> dict:
    """Migrate, write the history to the SQL lookup store, train and activate a model, create a token."""
    from django.core.management import call_command

    from categorisation.clients import create_api_client
    from lookup.stores.sql import SqlLookupStore

    timings = {}
    with _timed(timings, "migrate"):
        call_command("migrate", interactive=False, verbosity=0)

    with _timed(timings, "load_history"):
        history = json.loads((work / "history.json").read_text())
        changes = [expense_change(row, source_event_id=f"{BENCH_CLIENT}:{row['expense_id']}") for row in history]
        store = SqlLookupStore()
        for start in range(0, len(changes), 500):
            store.apply_many(changes[start : start + 500])

    version_output, training_output = io.StringIO(), io.StringIO()
    with _timed(timings, "train"):
        call_command("train_model", "--activate", stdout=version_output, stderr=training_output)

    token = create_api_client(name=BENCH_CLIENT)
    return {
        "token": token,
        "summary": {
            "model_version": version_output.getvalue().strip().splitlines()[-1],
            "training": training_output.getvalue().strip(),
            "set_up_seconds": timings,
        },
    }


@contextlib.contextmanager
def _timed(timings: dict, name: str):
    """Record a step's wall seconds and this process's CPU seconds (PostgreSQL's CPU is not included)."""
    wall, cpu = time.monotonic(), time.process_time()
    yield
    timings[name] = {"wall": round(time.monotonic() - wall, 1), "cpu": round(time.process_time() - cpu, 1)}


# HTTP loads.


def _http_loads(work: Path, env: dict[str, str], plan: Plan, *, token: str, database_url: str) -> dict:
    """Start gunicorn, run every wrk setting and the batches, read the workers' RSS, stop gunicorn."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes = StartedProcesses(env=env, log_dir=work)
    # The Procfile's web command, so the benchmark starts what production starts.
    web = processes.start("gunicorn", procfile_command("web", port=port))
    try:
        processes.wait_until(
            lambda: http_status(f"{base}/health/") == 200,
            timeout=WEB_READY_TIMEOUT,
            interval=0.5,
            description="gunicorn's /health/ to return 200",
        )
        wrk_env = os.environ | {"BENCH_TOKEN": token}
        bodies = work / "bodies.jsonl"
        # Warm-up: both workers load the model and open their database connections.
        _wrk(
            base + PREDICTIONS_PATH,
            bodies,
            env=wrk_env,
            rate=0,
            connections=PEAK_CONNECTIONS,
            seconds=plan.warm_up_seconds,
        )

        settings = [(f"rate_{rate}", PREDICTIONS_PATH, bodies, rate, PACED_CONNECTIONS) for rate in plan.rates]
        settings.append(("peak", PREDICTIONS_PATH, bodies, 0, PEAK_CONNECTIONS))
        settings.append(("trivial_peak", CLIENT_PATH, None, 0, PEAK_CONNECTIONS))
        runs = collections.defaultdict(list)
        # Runs of every setting alternate, so a burst of other load on the machine spreads over settings.
        for _ in range(plan.runs):
            for name, path, body_file, rate, connections in settings:
                runs[name].append(
                    _measured_wrk(
                        base + path,
                        body_file,
                        env=wrk_env,
                        rate=rate,
                        connections=connections,
                        seconds=plan.wrk_seconds,
                        master_pid=web.pid,
                        database_url=database_url,
                    )
                )

        batch_runs = [_batch_run(base, token, work / "batches.jsonl", plan) for _ in range(plan.runs)]
        memory = _worker_memory(web.pid)
        web.check_running()
    finally:
        processes.stop_all()

    loads = {name: _summarise_wrk(figures) for name, figures in runs.items()}
    return {
        "single": {name: loads[name] for name in loads if name != "trivial_peak"},
        "trivial": loads["trivial_peak"],
        "batch": _summarise_batches(batch_runs),
        "memory": memory,
        "server_command": procfile_line("web"),
    }


def _measured_wrk(url: str, body_file: Path | None, *, master_pid: int, database_url: str, **options) -> dict:
    """Run wrk and add the web workers' CPU milliseconds and the new PostgreSQL sessions per request."""
    workers = child_pids(master_pid)
    cpu_before, sessions_before = cpu_seconds(workers), _postgres_sessions(database_url)
    figures = _wrk(url, body_file, **options)
    cpu = cpu_seconds(workers) - cpu_before
    sessions = _postgres_sessions(database_url) - sessions_before

    requests = max(figures["requests"], 1)
    figures["worker_cpu_ms_per_request"] = round(cpu * 1000 / requests, 3)
    figures["postgres_sessions_per_request"] = round(sessions / requests, 2)
    return figures


def _wrk(url: str, body_file: Path | None, *, env: dict, rate: int, connections: int, seconds: int) -> dict:
    """Run wrk with bodies.lua (one thread) and return its figures: requests/s, latency in ms, errors."""
    command = [
        str(WRK),
        "--threads", "1",
        "--connections", str(connections),
        "--duration", f"{seconds}s",
        "--timeout", WRK_TIMEOUT,
        "--script", str(WRK_SCRIPT),
        url,
        "--",
        str(body_file) if body_file else "none",
        str(rate),
        "1",
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + 30)
    if completed.returncode != 0:
        raise StackError(f"wrk exited with {completed.returncode}:\n{completed.stderr[-LOG_TAIL_CHARS:]}")
    return parse_wrk_output(completed.stdout, target_rate=rate)


def parse_wrk_output(output: str, *, target_rate: int = 0) -> dict:
    """Return the figures of bodies.lua's WRK_JSON line in wrk's output; raise ValueError without one."""
    line = next((line for line in output.splitlines() if line.startswith("WRK_JSON ")), None)
    if line is None:
        raise ValueError(f"wrk printed no WRK_JSON line; run it with --script {WRK_SCRIPT}. Output:\n{output[-2000:]}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    seconds = raw["duration_us"] / 1e6
    latency = raw["latency_us"]
    return {
        "target_rate": target_rate,
        "requests": raw["requests"],
        "requests_per_second": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "p50_ms": latency["p50"] / 1000,
        "p90_ms": latency["p90"] / 1000,
        "p99_ms": latency["p99"] / 1000,
        "max_ms": latency["max"] / 1000,
        "errors": raw["errors"],
        # wrk counts a response as a status error when its status is 400 or more.
        "http_errors": raw["errors"]["status"],
        "failed": sum(raw["errors"].values()),
    }


def _summarise_wrk(runs: list[dict]) -> dict:
    return {
        "target_rate": runs[0]["target_rate"],
        "requests_per_second": summarise([run["requests_per_second"] for run in runs], digits=1),
        "p50_ms": summarise([run["p50_ms"] for run in runs]),
        "p99_ms": summarise([run["p99_ms"] for run in runs]),
        "worker_cpu_ms_per_request": summarise([run["worker_cpu_ms_per_request"] for run in runs]),
        "postgres_sessions_per_request": summarise([run["postgres_sessions_per_request"] for run in runs]),
        "requests": sum(run["requests"] for run in runs),
        "http_errors": sum(run["http_errors"] for run in runs),
        "failed": sum(run["failed"] for run in runs),
        "runs": runs,
    }


def _batch_run(base: str, token: str, batch_file: Path, plan: Plan) -> dict:
    """Send batches_per_run batches from two clients at once (one per worker); return expenses/s and latencies."""
    batches = [json.loads(line) for line in batch_file.read_text().splitlines()]

    def send(index: int) -> float:
        body = batches[index % len(batches)]
        started = time.perf_counter()
        status, answer = http_json(base + BATCH_PATH, body=body, token=token, timeout=BATCH_REQUEST_TIMEOUT)
        elapsed = time.perf_counter() - started
        if status != 200 or len(answer["predictions"]) != len(body["expenses"]):
            raise StackError(f"A batch prediction request failed with status {status}, response: {str(answer)[:500]}")
        return elapsed

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        latencies = list(pool.map(send, range(plan.batches_per_run)))
    elapsed = time.perf_counter() - started
    expenses = sum(len(batches[index % len(batches)]["expenses"]) for index in range(plan.batches_per_run))
    return {
        "batches": plan.batches_per_run,
        "expenses": expenses,
        "expenses_per_second": round(expenses / elapsed, 1),
        "batch_seconds": [round(latency, 3) for latency in latencies],
    }


def _summarise_batches(runs: list[dict]) -> dict:
    return {
        "expenses_per_request": runs[0]["expenses"] // runs[0]["batches"],
        "clients": 2,
        "expenses_per_second": summarise([run["expenses_per_second"] for run in runs], digits=1),
        "batch_seconds": summarise([max(run["batch_seconds"]) for run in runs], digits=3),
        "runs": runs,
    }


# Web worker processes: found through /proc, so only the children of the started master count.


def _worker_memory(master_pid: int) -> dict:
    """Return VmRSS and VmHWM (peak RSS) in MB of each worker of a gunicorn master, and of the master."""
    workers = [_vm_status(pid) for pid in child_pids(master_pid)]
    if not workers:
        raise StackError(f"gunicorn master {master_pid} has no worker processes.")
    return {
        "workers": workers,
        "max_worker_rss_mb": max(worker["rss_mb"] for worker in workers),
        "master": _vm_status(master_pid),
    }


def _postgres_sessions(database_url: str) -> int:
    """Return how many sessions the database has had: PostgreSQL 14+ counts each new connection.

    The count includes this query's own session, and a session may reach the statistics only when
    it ends, so a difference over a run can miss the sessions still open at its end.
    """
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as connection:
        row = connection.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()").fetchone()
    return int(row[0])


def _vm_status(pid: int) -> dict:
    return {"pid": pid} | {name: round(value, 1) for name, value in memory_mb(pid).items()}


# In process: the floor and the profile.


def _phase_in_process(work: Path) -> dict:
    """Measure predict_expenses without HTTP, then profile predictions through the WSGI handler."""
    plan_dict = json.loads((work / "plan.json").read_text())
    bodies = [json.loads(line) for line in (work / "bodies.jsonl").read_text().splitlines()]
    return {
        "service": _service_floor(bodies, seconds=plan_dict["in_process_seconds"], runs=plan_dict["runs"]),
        "profile": _profile_breakdown(bodies, requests=plan_dict["profile_requests"], token=os.environ["BENCH_TOKEN"]),
    }


def _service_floor(bodies: list[dict], *, seconds: float, runs: int) -> dict:
    """Call predict_expenses one expense at a time for `seconds`, `runs` times; one caller, one process."""
    from categorisation import services
    from categorisation.serializers import PredictionRequestSerializer

    expenses = []
    for body in bodies:
        serializer = PredictionRequestSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        expense = dict(serializer.validated_data)
        expenses.append((expense, expense.pop("top_k")))
    for expense, top_k in expenses[:20]:
        services.predict_expenses(expenses=[expense], top_k=top_k)

    results = []
    index = 0
    for _ in range(runs):
        latencies, degraded = [], 0
        cpu_started, started = time.process_time(), time.perf_counter()
        while time.perf_counter() - started < seconds:
            expense, top_k = expenses[index % len(expenses)]
            index += 1
            call_started = time.perf_counter()
            [prediction] = services.predict_expenses(expenses=[expense], top_k=top_k)
            latencies.append(time.perf_counter() - call_started)
            degraded += bool(prediction.degraded)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        results.append(
            percentiles(latencies)
            | {
                "calls_per_second": round(len(latencies) / elapsed, 1),
                "cpu_ms_per_call": round(cpu * 1000 / len(latencies), 3),
                "degraded": degraded,
            }
        )
    return {
        "calls_per_second": summarise([run["calls_per_second"] for run in results], digits=1),
        "p50_ms": summarise([run["p50_ms"] for run in results]),
        "p99_ms": summarise([run["p99_ms"] for run in results]),
        "cpu_ms_per_call": summarise([run["cpu_ms_per_call"] for run in results], digits=3),
        "degraded": sum(run["degraded"] for run in results),
        "runs": results,
    }


class _SourceProfiler:
    """Profiles each prediction source in the pool thread that runs it, one cProfile per thread and source.

    cProfile only records the thread that enabled it, so wrapping each source callable is what puts
    the rules, lookup and model calls into a profile. The timer is the thread's CPU time, so a
    thread waiting for PostgreSQL or for another thread counts nothing. What the pool runs around
    a source (resilience._close_connection_after) stays outside the profile.
    """

    def __init__(self):
        self._local = threading.local()
        self._lock = threading.Lock()
        self.profiles: dict[str, list[cProfile.Profile]] = collections.defaultdict(list)

    def wrap(self, name: str, function):
        def profiled():
            own = self._local.__dict__.setdefault("profiles", {})
            if name not in own:
                own[name] = cProfile.Profile(time.thread_time)
                with self._lock:
                    self.profiles[name].append(own[name])
            own[name].enable()
            try:
                return function()
            finally:
                own[name].disable()

        return profiled

    def call_sources(self, original):
        def profiled_call_sources(calls, **options):
            return original({name: self.wrap(name, function) for name, function in calls.items()}, **options)

        return profiled_call_sources


def _profile_breakdown(bodies: list[dict], *, requests: int, token: str) -> dict:
    """Run REQUESTS single predictions through Django's WSGI handler under cProfile; return CPU ms per part."""
    from django.core.wsgi import get_wsgi_application

    from categorisation import resilience

    application = get_wsgi_application()
    encoded = [json.dumps(body).encode() for body in bodies]
    # Warm-up outside the profile: the first requests load the model and open connections.
    for body in encoded[:20]:
        _wsgi_post(application, body, token)

    sources = _SourceProfiler()
    main = cProfile.Profile(time.thread_time)
    original = resilience.call_sources
    resilience.call_sources = sources.call_sources(original)
    degraded = 0
    try:
        for index in range(requests):
            body = encoded[index % len(encoded)]
            main.enable()
            content = _wsgi_post(application, body, token)
            main.disable()
            degraded += bool(json.loads(content)["degraded"])
    finally:
        resilience.call_sources = original
    return _attribute(main, sources.profiles, requests=requests) | {"requests": requests, "degraded": degraded}


def _wsgi_post(application, body: bytes, token: str) -> bytes:
    """POST one prediction through the WSGI application as gunicorn would; return the response body.

    Raises StackError unless the status is 200.
    """
    environ = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": PREDICTIONS_PATH,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Token {token}",
        "HTTP_ACCEPT": "application/json",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    statuses = []
    response = application(environ, lambda status, headers, exc_info=None: statuses.append(status))
    try:
        content = b"".join(response)
    finally:
        response.close()
    if not statuses[0].startswith("200"):
        raise StackError(f"The profiled prediction request failed with status {statuses[0]}: {content[:500]!r}")
    return content


def _attribute(main: cProfile.Profile, source_profiles: dict[str, list[cProfile.Profile]], *, requests: int) -> dict:
    """Split the profiled CPU time into HTTP/DRF, rules, lookup, model, combination and service glue.

    HTTP/DRF is the request thread outside predict_expenses. Inside it, the request thread's time in
    policy.py and calibration.py is combination, first_rule_not_archived is rules, and the rest
    (submitting sources to the pool, ids, supplier keys) is service glue. Each source's pool-thread
    time is its own, except time it spends in policy.py or calibration.py, which is combination.
    """
    main_stats = pstats.Stats(main)
    service = _cumulative(main_stats, _SERVICE_FUNCTION)
    combination = _entered_time(main_stats, _COMBINATION_FILES)
    rule_matching = _cumulative(main_stats, _RULE_MATCH_FUNCTION)
    seconds = {
        "http_drf": main_stats.total_tt - service,
        "rules": rule_matching,
        "lookup": 0.0,
        "model": 0.0,
        "combination": combination,
        "service_glue": service - combination - rule_matching,
    }
    merged = pstats.Stats(main)
    connecting = _cumulative(main_stats, _CONNECT_FUNCTION)
    for name, profiles in source_profiles.items():
        stats = pstats.Stats(*profiles)
        merged.add(stats)
        connecting += _cumulative(stats, _CONNECT_FUNCTION)
        in_combination = _entered_time(stats, _COMBINATION_FILES)
        seconds[name] += stats.total_tt - in_combination
        seconds["combination"] += in_combination

    total = sum(seconds.values())
    return {
        "timer": "per-thread CPU time (time.thread_time)",
        "total_ms_per_request": round(total * 1000 / requests, 3),
        "parts": {
            name: {"ms_per_request": round(value * 1000 / requests, 3), "share": round(value / total, 3)}
            for name, value in seconds.items()
        },
        # Included in the parts above, in whichever part opened the connection.
        "opening_connections_ms_per_request": round(connecting * 1000 / requests, 3),
        "top_functions": _top_functions(merged, requests=requests),
    }


def _matches(key: tuple, path_and_name: tuple[str, str]) -> bool:
    return key[0].replace(os.sep, "/").endswith(path_and_name[0]) and key[2] == path_and_name[1]


def _cumulative(stats: pstats.Stats, path_and_name: tuple[str, str]) -> float:
    return sum(entry[3] for key, entry in stats.stats.items() if _matches(key, path_and_name))


def _entered_time(stats: pstats.Stats, files: tuple[str, ...]) -> float:
    """Return the cumulative seconds of calls into FILES from functions outside them, so nested calls count once."""

    def inside(key: tuple) -> bool:
        return key[0].replace(os.sep, "/").endswith(files)

    total = 0.0
    for key, (_, _, _, _, callers) in stats.stats.items():
        if inside(key):
            total += sum(edge[3] for caller, edge in callers.items() if not inside(caller))
    return total


def _top_functions(stats: pstats.Stats, *, requests: int, count: int = 12) -> list[dict]:
    """Return the Python functions with the most own CPU time (tottime) per request.

    Built-ins (getattr, isinstance) are left out because they are called from everywhere, so their
    own time does not point at code to change.
    """
    python_functions = [item for item in stats.stats.items() if item[0][0] != "~"]
    ranked = sorted(python_functions, key=lambda item: item[1][2], reverse=True)[:count]
    return [
        {
            "function": f"{_short_path(key[0])}:{key[1]}({key[2]})",
            "own_ms_per_request": round(entry[2] * 1000 / requests, 3),
            "calls_per_request": round(entry[1] / requests, 2),
        }
        for key, entry in ranked
    ]


def _short_path(filename: str) -> str:
    for root in (os.sep + "site-packages" + os.sep, str(REPO) + os.sep, os.sep + "lib" + os.sep):
        if root in filename:
            return filename.split(root, 1)[1]
    return filename


# Ratios and targets.


def _ratios(results: dict) -> dict:
    """Return the HTTP prediction against the trivial endpoint and against the in-process service."""
    peak = results["single"]["peak"]
    trivial = results["trivial"]
    service = results["in_process"]["service"]
    return {
        "trivial_peak_over_prediction_peak": _ratio(trivial["requests_per_second"], peak["requests_per_second"]),
        "prediction_cpu_over_trivial_cpu": _ratio(
            peak["worker_cpu_ms_per_request"], trivial["worker_cpu_ms_per_request"]
        ),
        "prediction_cpu_over_in_process_cpu": _ratio(peak["worker_cpu_ms_per_request"], service["cpu_ms_per_call"]),
        "lowest_rate_p50_over_in_process_p50": _ratio(
            results["single"][f"rate_{results['plan']['rates'][0]}"]["p50_ms"], service["p50_ms"]
        ),
    }


def _ratio(numerator: dict, denominator: dict) -> float | None:
    if not denominator["median"]:
        return None
    return round(numerator["median"] / denominator["median"], 2)


def _targets(results: dict) -> dict:
    targets = {}
    at_rate = results["single"].get(f"rate_{TARGET_RATE}")
    if at_rate is not None:
        verdict = _verdict(at_rate["p99_ms"]["median"], TARGET_P99_MS, "ms", higher=False)
        achieved = at_rate["requests_per_second"]["median"]
        if achieved < RATE_REACHED_SHARE * TARGET_RATE:
            verdict |= {"met": False, "text": f"missed: only {achieved:g} of {TARGET_RATE} req/s reached"}
        targets[f"p99_at_{TARGET_RATE}_rps_ms"] = verdict

    peak = results["single"]["peak"]["requests_per_second"]["median"]
    batch = results["batch"]["expenses_per_second"]["median"]
    targets["peak_rps"] = _verdict(peak, TARGET_PEAK_RPS, "req/s", higher=True)
    targets["batch_expenses_per_second"] = _verdict(batch, TARGET_BATCH_EXPENSES_PER_SECOND, "expenses/s", higher=True)
    targets["worker_rss_mb"] = _verdict(
        results["memory"]["max_worker_rss_mb"], TARGET_WORKER_RSS_MB, "MB", higher=False
    )
    return targets


def _verdict(value: float, target: float, unit: str, *, higher: bool) -> dict:
    met = value >= target if higher else value <= target
    gap = abs(value - target)
    return {"value": value, "target": target, "met": met, "text": "met" if met else f"missed by {gap:.4g} {unit}"}


# Report.


def report(results: dict) -> str:
    """Return the Markdown section of the figures, targets, limits and the command."""
    setup = results["set_up"]
    lines = [
        "## HTTP predictions: gunicorn, 2 sync workers, PostgreSQL",
        "",
        f"gunicorn started as the Procfile starts it (`{results['server_command']}`), the SQL lookup store "
        f"on PostgreSQL holding {setup['history_rows']:,} expenses of {setup['businesses']} businesses "
        f"(the earliest rows of each in `{setup['data_file']}`), and a model trained on them in process. "
        f"Request bodies are the next {setup['bodies']:,} rows, interleaved by business; "
        f"{setup['known_supplier_share']:.0%} have a supplier the business's history contains. "
        f"Load from wrk 4.1, one thread. Each cell is the median of {results['plan']['runs']} runs "
        f"of {results['plan']['wrk_seconds']} s with the range in brackets.",
        "",
        "| load | connections | achieved req/s | p50 | p99 | worker CPU per request "
        "| new PostgreSQL sessions per request | HTTP 4xx-5xx / all failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, figures in results["single"].items():
        label = "unpaced (peak)" if name == "peak" else f"paced at {figures['target_rate']} req/s"
        connections = PEAK_CONNECTIONS if name == "peak" else PACED_CONNECTIONS
        lines.append(_load_row(f"POST {PREDICTIONS_PATH}, {label}", connections, figures))
    lines.append(_load_row(f"GET {CLIENT_PATH} (trivial), unpaced", PEAK_CONNECTIONS, results["trivial"]))

    batch = results["batch"]
    memory = results["memory"]
    lines += [
        "",
        f"Batches: {batch['expenses_per_request']:,} expenses per POST {BATCH_PATH}, "
        f"{batch['clients']} clients at once: {spread(batch['expenses_per_second'], 'expenses/s')}; "
        f"slowest batch per run {spread(batch['batch_seconds'], 's')}.",
        "",
        "Memory after the loads (VmRSS, peak VmHWM): "
        + ", ".join(f"worker {worker['rss_mb']:g} MB (peak {worker['peak_rss_mb']:g})" for worker in memory["workers"])
        + f"; master {memory['master']['rss_mb']:g} MB.",
        "",
    ]
    lines += _floor_lines(results)
    lines += _profile_lines(results["in_process"]["profile"])
    lines += _target_lines(results)
    lines += ["", *_limit_lines(results), "", _time_line(results)]
    lines += [
        "",
        "Reproduce (starts PostgreSQL database, gunicorn and wrk on 127.0.0.1 and removes them after):",
        "",
        "    .venv/bin/python -m benchmarks.http_bench --json test-artifacts/bench-http.json",
        "",
    ]
    return "\n".join(lines)


def _load_row(label: str, connections: int, figures: dict) -> str:
    return (
        f"| {label} | {connections} | {spread(figures['requests_per_second'])} | {spread(figures['p50_ms'], 'ms')} | "
        f"{spread(figures['p99_ms'], 'ms')} | {spread(figures['worker_cpu_ms_per_request'], 'ms')} | "
        f"{spread(figures['postgres_sessions_per_request'])} | {figures['http_errors']} / {figures['failed']} |"
    )


def _floor_lines(results: dict) -> list[str]:
    service = results["in_process"]["service"]
    ratios = results["ratios"]
    return [
        "The floor, same database and bodies: `predict_expenses` called in one process with no HTTP, "
        f"one caller: {spread(service['calls_per_second'], 'calls/s')}, p50 {spread(service['p50_ms'], 'ms')}, "
        f"p99 {spread(service['p99_ms'], 'ms')}, {spread(service['cpu_ms_per_call'], 'ms')} of process CPU per call.",
        "",
        "| ratio | value |",
        "|---|---:|",
        f"| trivial endpoint peak / prediction peak (req/s) | {ratios['trivial_peak_over_prediction_peak']} |",
        f"| worker CPU per prediction / per trivial request | {ratios['prediction_cpu_over_trivial_cpu']} |",
        f"| worker CPU per prediction / in-process CPU per call | {ratios['prediction_cpu_over_in_process_cpu']} |",
        f"| HTTP p50 at the lowest rate / in-process p50 | {ratios['lowest_rate_p50_over_in_process_p50']} |",
        "",
    ]


def _profile_lines(profile: dict) -> list[str]:
    lines = [
        f"CPU per prediction from cProfile ({profile['requests']} requests through Django's WSGI handler in one "
        "process; each source profiled in its pool thread; timer: per-thread CPU time, so waits count nothing "
        f"and PostgreSQL's own CPU is not included). Total {profile['total_ms_per_request']:g} ms per request "
        "including the profiler's overhead; the shares are what to compare.",
        "",
        "| part | CPU ms per request | share |",
        "|---|---:|---:|",
    ]
    for name, part in profile["parts"].items():
        lines.append(f"| {_PART_LABELS[name]} | {part['ms_per_request']:g} | {part['share']:.0%} |")
    lines += [
        "",
        f"Opening PostgreSQL connections takes {profile['opening_connections_ms_per_request']:g} ms of these "
        "(Django's `connect`, in whichever part it runs).",
    ]
    lines += ["", "Functions with the most own CPU time per request:", ""]
    lines += [
        f"- `{item['function']}`: {item['own_ms_per_request']:g} ms, {item['calls_per_request']:g} calls"
        for item in profile["top_functions"][:6]
    ]
    return lines + [""]


def _limit_lines(results: dict) -> list[str]:
    """State what limits the figures, from the measured profile, sessions and CPU."""
    parts = results["in_process"]["profile"]["parts"]
    first, second = sorted(parts, key=lambda name: parts[name]["share"], reverse=True)[:2]
    sessions = results["single"]["peak"]["postgres_sessions_per_request"]["median"]
    host = results["machine"]
    text = (
        f"What limits it: the largest CPU parts per prediction are {_PART_LABELS[first]} "
        f"({parts[first]['share']:.0%}) and {_PART_LABELS[second]} ({parts[second]['share']:.0%}). "
    )
    if sessions >= 0.5:
        text += (
            f"Each prediction opens about {sessions:g} new PostgreSQL sessions, one per source that queries the "
            "database, because the source pool closes its thread's connection after every call, and PostgreSQL "
            "starts a backend process for each. "
        )
    cpu_ms = results["single"]["peak"]["worker_cpu_ms_per_request"]["median"]
    if cpu_ms:
        text += (
            f"At {cpu_ms:g} ms of worker CPU per prediction, {host['cores']} cores serve at most about "
            f"{host['cores'] * 1000 / cpu_ms:.0f} predictions/s even before PostgreSQL and wrk take their share. "
        )
    text += (
        f"wrk, PostgreSQL and both workers share the machine's {host['cores']} cores "
        f"(load average {host['load_average'][0]:g} when the section started)."
    )
    return [text]


def _time_line(results: dict) -> str:
    steps = {name: step["wall"] for name, step in results["set_up"]["set_up_seconds"].items()}
    phases = results["phase_seconds"]
    return (
        f"The section took {results['seconds']:g} s: set-up {phases['set_up']:g} s (migrate {steps['migrate']:g} s, "
        f"history {steps['load_history']:g} s, training {steps['train']:g} s; {results['set_up']['training']}), "
        f"HTTP loads {phases['http']:g} s, in process {phases['in_process']:g} s."
    )


def _target_lines(results: dict) -> list[str]:
    names = {
        f"p99_at_{TARGET_RATE}_rps_ms": f"p99 at {TARGET_RATE} req/s at most {TARGET_P99_MS:g} ms",
        "peak_rps": f"peak at least {TARGET_PEAK_RPS:g} req/s",
        "batch_expenses_per_second": f"batch at least {TARGET_BATCH_EXPENSES_PER_SECOND:,.0f} expenses/s",
        "worker_rss_mb": f"RSS per worker at most {TARGET_WORKER_RSS_MB:g} MB",
    }
    lines = ["| target | measured | verdict |", "|---|---:|---|"]
    for key, verdict in results["targets"].items():
        lines.append(f"| {names[key]} | {verdict['value']:g} | {verdict['text']} |")
    return lines


# Command line.


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="Run a small version as a smoke test: about 30 s, mostly set-up."
    )
    parser.add_argument("--json", type=Path, help="Also write the results to this JSON file.")
    # The phases that run Django in a child process; not for direct use.
    parser.add_argument("--phase", choices=("set-up", "in-process"), help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        _run_phase(args.phase, args.work_dir)
        return
    results = run(quick=args.quick)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)


def _run_phase(phase: str, work: Path) -> None:
    import django

    django.setup()
    outcome = _phase_set_up(work) if phase == "set-up" else _phase_in_process(work)
    (work / f"{phase}.json").write_text(json.dumps(outcome))


if __name__ == "__main__":
    main()
