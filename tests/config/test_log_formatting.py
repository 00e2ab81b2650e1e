import logging

from django.test import RequestFactory

from config.log_formatting import SkipNotReadyHealthCheck, TextWithFieldsFormatter


def _record(message="Training failed", **extra):
    record = logging.LogRecord("mlops.services", logging.WARNING, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_text_formatter_appends_extra_fields():
    formatter = TextWithFieldsFormatter("%(levelname)s %(message)s")

    text = formatter.format(_record(training_run=7, error="Not enough data"))

    assert text == "WARNING Training failed error='Not enough data' training_run=7"


def test_text_formatter_without_extra_fields():
    formatter = TextWithFieldsFormatter("%(levelname)s %(message)s")

    assert formatter.format(_record()) == "WARNING Training failed"


def test_health_503_record_dropped():
    request = RequestFactory().get("/health/")

    assert not SkipNotReadyHealthCheck().filter(_record(status_code=503, request=request))


def test_other_503_record_kept():
    request = RequestFactory().get("/api/v1/predictions")

    assert SkipNotReadyHealthCheck().filter(_record(status_code=503, request=request))
