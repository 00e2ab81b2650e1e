"""config.settings.production: the deploy checks pass, required values are enforced, HTTPS is on."""

import runpy
import secrets
import subprocess

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tests.support.stack import REPO, VENV_BIN, service_env

PRODUCTION = "config.settings.production"
HOST = "categoriser.example.com"
CHECK_TIMEOUT_SECONDS = 120
# The settings the production module sets for HTTPS, copied into the running test settings.
HTTPS_SETTINGS = (
    "ALLOWED_HOSTS",
    "SECURE_SSL_REDIRECT",
    "SECURE_REDIRECT_EXEMPT",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "SECURE_REFERRER_POLICY",
    "X_FRAME_OPTIONS",
)


@pytest.fixture
def production_env(tmp_path):
    """The environment production needs, with no service settings from the shell."""
    return service_env(
        DJANGO_SETTINGS_MODULE=PRODUCTION,
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS=HOST,
        VAR_DIR=str(tmp_path / "var"),
    )


def _check_deploy(env):
    return subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_SECONDS,
    )


def _load_production(monkeypatch, **env) -> dict:
    """Run the production settings module with these environment variables; return its namespace."""
    monkeypatch.setenv("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    monkeypatch.setenv("DJANGO_ALLOWED_HOSTS", HOST)
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return runpy.run_module(PRODUCTION)


def test_check_deploy_passes(production_env):
    completed = _check_deploy(production_env)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "no issues" in completed.stdout


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("DJANGO_SECRET_KEY", "DJANGO_SECRET_KEY must be set in production"),
        ("DJANGO_ALLOWED_HOSTS", "DJANGO_ALLOWED_HOSTS must be set in production"),
    ],
)
def test_check_deploy_fails_without_required(production_env, missing, message):
    del production_env[missing]

    completed = _check_deploy(production_env)

    assert completed.returncode != 0
    assert message in completed.stderr


def test_development_secret_key_rejected(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY"):
        _load_production(monkeypatch, DJANGO_SECRET_KEY="dev-only-insecure-key-change-me-in-production")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DJANGO_CSRF_TRUSTED_ORIGINS", "https://ok.example.com,http://plain.example.com", "http://plain.example.com"),
        ("DJANGO_SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto", "HTTP_X_FORWARDED_PROTO,https"),
        ("DJANGO_SECURE_HSTS_SECONDS", "a year", "not an integer"),
        ("DJANGO_SECURE_SSL_REDIRECT", "maybe", "not a boolean"),
    ],
)
def test_invalid_value_rejected(monkeypatch, name, value, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        _load_production(monkeypatch, **{name: value})


def test_defaults_are_strict(monkeypatch):
    loaded = _load_production(monkeypatch)

    assert loaded["DEBUG"] is False
    assert loaded["SECURE_SSL_REDIRECT"] is True
    assert loaded["SECURE_HSTS_SECONDS"] == 31_536_000
    assert loaded["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert loaded["SECURE_HSTS_PRELOAD"] is False
    assert loaded["SECURE_PROXY_SSL_HEADER"] is None
    assert loaded["SESSION_COOKIE_SECURE"] is True
    assert loaded["SESSION_COOKIE_HTTPONLY"] is True
    assert loaded["CSRF_COOKIE_SECURE"] is True
    assert loaded["X_FRAME_OPTIONS"] == "DENY"
    assert loaded["LOGGING"]["handlers"]["console"]["formatter"] == "json"
    assert loaded["ALLOWED_HOSTS"] == [HOST]


def test_preload_enabled_is_not_silenced(monkeypatch):
    loaded = _load_production(monkeypatch, DJANGO_SECURE_HSTS_PRELOAD="true")

    assert loaded["SECURE_HSTS_PRELOAD"] is True
    assert "security.W021" not in loaded.get("SILENCED_SYSTEM_CHECKS", [])


@pytest.fixture
def https_settings(monkeypatch):
    """Apply production's HTTPS settings to the test settings, behind a proxy sending X-Forwarded-Proto."""
    loaded = _load_production(monkeypatch, DJANGO_SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https")
    with override_settings(**{name: loaded[name] for name in HTTPS_SETTINGS}):
        yield


@pytest.mark.django_db
def test_plain_http_redirected_except_health(client, https_settings):
    api = client.post("/api/v1/predictions", {}, HTTP_HOST=HOST)
    health = client.get("/health/", HTTP_HOST=HOST)

    assert api.status_code == 301
    assert api["Location"] == f"https://{HOST}/api/v1/predictions"
    assert health.status_code in (200, 503)


@pytest.mark.django_db
def test_https_from_proxy_gets_hsts(client, https_settings):
    response = client.get("/health/", HTTP_HOST=HOST, HTTP_X_FORWARDED_PROTO="https")

    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
