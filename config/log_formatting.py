"""Logging helpers: a readable formatter that keeps the structured fields, and two filters."""

import logging
import re

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class TextWithFieldsFormatter(logging.Formatter):
    """Format as text, then append the record's `extra` fields as key=value pairs.

    Log calls put ids and errors in `extra` for the JSON formatter; without this, the text format
    used by `make run` would drop them, and a warning such as "Training failed" would not say why.
    """

    def format(self, record):
        text = super().format(record)
        fields = {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES}
        if not fields:
            return text
        return text + " " + " ".join(f"{key}={value!r}" for key, value in sorted(fields.items()))


class SkipNotReadyHealthCheck(logging.Filter):
    """Drop django.request's error record for a 503 from /health/.

    A 503 there is the expected answer while the service starts (no model yet); load balancers
    poll it every few seconds, and logging each one as an error would bury real errors.
    """

    def filter(self, record):
        request = getattr(record, "request", None)
        return not (getattr(record, "status_code", None) == 503 and getattr(request, "path", "") == "/health/")


# An API key ("ec_", a 12-hex-digit prefix, "_", 64 hex digits) keeps its non-secret prefix.
_API_KEY = re.compile(r"\b(ec_[0-9a-f]{12})_[0-9a-f]{64}\b")
# A credential after an HTTP authentication scheme, as in an Authorization header or META dump.
# Credentials are long, so at least 16 characters are required, which spares prose such as
# "token authentication".
_SCHEME_CREDENTIAL = re.compile(r"\b(Token|Bearer|Basic)(\s+)[A-Za-z0-9_.~+/=-]{16,}", re.IGNORECASE)
# A credential in a query string or form body, as a client may send by mistake: "?token=...".
_PARAMETER_CREDENTIAL = re.compile(
    r"\b(token|api_key|apikey|key|access_token|password|secret)=[^&\s'\"]+", re.IGNORECASE
)
REDACTED = "[redacted]"


def redact_secrets(text: str) -> str:
    """Return text with API keys, Authorization credentials and credential parameters replaced."""
    text = _SCHEME_CREDENTIAL.sub(rf"\1\2{REDACTED}", text)
    text = _API_KEY.sub(rf"\1_{REDACTED}", text)
    return _PARAMETER_CREDENTIAL.sub(rf"\1={REDACTED}", text)


class RedactSecrets(logging.Filter):
    """Replace API keys and credentials in a record's message and `extra` fields.

    The code logs tokens by prefix only. This filter is the safety net for a message or request
    that carries a key, such as django.request's record of a request with "?token=..." in its URL.
    It rewrites the record, so every handler after it, and every formatter, sees the redacted
    text. An `extra` object whose str() contains a secret is replaced by its redacted str().
    An exception's traceback is not inspected.
    """

    def filter(self, record):
        message = record.getMessage()
        redacted = redact_secrets(message)
        if redacted != message:
            record.msg, record.args = redacted, ()

        for key, value in list(vars(record).items()):
            if key in _STANDARD_ATTRIBUTES or value is None or isinstance(value, (bool, int, float)):
                continue
            text = str(value)
            redacted = redact_secrets(text)
            if redacted != text:
                setattr(record, key, redacted)
        return True
