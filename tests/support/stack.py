"""Start and stop a real service stack on loopback for integration tests.

Every process is started in its own session, so stopping one by its PID can also reach the
children it forked (gunicorn and Celery workers) through its process group, and nothing else.
Every wait is bounded and raises StackError with the tail of the relevant log.
"""

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PROCFILE = REPO / "Procfile"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOG_TAIL_CHARS = 4000
# Redis databases that integration tests may claim (0 is left to development), and the claim's
# key and lifetime. The lifetime exceeds the longest test, so a killed run frees its database later.
REDIS_TEST_DATABASES = range(1, 16)
REDIS_CLAIM_KEY = "integration-test:claim"
REDIS_CLAIM_SECONDS = 3600
# Environment prefixes of the service's own settings, removed from the parent environment so a
# developer's shell cannot point the test stack at another database or broker.
_SERVICE_ENV_PREFIXES = ("DJANGO_", "CELERY_", "DATABASE_", "LOOKUP_", "ARTEFACT_", "VAR_DIR", "PREDICTOR", "AWS_")
# boto3 settings of every stack process, so none can reach AWS. No config or credentials file
# from the developer's home is read and instance-metadata lookups are off. Every AWS endpoint is
# a closed loopback port (binding port 1 needs root) unless an override names a loopback server.
_OFFLINE_AWS_ENV = {
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
}
_LOOPBACK_HOSTS = ("127.0.0.1", "::1")


class StackError(Exception):
    """A stack process failed to start, exited early, or a bounded wait timed out."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(**overrides: str) -> dict[str, str]:
    """Return the parent environment without the service's settings, plus overrides and the venv on PATH.

    Every AWS_* variable of the parent is dropped and AWS is made unreachable (_OFFLINE_AWS_ENV).
    Raises ValueError when an override sets an AWS endpoint that is not on loopback.
    """
    for name, value in overrides.items():
        if name.startswith("AWS_ENDPOINT_URL") and urllib.parse.urlsplit(value).hostname not in _LOOPBACK_HOSTS:
            raise ValueError(f"{name}={value!r} is not a loopback URL; test stacks may only reach 127.0.0.1 or ::1.")

    env = {key: value for key, value in os.environ.items() if not key.startswith(_SERVICE_ENV_PREFIXES)}
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    return env | _OFFLINE_AWS_ENV | overrides


@contextlib.contextmanager
def postgres_database(prefix: str = "expense_test") -> Iterator[str]:
    """Create a uniquely named PostgreSQL database on loopback; yield its URL, then drop it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise StackError(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}") from exc
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        # A throwaway database needs no durability, so its commits do not wait for a WAL flush.
        # The worker commits several times per imported event.
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            # FORCE (PostgreSQL 13+) ends sessions a killed process may have left open.
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def claimed_redis_database(databases: range = REDIS_TEST_DATABASES) -> Iterator[str]:
    """Claim an unclaimed Redis database on loopback, empty it and yield its URL; release it after.

    A claim is the key REDIS_CLAIM_KEY, set only if absent and expiring after REDIS_CLAIM_SECONDS,
    so two test runs on one machine never share (and empty) each other's broker queues.
    Raises StackError when Redis is unreachable or every database in the range is claimed.
    """
    token = uuid.uuid4().hex
    for db in databases:
        url = f"redis://127.0.0.1:6379/{db}"
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            claimed = client.set(REDIS_CLAIM_KEY, token, nx=True, ex=REDIS_CLAIM_SECONDS)
        except redis.ConnectionError as exc:
            client.close()
            raise StackError(f"Redis is not reachable at {url}: {exc}") from exc
        if not claimed:
            client.close()
            continue

        try:
            _delete_all_but_claim(client)
            yield url
        finally:
            _delete_all_but_claim(client)
            if client.get(REDIS_CLAIM_KEY) == token.encode():
                client.delete(REDIS_CLAIM_KEY)
            client.close()
        return
    raise StackError(f"Every Redis database in {databases} is claimed by another test run; try again later.")


def _delete_all_but_claim(client: redis.Redis) -> None:
    # Not FLUSHDB, which would also drop the claim and let another run take the database.
    keys = [key for key in client.scan_iter(count=1000) if key != REDIS_CLAIM_KEY.encode()]
    if keys:
        client.delete(*keys)


