"""No token, password or secret key reaches the logs, in the text or the JSON log format."""

import io
import logging
import logging.config
import secrets

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from categorisation import services
from categorisation.clients import revoke_api_tokens
from config.log_formatting import RedactSecrets, redact_secrets
from tests.factories import expense_payload

pytestmark = pytest.mark.django_db

PREDICTIONS = "/api/v1/predictions"
ADMIN_PASSWORD = "correct-horse-battery-staple-42"
WRONG_PASSWORD = "wrong-horse-battery-staple-43"
AWS_SECRET = "aws-secret-" + "s" * 29


def _console_handler() -> logging.Handler:
    """Return the handler settings.LOGGING attached to the root logger."""
    handlers = [handler for handler in logging.getLogger().handlers if handler.get_name() == "console"]
    assert handlers, "settings.LOGGING's console handler is not on the root logger"
    return handlers[0]


@pytest.fixture(params=["text", "json"])
def console_output(request, caplog):
    """Send every record at DEBUG and above through the configured console handler into a buffer.

    The handler keeps its filters and gets the text or the JSON formatter of settings.LOGGING.
    Yields the buffer.
    """
    handler = _console_handler()
    formatter_config = dict(settings.LOGGING["formatters"][request.param])
    formatter = logging.config.DictConfigurator(settings.LOGGING).configure_formatter(formatter_config)
    buffer = io.StringIO()
    old_formatter, old_level = handler.formatter, handler.level
    old_stream = handler.setStream(buffer)
    handler.setFormatter(formatter)
    handler.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    try:
        yield buffer
    finally:
        handler.setStream(old_stream)
        handler.setFormatter(old_formatter)
        handler.setLevel(old_level)


def _authorised(key: str) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def _drive_requests(client, monkeypatch) -> dict[str, str]:
    """Make requests that log, each carrying a secret; return the secrets by name."""
    output = io.StringIO()
    call_command("create_api_token", "acme", stdout=output)
    key = output.getvalue().strip()
    call_command("create_api_token", "revoked-app", stdout=output)
    revoked_key = output.getvalue().split()[-1]
    revoke_api_tokens(client_name="revoked-app")
    unknown_key = f"ec_{secrets.token_hex(6)}_{secrets.token_hex(32)}"

    assert _authorised(key).post(PREDICTIONS, expense_payload(), format="json").status_code == 200
    assert _authorised(unknown_key).post(PREDICTIONS, expense_payload(), format="json").status_code == 401
    assert _authorised(revoked_key).post(PREDICTIONS, expense_payload(), format="json").status_code == 401
    # A key put in the URL by mistake: django.request logs the request, and its URL, on the 4xx.
    assert APIClient().get(f"{PREDICTIONS}?token={key}").status_code == 401

    # A failure inside the view: django.request logs the 500 with its traceback and the request.
    def fail(**kwargs):
        raise RuntimeError("prediction failed")

    monkeypatch.setattr(services, "predict_expenses", fail)
    assert _authorised(key).post(PREDICTIONS, expense_payload(), format="json").status_code == 500

    get_user_model().objects.create_superuser(username="root", password=ADMIN_PASSWORD)
    login = {"username": "root", "password": WRONG_PASSWORD, "next": "/admin/"}
    assert client.post("/admin/login/", login).status_code == 200
    assert client.post("/admin/login/", login | {"password": ADMIN_PASSWORD}).status_code == 302

    return {
        "API key": key,
        "unknown API key": unknown_key,
        "revoked API key": revoked_key,
        "admin password": ADMIN_PASSWORD,
        "wrong admin password": WRONG_PASSWORD,
        "SECRET_KEY": settings.SECRET_KEY,
        "AWS secret access key": AWS_SECRET,
    }


def _record_text(record: logging.LogRecord) -> str:
    """Return the record as text: its message and every attribute, extra fields and exception included."""
    return record.getMessage() + " " + " ".join(str(value) for value in vars(record).values())


def test_no_secret_in_logs(client, console_output, caplog, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)

    secrets_by_name = _drive_requests(client, monkeypatch)

    output = console_output.getvalue()
    captured = "\n".join(_record_text(record) for record in caplog.records)
    # The logs did capture the requests, so an absent secret means it was not logged.
    assert "Unauthorized: /api/v1/predictions" in output
    assert "Internal Server Error: /api/v1/predictions" in output
    assert "Revoked API token used" in output
    assert "API token created" in captured
    for name, secret in secrets_by_name.items():
        assert secret not in output, f"{name} in the console log"
        assert secret not in captured, f"{name} in a log record"


def test_revoked_token_logged_by_prefix(client, console_output, caplog, monkeypatch):
    _drive_requests(client, monkeypatch)

    [record] = [record for record in caplog.records if record.getMessage() == "Revoked API token used"]
    assert record.token_prefix.startswith("ec_")
    assert record.client == "revoked-app"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Token ec_0123456789ab_" + "a" * 64, "Authorization: Token [redacted]"),
        ("'HTTP_AUTHORIZATION': 'Bearer abcdefghijklmnopqrstu'", "'HTTP_AUTHORIZATION': 'Bearer [redacted]'"),
        ("key ec_0123456789ab_" + "a" * 64 + " used", "key ec_0123456789ab_[redacted] used"),
        ("GET /api/v1/predictions?token=abc&top_k=3", "GET /api/v1/predictions?token=[redacted]&top_k=3"),
        ("Token 0123456789abcdef0123456789abcdef01234567", "Token [redacted]"),
    ],
)
def test_redact_secrets_replaces_credentials(text, expected):
    assert redact_secrets(text) == expected


@pytest.mark.parametrize("text", ["Revoked API token used", "token authentication failed", "API token created"])
def test_redact_secrets_keeps_prose(text):
    assert redact_secrets(text) == text


def test_redact_filter_rewrites_message_and_extra():
    key = "ec_0123456789ab_" + "f" * 64
    record = logging.LogRecord("test", logging.WARNING, __file__, 1, "Header was Token %s", (key,), None)
    record.url = f"/api/v1/predictions?token={key}"
    record.count = 3

    assert RedactSecrets().filter(record) is True
    assert record.getMessage() == "Header was Token [redacted]"
    assert record.url == "/api/v1/predictions?token=[redacted]"
    assert record.count == 3
