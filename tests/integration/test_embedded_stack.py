"""The `make run` stack on its embedded defaults: honcho, gunicorn, a Celery worker, the scheduler.

Runs the Procfile as `make run` does, in a scratch VAR_DIR, and checks what a new user sees:
/health/ goes from 503 to 200 once the first model is trained, predictions answer, an event
changes the next prediction, and Ctrl-C (SIGINT to honcho) stops every process.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
READY_TIMEOUT_SECONDS = 240
LEARN_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url, *, token=None, body=None, timeout=10):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _wait_for(predicate, *, timeout, interval=1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    return None


@pytest.fixture
def embedded_env(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "CELERY_", "DATABASE_", "LOOKUP_", "ARTEFACT_"))
    }
    env |= {
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "VAR_DIR": str(tmp_path / "var"),
        "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
    }
    return env


def _manage(env, *args) -> str:
    completed = subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return completed.stdout


def test_make_run_stack_serves_and_learns(embedded_env):
    _manage(embedded_env, "migrate", "--noinput", "-v", "0")
    setup_output = _manage(embedded_env, "setup_demo", "--data", "demo/expenses.csv")
    token = re.search(r"Demo API token: ([0-9a-f]{40})", setup_output).group(1)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"

    honcho = subprocess.Popen(
        [str(VENV_BIN / "honcho"), "start", "--procfile", "Procfile", "--port", str(port)],
        cwd=REPO,
        env=embedded_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        first = _wait_for(lambda: _safe_health(base), timeout=60)
        assert first is not None, "the web server never answered /health/"

        ready = _wait_for(lambda: _safe_health(base) == 200, timeout=READY_TIMEOUT_SECONDS, interval=2)
        assert ready, "/health/ never reached 200: the first model was not trained"

        expense = {
            "business_id": "harbour_bakery",
            "supplier": "SQ *BLUE HERON CAFE",
            "amount": "4.50",
            "currency": "GBP",
            "date": "2025-12-01",
        }
        status, prediction = _request(f"{base}/api/v1/predictions", token=token, body=expense)
        assert status == 200
        assert prediction["degraded"] == []
        assert prediction["categories"][0]["category"] == "Meals and entertainment"
        assert prediction["categories"][0]["source"] == "lookup"
        assert prediction["degraded"] == []

        new_supplier = expense | {"supplier": "Harbour Fish Market", "amount": "82.10"}
        event = {
            "event_id": "stack-test-1",
            "type": "expense.created",
            "expense": new_supplier | {"expense_id": "stack-exp-1", "version": 1, "category": "Fish stock"},
        }
        status, accepted = _request(f"{base}/api/v1/events", token=token, body=event)
        assert status == 202
        assert accepted["accepted"] == 1

        answers = []

        def learned():
            _, answer = _request(f"{base}/api/v1/predictions", token=token, body=new_supplier)
            answers.append(answer)
            top = answer["categories"][0] if answer["categories"] else {}
            return top.get("category") == "Fish stock" and top.get("source") == "lookup"

        assert _wait_for(learned, timeout=LEARN_TIMEOUT_SECONDS, interval=0.5), answers[-3:]
    finally:
        honcho.send_signal(signal.SIGINT)
        try:
            honcho.wait(timeout=STOP_TIMEOUT_SECONDS)
        finally:
            if honcho.poll() is None:
                os.killpg(honcho.pid, signal.SIGKILL)
                honcho.wait(timeout=10)

    assert honcho.returncode is not None
    leftover = _wait_for(lambda: not _children_alive(honcho.pid), timeout=STOP_TIMEOUT_SECONDS)
    assert leftover, "processes of the stack survived Ctrl-C"


def _safe_health(base):
    try:
        status, _ = _request(f"{base}/health/", timeout=5)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return status


def _children_alive(session_id: int) -> bool:
    """Return True while any process of honcho's session is still running."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # Field 6 of /proc/PID/stat is the session id; index 3 after the command name.
        if int(fields[3]) == session_id and fields[0] != "Z":
            return True
    return False