def manage(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run `manage.py ARGS` to completion; raise StackError with its output if it fails or times out."""
    command = [str(VENV_BIN / "python"), "manage.py", *args]
    try:
        completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"manage.py {' '.join(args)} timed out after {timeout} s") from exc
    if completed.returncode != 0:
        raise StackError(
            f"manage.py {' '.join(args)} exited with {completed.returncode}:\n"
            f"{completed.stdout[-LOG_TAIL_CHARS:]}\n{completed.stderr[-LOG_TAIL_CHARS:]}"
        )
    return completed


@dataclass
class StackProcess:
    """A long-running process of the stack, with its output in a log file."""

    name: str
    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError as exc:
            return f"(log {self.log_path} unreadable: {exc})"

    def check_running(self) -> None:
        """Raise StackError if the process has exited."""
        code = self.process.poll()
        if code is not None:
            raise StackError(f"{self.name} (pid {self.pid}) exited with {code}:\n{self.log_tail()}")


def start_process(name: str, command: list[str], *, env: dict[str, str], log_dir: Path) -> StackProcess:
    """Start a command from the repository folder in a new session, logging to LOG_DIR/NAME.log."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return StackProcess(name=name, process=process, log_path=log_path)


def stop_process(stack_process: StackProcess, *, timeout: float = 20.0) -> None:
    """Stop a started process: SIGTERM to its PID, then SIGKILL to its process group after timeout.

    The process group is the one start_process created for this PID, so only the process and
    the children it forked are signalled.
    """
    process = stack_process.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    # Forked children (a gunicorn or Celery worker) may outlive a parent that was killed.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.wait(timeout=10)


@dataclass
class StartedProcesses:
    """The processes one stack started, in start order, so they are checked, reported and stopped together."""

    env: dict[str, str]
    log_dir: Path
    processes: list[StackProcess] = field(default_factory=list)

    def start(self, name: str, command: list[str]) -> StackProcess:
        """Start a command with start_process, with this stack's environment and log folder, and track it."""
        process = start_process(name, command, env=self.env, log_dir=self.log_dir)
        self.processes.append(process)
        return process

    def check_running(self) -> None:
        """Raise StackError if a process has exited that stop_process or kill_process_group has not reaped."""
        for process in self.processes:
            if process.process.returncode is None:
                process.check_running()

    def log_tails(self) -> str:
        return "\n".join(f"--- {process.name}\n{process.log_tail()}" for process in self.processes)

    def wait_until(
        self, predicate: Callable[[], object], *, timeout: float, interval: float, description: str
    ) -> object:
        """Call wait_until, but raise as soon as a process exits; either StackError ends with every log's tail."""

        def checked() -> object:
            self.check_running()
            return predicate()

        try:
            return wait_until(checked, timeout=timeout, interval=interval, description=description)
        except StackError as exc:
            raise StackError(f"{exc}\n{self.log_tails()}") from exc

    def stop_all(self) -> None:
        """Stop every process in reverse start order, exited ones too, so the children they forked are killed."""
        for process in reversed(self.processes):
            stop_process(process)


def wait_until(predicate: Callable[[], object], *, timeout: float, interval: float, description: str) -> object:
    """Call predicate until it returns a true value and return it; raise StackError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise StackError(f"Timed out after {timeout} s waiting for {description}.")
        time.sleep(interval)


def http_json(url: str, *, body=None, token: str | None = None, timeout: float = 30.0) -> tuple[int, object]:
    """Send a GET (or a POST with a JSON body) and return the status and the decoded JSON body.

    A body that is not JSON (an HTML error page) is returned as text, so callers can report it.
    """
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, raw.decode(errors="replace")


def http_status(url: str, *, timeout: float = 5.0) -> int | None:
    """Return the status of a GET, or None while nothing accepts connections."""
    try:
        status, _ = http_json(url, timeout=timeout)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return status


def celery_command(*args: str) -> list[str]:
    """Return the command line of `celery -A config ARGS` from the virtualenv."""
    return [str(VENV_BIN / "celery"), "-A", "config", *args]


def celery_worker_command(*, hostname: str, concurrency: int = 1) -> list[str]:
    """Return the command line of one Celery worker named HOSTNAME, without gossip or mingle.

    Gossip and mingle exchange state between workers over the broker at start-up. The test
    stacks need neither, so skipping them makes a replacement worker ready sooner.
    """
    return celery_command(
        "worker",
        "--hostname",
        hostname,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    )


def procfile_line(process_type: str) -> str:
    """Return the command of a process type (web, worker, scheduler) in the Procfile, as written there.

    Raises StackError when the Procfile has no such process type.
    """
    for line in PROCFILE.read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process_type:
            return command.strip()
    raise StackError(f"{PROCFILE} has no {process_type!r} process type.")


def procfile_command(process_type: str, *, port: int) -> list[str]:
    """Return the Procfile's command of a process type as arguments, with $PORT replaced by PORT.

    Relative paths in it (.venv/bin/gunicorn) resolve against REPO, where start_process runs commands.
    """
    return [part.replace("$PORT", str(port)) for part in shlex.split(procfile_line(process_type))]


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """Yield each running process's PID and the fields of its /proc/PID/stat after the command name.

    The command name in brackets may contain spaces, so the line is split after its closing
    bracket: index 0 is then the state, 1 the parent PID and 3 the session id.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        yield int(entry.name), stat.rsplit(")", 1)[1].split()


def child_pids(parent_pid: int) -> list[int]:
    """Return the PIDs whose parent is PARENT_PID (a gunicorn master's workers)."""
    return sorted(pid for pid, fields in proc_stats() if int(fields[1]) == parent_pid)


def kill_process_group(stack_process: StackProcess, *, timeout: float = 10.0) -> None:
    """Send SIGKILL to the process group start_process created for a process, and reap it.

    Unlike stop_process, nothing gets a chance to clean up: a Celery worker loses the task in
    hand and its unacknowledged messages, as in a crash or an out-of-memory kill.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(stack_process.pid, signal.SIGKILL)
    try:
        stack_process.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{stack_process.name} (pid {stack_process.pid}) survived SIGKILL for {timeout} s.") from exc


REDIS_SERVER = Path("/usr/bin/redis-server")


def start_redis_server(
    *, port: int, data_dir: Path, log_dir: Path, name: str = "redis-server", timeout: float = 20.0
) -> StackProcess:
    """Start a private redis-server on 127.0.0.1:PORT without persistence; return once it answers PING.

    It saves no snapshot and keeps no append-only file, so a restart starts empty, as a broker
    that lost its queued messages. Raises StackError when the binary is missing or PING times out.
    """
    if not REDIS_SERVER.exists():
        raise StackError(f"{REDIS_SERVER} is missing; install the redis-server package.")
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(REDIS_SERVER),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(data_dir),
    ]
    server = start_process(name, command, env=service_env(), log_dir=log_dir)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)

    def answers_ping() -> bool:
        server.check_running()
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_until(answers_ping, timeout=timeout, interval=0.1, description=f"redis-server on port {port}")
    except StackError as exc:
        stop_process(server)
        raise StackError(f"{exc}\n{server.log_tail()}") from exc
    finally:
        client.close()
    return server
