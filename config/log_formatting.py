"""A readable log formatter for development that keeps the structured fields."""

import logging

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
