"""The `make run` stack on its embedded defaults: honcho, gunicorn, a Celery worker, the scheduler.

Runs the Procfile as `make run` does, in a scratch VAR_DIR, and checks what a new user sees:
/health/ goes from 503 to 200 once the first model is trained, predictions answer, an event
changes the next prediction, and Ctrl-C (SIGINT to honcho) stops every process.
"""

import contextlib
import os
import re
import signal

import pytest

from tests.support.stack import (
    VENV_BIN,
    StackError,
    free_port,
    http_json,
    http_status,
    manage,
    proc_stats,
    service_env,
    start_process,
    wait_until,
)

pytestmark = pytest.mark.integration

MANAGE_TIMEOUT_SECONDS = 300
FIRST_RESPONSE_TIMEOUT_SECONDS = 60
READY_TIMEOUT_SECONDS = 240
LEARN_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30
REQUEST_TIMEOUT_SECONDS = 10


@pytest.fixture
def embedded_env(tmp_path):
    """The environment `make run` would see, with a scratch VAR_DIR and no service settings from the shell."""
    return service_env(DJANGO_SETTINGS_MODULE="config.settings.local", VAR_DIR=str(tmp_path / "var"))


def test_make_run_stack_serves_and_learns(embedded_env, tmp_path):
    manage(embedded_env, "migrate", "--noinput", "-v", "0", timeout=MANAGE_TIMEOUT_SECONDS)
    setup = manage(embedded_env, "setup_demo", "--data", "demo/expenses.csv", timeout=MANAGE_TIMEOUT_SECONDS)
    token = re.search(r"Demo API token: (\S+)", setup.stdout).group(1)
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    # Output goes to a log file, because an unread pipe could fill and stall the stack. honcho
    # gets a session of its own, so killpg on its PID reaches only honcho and its children.
    honcho = start_process(
        "honcho",
        [str(VENV_BIN / "honcho"), "start", "--procfile", "Procfile", "--port", str(port)],
        env=embedded_env,
        log_dir=tmp_path,
    )

    def request(path, body=None):
        return http_json(f"{base}{path}", body=body, token=token, timeout=REQUEST_TIMEOUT_SECONDS)

    try:
        wait_until(
            lambda: http_status(f"{base}/health/") is not None,
            timeout=FIRST_RESPONSE_TIMEOUT_SECONDS,
            interval=1,
            description="the web server to respond to /health/",
        )
        wait_until(
            lambda: http_status(f"{base}/health/") == 200,
            timeout=READY_TIMEOUT_SECONDS,
            interval=2,
            description="/health/ to return 200, which needs the first model trained",
        )

        expense = {
            "business_id": "harbour_bakery",
            "supplier": "SQ *BLUE HERON CAFE",
            "amount": "4.50",
            "currency": "GBP",
            "date": "2025-12-01",
        }
        status, prediction = request("/api/v1/predictions", expense)
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
        status, accepted = request("/api/v1/events", event)
        assert status == 202
        assert accepted["accepted"] == 1

        answers = []

        def learned():
            _, answer = request("/api/v1/predictions", new_supplier)
            answers.append(answer)
            top = answer["categories"][0] if answer["categories"] else {}
            return top.get("category") == "Fish stock" and top.get("source") == "lookup"

        try:
            wait_until(learned, timeout=LEARN_TIMEOUT_SECONDS, interval=0.5, description="the event to be learned")
        except StackError as exc:
            pytest.fail(f"{exc} Last answers: {answers[-3:]}")
    finally:
        honcho.process.send_signal(signal.SIGINT)
        try:
            honcho.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        finally:
            if honcho.process.poll() is None:
                os.killpg(honcho.pid, signal.SIGKILL)
                honcho.process.wait(timeout=10)

    assert honcho.process.returncode is not None
    try:
        wait_until(
            lambda: not _children_alive(honcho.pid),
            timeout=STOP_TIMEOUT_SECONDS,
            interval=1,
            description="every process of the stack to exit after Ctrl-C",
        )
    except StackError as exc:
        # Survivors are still in honcho's process group, so end them before failing.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(honcho.pid, signal.SIGKILL)
        pytest.fail(f"processes of the stack survived Ctrl-C: {exc}\n{honcho.log_tail()}")


def _children_alive(session_id: int) -> bool:
    """Return True while any process of honcho's session is still running (not a zombie)."""
    return any(int(fields[3]) == session_id and fields[0] != "Z" for _, fields in proc_stats())
