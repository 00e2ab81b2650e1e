import datetime
import threading
import time
from decimal import Decimal

import pytest

from categorisation import resilience
from categorisation.services import predict_expenses
from lookup import selectors
from lookup.models import OverrideRule
from lookup.stores import LookupStoreUnavailable
from mlops.predictors import ModelPredictions, PredictorUnavailable

BUDGET_MS = 300
HANG_SECONDS = 3.0


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(autouse=True)
def fresh_breakers(settings):
    settings.PREDICTION_BUDGET_MS = BUDGET_MS
    settings.RULES_TIMEOUT_MS = 200
    settings.LOOKUP_TIMEOUT_MS = 200
    settings.MODEL_TIMEOUT_MS = 200
    settings.BREAKER_FAILURE_THRESHOLD = 3
    resilience.reset_breakers()
    yield
    resilience.reset_breakers()


@pytest.fixture
def release():
    """Set at teardown, so abandoned hanging calls end with the test."""
    event = threading.Event()
    yield event
    event.set()


class FakePredictor:
    def __init__(self, *, release=None, error=None):
        self.release, self.error, self.calls = release, error, 0

    def predict(self, records, *, top_k):
        self.calls += 1
        if self.release is not None:
            self.release.wait(HANG_SECONDS)
        if self.error is not None:
            raise self.error
        return ModelPredictions(
            model_version="v-fake", results=[[{"category": "Meals", "confidence": 0.9}]] * len(records)
        )


class FakeStore:
    def __init__(self, *, release=None, error=None):
        self.release, self.error = release, error

    def similar_expenses_many(self, *, keys, limit):
        if self.release is not None:
            self.release.wait(HANG_SECONDS)
        if self.error is not None:
            raise self.error
        return {key: [] for key in keys}


def expense():
    return {
        "business_id": "b-1",
        "supplier": "Harbour Bakery",
        "amount": Decimal("12.50"),
        "currency": "GBP",
        "date": datetime.date(2025, 3, 1),
    }


def predict_timed():
    started = time.monotonic()
    [prediction] = predict_expenses(expenses=[expense()], top_k=3)
    return prediction, time.monotonic() - started


@pytest.fixture
def use_predictor(monkeypatch):
    def use(predictor):
        monkeypatch.setattr("categorisation.services.get_predictor", lambda: predictor)
        return predictor

    return use


@pytest.fixture
def use_store(monkeypatch):
    def use(store):
        monkeypatch.setattr(selectors, "get_lookup_store", lambda: store)
        return store

    return use


@pytest.mark.django_db(transaction=True)
def test_hanging_model_is_skipped_within_budget(use_predictor, use_store, release):
    use_predictor(FakePredictor(release=release))
    use_store(FakeStore())

    prediction, elapsed = predict_timed()

    assert prediction.degraded == ["model"]
    assert elapsed < 5 * BUDGET_MS / 1000


@pytest.mark.django_db(transaction=True)
def test_failing_model_is_skipped(use_predictor, use_store):
    use_predictor(FakePredictor(error=PredictorUnavailable("endpoint down")))
    use_store(FakeStore())

    prediction, _ = predict_timed()

    assert prediction.degraded == ["model"]
    assert prediction.model_version is None


@pytest.mark.django_db(transaction=True)
def test_hanging_lookup_store_is_skipped_and_model_still_answers(use_predictor, use_store, release):
    use_predictor(FakePredictor())
    use_store(FakeStore(release=release))

    prediction, elapsed = predict_timed()

    assert prediction.degraded == ["lookup"]
    assert [candidate.category for candidate in prediction.categories] == ["Meals"]
    assert elapsed < 5 * BUDGET_MS / 1000


@pytest.mark.django_db(transaction=True)
def test_failing_lookup_store_is_skipped(use_predictor, use_store):
    use_predictor(FakePredictor())
    use_store(FakeStore(error=LookupStoreUnavailable("throttled")))

    prediction, _ = predict_timed()

    assert prediction.degraded == ["lookup"]
    assert prediction.model_version == "v-fake"


@pytest.mark.django_db(transaction=True)
def test_backend_failure_is_logged_as_one_line(use_predictor, use_store, caplog):
    use_predictor(FakePredictor())
    use_store(FakeStore(error=LookupStoreUnavailable("throttled")))

    with caplog.at_level("WARNING", logger="categorisation.resilience"):
        predict_timed()

    [record] = [record for record in caplog.records if "lookup" in record.getMessage()]
    assert record.levelname == "WARNING"
    assert "LookupStoreUnavailable: throttled" in record.getMessage()
    assert record.exc_info is None


