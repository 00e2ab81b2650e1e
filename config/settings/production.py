"""Settings for production: secrets and hosts come from the environment, and HTTPS is enforced.

The service is expected behind a load balancer that terminates TLS. Set
DJANGO_SECURE_PROXY_SSL_HEADER (such as "HTTP_X_FORWARDED_PROTO,https") only when that proxy
overwrites the header on every request; otherwise a client could claim HTTPS over plain HTTP.
Without it, and with DJANGO_SECURE_SSL_REDIRECT on, a proxy that forwards plain HTTP would make
every request redirect to itself. `manage.py check --deploy` passes with these settings.
"""

from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_str
from config.settings.base import *  # noqa: F403 (settings modules extend the base namespace)
from config.settings.base import LOGGING

_DEVELOPMENT_SECRET_KEY = "dev-only-insecure-key-change-me-in-production"

DEBUG = False

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "")
if not SECRET_KEY or SECRET_KEY == _DEVELOPMENT_SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set in production to a long random value, such as the output of "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
    )
# Old keys, comma-separated, still accepted for signatures (sessions, CSRF) while a new key rolls
# out. API tokens do not depend on the secret key.
SECRET_KEY_FALLBACKS = env_list("DJANGO_SECRET_KEY_FALLBACKS", [])

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", [])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "DJANGO_ALLOWED_HOSTS must be set in production: the comma-separated host names the service "
        "answers to, such as categoriser.example.com."
    )

# Origins allowed to post forms to the admin, such as https://admin.example.com, when they differ
# from the host the request reaches (a proxy that rewrites Host).
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
_insecure_origins = [origin for origin in CSRF_TRUSTED_ORIGINS if not origin.startswith("https://")]
if _insecure_origins:
    raise ImproperlyConfigured(
        f"DJANGO_CSRF_TRUSTED_ORIGINS must list https:// origins only; invalid: {', '.join(_insecure_origins)}."
    )


def _proxy_ssl_header() -> tuple[str, str] | None:
    raw = env_str("DJANGO_SECURE_PROXY_SSL_HEADER", "")
    if not raw:
        return None
    parts = [part.strip() for part in raw.split(",")]
    if len(parts) != 2 or not parts[0].startswith("HTTP_") or not parts[1]:
        raise ImproperlyConfigured(
            f"DJANGO_SECURE_PROXY_SSL_HEADER={raw!r} is invalid; use the header's META name and the value "
            "that means HTTPS, separated by a comma, such as HTTP_X_FORWARDED_PROTO,https."
        )
    return parts[0], parts[1]


SECURE_PROXY_SSL_HEADER = _proxy_ssl_header()
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
# Load balancers check /health/ over plain HTTP and do not follow redirects.
SECURE_REDIRECT_EXEMPT = [r"^health/$"]

# HSTS: one year by default, the value the HSTS preload list requires.
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
# Preloading is off by default: browsers then refuse plain HTTP for the whole domain and every
# subdomain, including services other than this one, and leaving the list takes months. The
# domain's owner opts in with DJANGO_SECURE_HSTS_PRELOAD=true and a submission to hstspreload.org.
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
if not SECURE_HSTS_PRELOAD:
    # check --deploy warns when preload is off (security.W021); here that is the decision above.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]

SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LOG_FORMAT = "json"
LOGGING["handlers"]["console"]["formatter"] = "json"
