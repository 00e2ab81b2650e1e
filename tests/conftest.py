import pytest
from rest_framework.test import APIClient

from categorisation import calibration, resilience
from categorisation.authentication import clear_token_cache
from categorisation.clients import create_api_client
from lookup.selectors import clear_rules_cache
from lookup.stores import get_lookup_store
from mlops.predictors import get_predictor


@pytest.fixture
def api_client(db):
    """An API client authenticated with a fresh token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {create_api_client(name='test-client')}")
    return client


@pytest.fixture(autouse=True)
def fresh_process_singletons():
    """Each test starts with a new predictor, lookup store, rules cache and closed circuit breakers,
    as a new worker process would."""
    get_predictor.cache_clear()
    get_lookup_store.cache_clear()
    calibration.for_model_version.cache_clear()
    resilience.reset_breakers()
    clear_rules_cache()
    clear_token_cache()
    yield
    get_predictor.cache_clear()
    get_lookup_store.cache_clear()
    calibration.for_model_version.cache_clear()
    resilience.reset_breakers()


@pytest.fixture
def post_events(api_client):
    """Post events to the API and assert they were accepted; returns the response body."""

    def post(events):
        response = api_client.post("/api/v1/events", events, format="json")
        assert response.status_code == 202, response.content
        return response.json()

    return post


@pytest.fixture
def send_events(api_client, django_capture_on_commit_callbacks):
    """Post events and run the tasks queued on commit, as a worker does, then return the response.

    Tests marked django_db without transaction=True never commit, so the callbacks that
    enqueue the apply task are captured and run here.
    """

    def send(events):
        with django_capture_on_commit_callbacks(execute=True):
            return api_client.post("/api/v1/events", events, format="json")

    return send