@pytest.mark.django_db(transaction=True)
def test_unexpected_source_error_is_logged_with_its_traceback(use_predictor, use_store, caplog):
    use_predictor(FakePredictor(error=KeyError("feature")))
    use_store(FakeStore())

    with caplog.at_level("WARNING", logger="categorisation.resilience"):
        prediction, _ = predict_timed()

    assert prediction.degraded == ["model"]
    [record] = [record for record in caplog.records if "model" in record.getMessage()]
    assert record.levelname == "ERROR"
    assert record.exc_info[0] is KeyError


@pytest.mark.django_db(transaction=True)
def test_hanging_rules_query_is_skipped(use_predictor, use_store, release, monkeypatch):
    use_predictor(FakePredictor())
    use_store(FakeStore())
    monkeypatch.setattr(selectors, "rules_for_businesses", lambda ids: release.wait(HANG_SECONDS))

    prediction, elapsed = predict_timed()

    assert prediction.degraded == ["rules"]
    assert elapsed < 5 * BUDGET_MS / 1000


@pytest.mark.django_db(transaction=True)
def test_every_source_hanging_still_answers_within_budget(use_predictor, use_store, release, monkeypatch):
    use_predictor(FakePredictor(release=release))
    use_store(FakeStore(release=release))
    monkeypatch.setattr(selectors, "rules_for_businesses", lambda ids: release.wait(HANG_SECONDS))

    prediction, elapsed = predict_timed()

    assert prediction.degraded == ["lookup", "model", "rules"]
    assert prediction.categories == []
    assert elapsed < 5 * BUDGET_MS / 1000


@pytest.mark.django_db(transaction=True)
def test_rules_read_through_the_orm_in_a_pool_thread_on_sqlite(use_predictor, use_store):
    # The rule is committed (transactional test), so the pool thread's own connection sees it.
    use_predictor(FakePredictor())
    use_store(FakeStore())
    OverrideRule.objects.create(
        business_id="b-1", supplier_match=OverrideRule.Match.CONTAINS, supplier_value="harbour", category="Travel"
    )

    prediction, _ = predict_timed()

    assert prediction.degraded == []
    assert prediction.categories[0].category == "Travel"
    assert prediction.categories[0].source == "rule"


@pytest.mark.django_db(transaction=True)
def test_open_breaker_skips_the_model_without_calling_it(use_predictor, use_store):
    predictor = use_predictor(FakePredictor(error=PredictorUnavailable("endpoint down")))
    use_store(FakeStore())
    for _ in range(3):
        predict_timed()

    prediction, _ = predict_timed()

    assert predictor.calls == 3
    assert prediction.degraded == ["model"]


@pytest.mark.django_db(transaction=True)
def test_full_pool_fails_the_source_instead_of_queueing(use_predictor, use_store, release, monkeypatch):
    predictor = use_predictor(FakePredictor())
    use_store(FakeStore())
    pool = resilience.SourcePool(size=1)
    monkeypatch.setattr(resilience, "get_pool", lambda: pool)
    # The rules query, submitted first, occupies the only thread until the test ends.
    monkeypatch.setattr(selectors, "rules_for_businesses", lambda ids: release.wait(HANG_SECONDS))

    prediction, _ = predict_timed()

    assert prediction.degraded == ["lookup", "model", "rules"]
    assert predictor.calls == 0


def test_predictions_inside_a_transaction_run_inline(db, use_predictor, use_store):
    use_predictor(FakePredictor(error=PredictorUnavailable("no model")))
    use_store(FakeStore())

    prediction, _ = predict_timed()

    assert prediction.degraded == ["model"]


def make_breaker(clock):
    return resilience.CircuitBreaker(threshold=3, window=10.0, cooldown=30.0, clock=clock)


def test_breaker_opens_after_threshold_consecutive_failures():
    clock = FakeClock()
    breaker = make_breaker(clock)

    for _ in range(2):
        breaker.record_failure()
    assert breaker.allow()
    breaker.record_failure()

    assert breaker.state == "open"
    assert not breaker.allow()


def test_breaker_forgets_failures_older_than_the_window():
    clock = FakeClock()
    breaker = make_breaker(clock)
    breaker.record_failure()
    breaker.record_failure()

    clock.now += 11
    breaker.record_failure()

    assert breaker.state == "closed"


def test_breaker_success_resets_the_count():
    breaker = make_breaker(FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()

    assert breaker.state == "closed"


def test_breaker_probe_after_cooldown_closes_it():
    clock = FakeClock()
    breaker = make_breaker(clock)
    for _ in range(3):
        breaker.record_failure()

    clock.now += 30
    assert breaker.allow()
    assert not breaker.allow()
    breaker.record_success()

    assert breaker.state == "closed"
    assert breaker.allow()


def test_breaker_reopens_when_the_probe_fails():
    clock = FakeClock()
    breaker = make_breaker(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 30
    assert breaker.allow()

    breaker.record_failure()

    assert breaker.state == "open"
    clock.now += 29
    assert not breaker.allow()
