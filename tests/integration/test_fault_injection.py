"""Fault injection on a real stack: killed workers and a restarted broker lose no event.

The test starts gunicorn, two Celery workers, the Celery scheduler, a fresh PostgreSQL database
and a private redis-server of its own (never the machine's Redis, which it must not restart).
It posts 10,000 distinct expense events, plus resent duplicates, shuffled so versions arrive out
of order. While it sends, it kills each worker's process group with SIGKILL once (starting a
replacement each time) and stops and restarts Redis, which comes back empty.

"Applied once" in this design: every store write is conditional on the expense's version, so a
redelivered event changes nothing, and an inbox row leaves `pending` exactly once, which adds 1
to its `attempts`. So after the stack drains, the test checks that every inbox row was resolved
once with no failed attempt. It checks that the highest version of every expense is marked
`applied` and is the version in the store. And it checks that the lookup table equals the state
computed from the generated events, where the highest version wins and a delete leaves a tombstone.

Figures go to test-artifacts/fault-injection.json.
"""

import collections
import datetime
import json
import os
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tests.support.stack import (
    REDIS_SERVER,
    REPO,
    VENV_BIN,
    StackError,
    StackProcess,
    celery_command,
    celery_worker_command,
    free_port,
    http_json,
    http_status,
    kill_process_group,
    manage,
    postgres_database,
    service_env,
    start_process,
    start_redis_server,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.integration

SEED = 6_2026
BUSINESSES = 250
DISTINCT_EVENTS = 10_000
# Share of distinct events sent a second time, with the same event_id and payload.
DUPLICATE_FRACTION = 0.07
DELETE_FRACTION = 0.2
# Share of deleted expenses that get a newer update after the delete, which makes them live again.
RECREATE_FRACTION = 0.15
# Updates of a deleted expense, older than its delete, that are sent after the delete.
MAX_LATE_UPDATES = 2
# Events per POST: well under EVENTS_MAX_PER_REQUEST (1,000), so each fault lands mid-stream.
BATCH_SIZE = 150
# Suppliers and expense ids are shared across businesses, so a write to the wrong tenant shows.
SUPPLIERS = (
    "Blue Heron Cafe",
    "Harbour Fish Market",
    "Northern Rail",
    "Office Supplies Direct",
    "City Parking",
    "Greenleaf Wholesale",
    "Acme Cloud Hosting",
    "Corner Hardware",
    "Riverside Print Shop",
    "Station Taxi",
)
CATEGORIES = ("Meals and entertainment", "Cost of goods sold", "Travel", "Office supplies", "Software", "Repairs")
CURRENCIES = ("GBP", "EUR", "USD")

# Faults, by the share of events sent before each one is injected.
KILL_FIRST_WORKER_AT = 0.25
KILL_SECOND_WORKER_AT = 0.50
RESTART_REDIS_AT = 0.75
# POSTs sent while Redis is down; each must still get a 202 response.
POSTS_WHILE_REDIS_DOWN = 3

# A short sweep, so events whose broker messages died with a worker or with Redis are queued
# again within seconds instead of the production default of a minute.
SWEEP_ENV = {"EVENT_SWEEP_INTERVAL_SECONDS": "2", "EVENT_PENDING_MAX_AGE_SECONDS": "5"}

# Seconds each stage may take on a 2-core machine before the test fails.
MIGRATE_TIMEOUT = 120
COMMAND_TIMEOUT = 60
WEB_START_TIMEOUT = 60
WORKER_START_TIMEOUT = 60
POST_TIMEOUT = 30
DRAIN_TIMEOUT = 180

REPORT_PATH = REPO / "test-artifacts" / "fault-injection.json"


@dataclass(frozen=True)
class EventStream:
    """The generated events: each distinct event once, and the order they are sent in."""

    distinct: list[dict]
    sent: list[dict]


def generate_events(rng: random.Random, *, total: int, businesses: int) -> list[dict]:
    """Generate TOTAL distinct events: each expense's history, in version order, business after business."""
    events: list[dict] = []
    next_expense = collections.Counter()
    while len(events) < total:
        business_id = f"biz-{rng.randrange(businesses):03d}"
        next_expense[business_id] += 1
        expense_id = f"exp-{next_expense[business_id]:04d}"
        # Truncating the last history keeps it valid: any prefix of a history is one.
        events.extend(expense_history(rng, business_id=business_id, expense_id=expense_id)[: total - len(events)])
    return events


def expense_history(rng: random.Random, *, business_id: str, expense_id: str) -> list[dict]:
    """Generate one expense's events: a create, 1 to 4 updates, and sometimes a delete and a re-create."""
    version = 1
    history = [_upsert_event(rng, "expense.created", business_id, expense_id, version)]
    for _ in range(rng.randint(1, 4)):
        # Versions need only increase, so gaps are allowed as an app's change counter may skip.
        version += rng.randint(1, 3)
        history.append(_upsert_event(rng, "expense.updated", business_id, expense_id, version))
    if rng.random() < DELETE_FRACTION:
        version += 1
        history.append(_event("expense.deleted", business_id, expense_id, version, {}))
        if rng.random() < RECREATE_FRACTION:
            version += 1
            history.append(_upsert_event(rng, "expense.updated", business_id, expense_id, version))
    return history


def _upsert_event(rng: random.Random, event_type: str, business_id: str, expense_id: str, version: int) -> dict:
    fields = {
        "supplier": rng.choice(SUPPLIERS),
        "description": f"{expense_id} as of version {version}",
        "amount": f"{rng.randint(-2_000, 90_000) / 100:.2f}",
        "currency": rng.choice(CURRENCIES),
        "date": (datetime.date(2025, 1, 1) + datetime.timedelta(days=rng.randrange(365))).isoformat(),
        "category": rng.choice(CATEGORIES),
    }
    return _event(event_type, business_id, expense_id, version, fields)


def _event(event_type: str, business_id: str, expense_id: str, version: int, fields: dict) -> dict:
    return {
        "event_id": f"{business_id}:{expense_id}:v{version}",
        "type": event_type,
        "expense": {"business_id": business_id, "expense_id": expense_id, "version": version, **fields},
    }


def shuffled_stream(rng: random.Random, events: list[dict], *, duplicate_fraction: float) -> list[dict]:
    """Return the order to send EVENTS in: shuffled, with late updates and resent duplicates.

    Up to MAX_LATE_UPDATES older updates of each deleted expense are moved after its delete,
    and a sample of events is sent again, each somewhere after its first copy.
    """
    stream = list(events)
    rng.shuffle(stream)

    by_expense = collections.defaultdict(list)
    for event in events:
        by_expense[_expense_key(event)].append(event)
    for history in by_expense.values():
        delete = next((event for event in history if event["type"] == "expense.deleted"), None)
        if delete is None:
            continue
        older = [
            event for event in history if event["type"] == "expense.updated" and _version(event) < _version(delete)
        ]
        for late in rng.sample(older, min(len(older), rng.randint(1, MAX_LATE_UPDATES))):
            stream.remove(late)
            stream.insert(rng.randint(stream.index(delete) + 1, len(stream)), late)

    for original in rng.sample(events, round(len(events) * duplicate_fraction)):
        stream.insert(rng.randint(stream.index(original) + 1, len(stream)), original)
    return stream


def build_stream(seed: int) -> EventStream:
    rng = random.Random(seed)
    distinct = generate_events(rng, total=DISTINCT_EVENTS, businesses=BUSINESSES)
    return EventStream(distinct=distinct, sent=shuffled_stream(rng, distinct, duplicate_fraction=DUPLICATE_FRACTION))


def expected_store(events: list[dict]) -> dict[tuple[str, str], dict]:
    """Compute the lookup table the events must leave: per expense, the row of its highest version."""
    latest: dict[tuple[str, str], dict] = {}
    for event in events:
        key = _expense_key(event)
        if key not in latest or _version(event) > _version(latest[key]):
            latest[key] = event
    return {key: _expected_row(event) for key, event in latest.items()}


def _expected_row(event: dict) -> dict:
    expense = event["expense"]
    if event["type"] == "expense.deleted":
        return {"version": expense["version"], "deleted": True, "source_event_id": event["event_id"]}
    return {
        "version": expense["version"],
        "deleted": False,
        "source_event_id": event["event_id"],
        "supplier": expense["supplier"],
        "category": expense["category"],
        "amount": Decimal(expense["amount"]),
        "currency": expense["currency"],
        "date": datetime.date.fromisoformat(expense["date"]),
        "description": expense["description"],
    }


def _expense_key(event: dict) -> tuple[str, str]:
    return event["expense"]["business_id"], event["expense"]["expense_id"]


def _version(event: dict) -> int:
    return event["expense"]["version"]


def test_generated_stream_counts_and_order():
    """The generator itself: exact counts, ids shared across tenants, out-of-order and late events."""
    stream = build_stream(SEED)
    ids = [event["event_id"] for event in stream.distinct]
    position = {}
    for index, event in enumerate(stream.sent):
        position.setdefault(event["event_id"], index)

    assert len(ids) == DISTINCT_EVENTS
    assert len(set(ids)) == DISTINCT_EVENTS
    assert len(stream.sent) == DISTINCT_EVENTS + round(DISTINCT_EVENTS * DUPLICATE_FRACTION)
    assert collections.Counter(event["event_id"] for event in stream.sent).most_common(1)[0][1] == 2
    assert stream.sent != sorted(stream.sent, key=lambda event: (_expense_key(event), _version(event)))
    assert build_stream(SEED).sent == stream.sent
    businesses_by_expense_id = collections.defaultdict(set)
    for business_id, expense_id in expected_store(stream.distinct):
        businesses_by_expense_id[expense_id].add(business_id)
    assert max(len(businesses) for businesses in businesses_by_expense_id.values()) > 1
    delete_position = {
        _expense_key(event): (position[event["event_id"]], _version(event))
        for event in stream.distinct
        if event["type"] == "expense.deleted"
    }
    late = [
        event
        for event in stream.distinct
        if event["type"] == "expense.updated"
        and _expense_key(event) in delete_position
        and delete_position[_expense_key(event)][0] < position[event["event_id"]]
        and _version(event) < delete_position[_expense_key(event)][1]
    ]
    assert late


@dataclass
class FaultStack:
    """The processes of the stack under test, and counts of the faults injected into it."""

    env: dict[str, str]
    log_dir: Path
    redis_port: int
    web: StackProcess | None = None
    redis: StackProcess | None = None
    beat: StackProcess | None = None
    # The current worker of each of the two slots; a killed worker's replacement takes its slot.
    workers: list[StackProcess] = field(default_factory=list)
    # Every process ever started, so teardown can stop any that is still running.
    started: list[StackProcess] = field(default_factory=list)
    kills: int = 0
    redis_restarts: int = 0

    def track(self, process: StackProcess) -> StackProcess:
        self.started.append(process)
        return process

    def start_worker(self, slot: int) -> None:
        name = f"celery-worker-{slot + 1}-{len(self.started)}"
        command = celery_worker_command(hostname=f"{name}@%h", concurrency=1)
        worker = self.track(start_process(name, command, env=self.env, log_dir=self.log_dir))
        if slot < len(self.workers):
            self.workers[slot] = worker
        else:
            self.workers.append(worker)

    def kill_worker(self, slot: int) -> None:
        """SIGKILL the worker in SLOT with its pool children, then start a replacement."""
        kill_process_group(self.workers[slot])
        self.kills += 1
        self.start_worker(slot)

    def stop_redis(self) -> None:
        stop_process(self.redis, timeout=10)

    def start_redis(self) -> None:
        """Start the private Redis, or start it again on the same port, empty, after stop_redis."""
        if self.redis is not None:
            self.redis_restarts += 1
        name = f"redis-server-{self.redis_restarts}"
        self.redis = self.track(
            start_redis_server(port=self.redis_port, data_dir=self.log_dir / "redis", log_dir=self.log_dir, name=name)
        )

    def check_running(self) -> None:
        for process in [self.web, self.redis, self.beat, *self.workers]:
            if process is not None:
                process.check_running()

    def log_tails(self) -> str:
        return "\n".join(f"--- {process.name}\n{process.log_tail()}" for process in self.started)

    def stop_all(self) -> None:
        """Stop every started process that the test has not already killed or stopped and reaped."""
        for process in reversed(self.started):
            if process.process.returncode is None:
                stop_process(process)


@pytest.fixture
def fault_stack(tmp_path):
    """A fresh database, a private Redis and the scratch folders; every started process is stopped after."""
    if not REDIS_SERVER.exists():
        message = f"{REDIS_SERVER} is missing; the fault-injection test restarts a Redis server of its own."
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    redis_port = free_port()
    with postgres_database(prefix="fault_test") as database_url:
        env = service_env(
            DJANGO_SETTINGS_MODULE="config.settings.local",
            DJANGO_DEBUG="false",
            DATABASE_URL=database_url,
            CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
            VAR_DIR=str(tmp_path / "var"),
            ARTEFACT_STORE=str(tmp_path / "artefacts"),
            **SWEEP_ENV,
        )
        stack = FaultStack(env=env, log_dir=log_dir, redis_port=redis_port)
        try:
            yield stack
        finally:
            stack.stop_all()


def test_faults_lose_no_event(fault_stack):
    stack = fault_stack
    stream = build_stream(SEED)
    database_url = stack.env["DATABASE_URL"]
    figures: dict = {"seed": SEED, "cpu_count": os.cpu_count()}
    test_started = time.monotonic()

    manage(stack.env, "migrate", "--noinput", "-v", "0", timeout=MIGRATE_TIMEOUT)
    token = manage(stack.env, "create_api_token", "fault-test", timeout=COMMAND_TIMEOUT).stdout.strip().split()[-1]
    stack.start_redis()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stack.web = stack.track(
        start_process(
            "gunicorn",
            [
                str(VENV_BIN / "gunicorn"),
                "config.wsgi",
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{port}",
                "--no-control-socket",
                "--timeout",
                str(POST_TIMEOUT * 2),
            ],
            env=stack.env,
            log_dir=stack.log_dir,
        )
    )
    stack.start_worker(0)
    stack.start_worker(1)
    beat_command = celery_command("beat", "--loglevel", "INFO")
    stack.beat = stack.track(start_process("celery-beat", beat_command, env=stack.env, log_dir=stack.log_dir))
    _wait(stack, lambda: http_status(f"{base}/health/") is not None, WEB_START_TIMEOUT, "gunicorn to answer")
    _wait(stack, lambda: _workers_ready(stack), WORKER_START_TIMEOUT, "both Celery workers to be ready")

    sent = _send_with_faults(stack, stream.sent, url=f"{base}/api/v1/events", token=token)
    figures |= sent

    started = time.monotonic()
    _wait(stack, lambda: _status_counts(database_url).get("pending", 0) == 0, DRAIN_TIMEOUT, "no pending event")
    figures["drain_seconds"] = round(time.monotonic() - started, 1)

    inbox = _inbox_rows(database_url)
    store = _store_rows(database_url)
    expected = expected_store(stream.distinct)
    highest = {key: row["source_event_id"] for key, row in expected.items()}
    counts = collections.Counter(row["status"] for row in inbox.values())
    distinct_ids = {event["event_id"] for event in stream.distinct}
    lost_events = sorted(distinct_ids - set(inbox))
    lost_expenses = sorted(set(expected) - set(store))
    extra_expenses = sorted(set(store) - set(expected))
    mismatches = [
        (key, expected[key], _comparable(store[key], expected[key]))
        for key in sorted(set(expected) & set(store))
        if _comparable(store[key], expected[key]) != expected[key]
    ]
    not_applied_once = sorted(event_id for event_id, row in inbox.items() if row["attempts"] != 1)
    highest_not_applied = sorted(
        event_id for event_id in highest.values() if inbox.get(event_id, {}).get("status") != "applied"
    )
    figures |= {
        "inbox_rows": len(inbox),
        "status_counts": dict(sorted(counts.items())),
        "pending": counts.get("pending", 0),
        "failed": counts.get("failed", 0),
        "lost": len(lost_events) + len(lost_expenses),
        "store_rows": len(store),
        "expected_store_rows": len(expected),
        "live_expenses": sum(not row["deleted"] for row in store.values()),
        "expected_live_expenses": sum(not row["deleted"] for row in expected.values()),
        "mismatches": len(mismatches) + len(extra_expenses),
        "events_without_exactly_one_outcome": len(not_applied_once),
        "highest_versions_not_applied": len(highest_not_applied),
        "events_with_error": sum(bool(row["last_error"]) for row in inbox.values()),
        # Deadlocks in the test database, such as between two workers writing overlapping batches.
        "postgres_deadlocks": _deadlocks(database_url),
        "test_seconds": round(time.monotonic() - test_started, 1),
    }
    _write_report(figures)
    print(json.dumps(figures, indent=2))

    assert sent["non_2xx"] == 0, sent["failed_posts"]
    assert sent["accepted"] == len(distinct_ids)
    assert sent["duplicates"] == len(stream.sent) - len(distinct_ids)
    assert figures["pending"] == 0
    assert figures["failed"] == 0, [row for row in inbox.values() if row["status"] == "failed"][:5]
    assert set(counts) <= {"applied", "stale"}, counts
    assert len(inbox) == len(distinct_ids)
    assert lost_events == []
    assert not_applied_once[:20] == [], {event_id: inbox[event_id] for event_id in not_applied_once[:5]}
    assert all(row["processed_at"] is not None for row in inbox.values())
    assert figures["events_with_error"] == 0
    assert highest_not_applied[:20] == []
    assert lost_expenses[:20] == []
    assert extra_expenses[:20] == []
    assert mismatches[:5] == []
    assert figures["live_expenses"] == figures["expected_live_expenses"]


def _send_with_faults(stack: FaultStack, events: list[dict], *, url: str, token: str) -> dict:
    """POST the events in batches, injecting each fault once its share of events has been sent."""
    faults = [
        (KILL_FIRST_WORKER_AT, "kill worker 1", lambda: stack.kill_worker(0)),
        (KILL_SECOND_WORKER_AT, "kill worker 2", lambda: stack.kill_worker(1)),
        (RESTART_REDIS_AT, "stop Redis", stack.stop_redis),
    ]
    statuses = collections.Counter()
    failed_posts = []
    accepted = duplicates = posts = 0
    redis_down_posts = 0
    slowest = 0.0
    fault_log = []
    started = time.monotonic()

    for start in range(0, len(events), BATCH_SIZE):
        if faults and start >= faults[0][0] * len(events):
            _, name, inject = faults.pop(0)
            fault_log.append(
                {"fault": name, "after_events": start, "pending": _status_counts(stack.env["DATABASE_URL"])}
            )
            inject()
        batch = events[start : start + BATCH_SIZE]
        post_started = time.monotonic()
        status, body = http_json(url, body=batch, token=token, timeout=POST_TIMEOUT)
        slowest = max(slowest, time.monotonic() - post_started)
        posts += 1
        statuses[status] += 1
        if status in (200, 202):
            accepted += body["accepted"]
            duplicates += body["duplicates"]
        else:
            failed_posts.append({"after_events": start, "status": status, "body": str(body)[:500]})

        if stack.redis.process.poll() is not None:
            redis_down_posts += 1
            if redis_down_posts == POSTS_WHILE_REDIS_DOWN:
                stack.start_redis()
                fault_log.append({"fault": "restart Redis", "after_events": start + len(batch)})

    return {
        "events_sent": len(events),
        "posts": posts,
        "batch_size": BATCH_SIZE,
        "status_counts_http": {str(code): count for code, count in sorted(statuses.items())},
        "responses_202": statuses[202],
        "non_2xx": sum(count for code, count in statuses.items() if code not in (200, 202)),
        "failed_posts": failed_posts[:5],
        "accepted": accepted,
        "duplicates": duplicates,
        "kills": stack.kills,
        "redis_restarts": stack.redis_restarts,
        "posts_while_redis_down": redis_down_posts,
        "slowest_post_seconds": round(slowest, 2),
        "send_seconds": round(time.monotonic() - started, 1),
        "faults": fault_log,
    }


def _wait(stack: FaultStack, predicate, timeout: float, description: str) -> None:
    def checked():
        stack.check_running()
        return predicate()

    try:
        wait_until(checked, timeout=timeout, interval=1, description=description)
    except StackError as exc:
        raise StackError(f"{exc}\n{stack.log_tails()}") from exc


def _workers_ready(stack: FaultStack) -> bool:
    # The whole log, not its tail: a ready worker may have logged many sweep tasks since.
    return all("ready." in worker.log_path.read_text(errors="replace") for worker in stack.workers)


def _status_counts(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        rows = connection.execute("SELECT status, count(*) FROM lookup_expenseevent GROUP BY status").fetchall()
    return dict(rows)


def _inbox_rows(database_url: str) -> dict[str, dict]:
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        cursor = connection.execute(
            "SELECT event_id, status, attempts, processed_at, last_error FROM lookup_expenseevent"
        )
        columns = [column.name for column in cursor.description]
        return {row[0]: dict(zip(columns, row, strict=True)) for row in cursor.fetchall()}


def _store_rows(database_url: str) -> dict[tuple[str, str], dict]:
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        cursor = connection.execute(
            "SELECT business_id, expense_id, version, deleted, source_event_id, supplier, category, amount, "
            "currency, date, description FROM lookup_lookupexpense"
        )
        columns = [column.name for column in cursor.description]
        return {(row[0], row[1]): dict(zip(columns, row, strict=True)) for row in cursor.fetchall()}


def _deadlocks(database_url: str) -> int:
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        [count] = connection.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return count


def _comparable(stored: dict, expected: dict) -> dict:
    """Return the stored row with the expected row's fields, the amount as a Decimal."""
    row = {field: stored[field] for field in expected}
    if "amount" in row:
        row["amount"] = Decimal(row["amount"]) if row["amount"] else None
    return row


def _write_report(figures: dict) -> None:
    REPORT_PATH.parent.mkdir(exist_ok=True)
    report = {"measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")} | figures
    REPORT_PATH.write_text(json.dumps(report, indent=2, default=str) + "\n")
