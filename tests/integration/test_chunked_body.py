"""Chunked request bodies against a real gunicorn on loopback.

A chunked request has no Content-Length, so RequestSizeLimitMiddleware cannot reject it by its
declared size. These tests send such bodies to gunicorn, as a client or proxy that streams them
would, and check that the response is a JSON 400 or 413, never a 500 or an HTML page.
"""

import http.client
import json

import pytest

from tests.factories import expense_payload
from tests.support.stack import (
    VENV_BIN,
    free_port,
    http_json,
    http_status,
    manage,
    service_env,
    start_process,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.integration

MANAGE_TIMEOUT_SECONDS = 120
START_TIMEOUT_SECONDS = 60
REQUEST_TIMEOUT_SECONDS = 30
THREE_MB = 3 * 1024 * 1024
CHUNK_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """gunicorn serving the embedded defaults (SQLite in a scratch VAR_DIR); yields (port, token, process)."""
    folder = tmp_path_factory.mktemp("chunked")
    env = service_env(DJANGO_SETTINGS_MODULE="config.settings.local", VAR_DIR=str(folder / "var"))
    manage(env, "migrate", "--noinput", "-v", "0", timeout=MANAGE_TIMEOUT_SECONDS)
    token = (
        manage(env, "create_api_token", "chunked-test", timeout=MANAGE_TIMEOUT_SECONDS).stdout.strip().splitlines()[-1]
    )
    port = free_port()
    gunicorn = start_process(
        "gunicorn",
        [
            str(VENV_BIN / "gunicorn"),
            "config.wsgi",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "--no-control-socket",
        ],
        env=env,
        log_dir=folder,
    )
    try:
        wait_until(
            lambda: gunicorn.check_running() or http_status(f"http://127.0.0.1:{port}/health/") is not None,
            timeout=START_TIMEOUT_SECONDS,
            interval=0.5,
            description="gunicorn to respond to /health/",
        )
        yield port, token, gunicorn
    finally:
        stop_process(gunicorn)


def post_chunked(port: int, token: str, body: bytes) -> tuple[int, str, bytes]:
    """POST body to /api/v1/predictions with Transfer-Encoding: chunked; return status, content type and body.

    The server may respond and close before the whole body is sent, so a failed send is ignored
    and the response is read anyway.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_SECONDS)
    try:
        connection.putrequest("POST", "/api/v1/predictions")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Authorization", f"Token {token}")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        try:
            for start in range(0, len(body), CHUNK_BYTES):
                chunk = body[start : start + CHUNK_BYTES]
                connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            connection.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def test_chunked_3mb_body_json_error(web):
    port, token, gunicorn = web
    body = json.dumps(expense_payload(description="x" * THREE_MB)).encode()

    status, content_type, content = post_chunked(port, token, body)

    assert status == 400, content[:500]
    assert content_type == "application/json"
    assert json.loads(content)["error"]["code"] == "length_required"
    gunicorn.check_running()
    assert "Traceback" not in gunicorn.log_tail()


def test_chunked_small_body_names_content_length(web):
    # Django's WSGIRequest reads no body when CONTENT_LENGTH is missing, so a chunked request is
    # rejected with a message that names the header to send, not with "field is required" errors.
    port, token, _ = web
    body = json.dumps(expense_payload()).encode()

    status, content_type, content = post_chunked(port, token, body)

    assert status == 400, content[:500]
    assert content_type == "application/json"
    error = json.loads(content)["error"]
    assert error["code"] == "length_required"
    assert "Content-Length" in error["message"]


def test_content_length_body_still_answered(web):
    port, token, _ = web

    status, body = http_json(
        f"http://127.0.0.1:{port}/api/v1/predictions",
        body=expense_payload(),
        token=token,
        timeout=REQUEST_TIMEOUT_SECONDS,
    )

    assert status == 200, body
    assert body["degraded"] == ["model"]
