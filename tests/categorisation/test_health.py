"""GET /health/: ready only when the database, the lookup store and a model all work."""

import pytest

from lookup.stores import LookupStoreUnavailable
from lookup.stores.sql import SqlLookupStore

pytestmark = pytest.mark.django_db


def test_health_no_model_is_503(client):
    response = client.get("/health/")

    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["components"]["model"] == {"status": "error", "error": "No model version is active yet."}
    assert body["components"]["database"] == {"status": "ok"}


def test_health_active_model_is_200(client, active_model):
    response = client.get("/health/")

    assert response.status_code == 200
    assert response.json()["components"]["model"]["model_version"] == active_model


def test_health_lookup_store_down_is_503(client, active_model, monkeypatch):
    def down(self):
        raise LookupStoreUnavailable("connection refused")

    monkeypatch.setattr(SqlLookupStore, "check", down)

    response = client.get("/health/")

    assert response.status_code == 503
    assert response.json()["components"]["lookup_store"]["status"] == "error"


def test_health_post_not_allowed(client):
    response = client.post("/health/")

    assert response.status_code == 405


def test_health_other_method_is_json_405(client):
    response = client.post("/health/")

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json()["error"]["code"] == "method_not_allowed"
