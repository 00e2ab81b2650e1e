"""Fixtures of the field-case tests: events and predictions through the public API."""

import datetime
import subprocess
import sys
from pathlib import Path

import pytest

from mlops import services as mlops_services
from mlops.models import TrainingRun
from tests.factories import created_event, expense_payload
from tests.mlops.aws_doubles import (  # noqa: F401 (fixtures of the SageMaker tests, imported so pytest finds them)
    offline_aws,
    sagemaker_settings,
)
from tests.mlops.conftest import register_model, tiny_training_result  # noqa: F401 (fixtures, as above)

PREDICTIONS_URL = "/api/v1/predictions"
REPO_ROOT = Path(__file__).resolve().parents[2]

# Another business whose expenses give the model three learnable categories, three suppliers each.
BACKGROUND_BUSINESS = "b-background"
BACKGROUND_SUPPLIERS = {
    "Meals": ["Harbour Bakery", "Noodle Bar", "Corner Deli"],
    "Travel": ["Northern Rail", "City Taxis", "Airport Parking"],
    "Software": ["Adobe Systems", "Atlassian", "GitHub"],
}
BACKGROUND_DESCRIPTIONS = {"Meals": "team lunch", "Travel": "train ticket", "Software": "licence renewal"}


@pytest.fixture
def seed(send_events):
    """Send events to POST /api/v1/events, apply them as the worker does, and assert the 202."""

    def send(events):
        response = send_events(events)
        assert response.status_code == 202, response.content
        return response.json()

    return send


@pytest.fixture
def predict(api_client):
    """POST one expense to /api/v1/predictions, assert the 200 and return the body."""

    def post(**fields):
        response = api_client.post(PREDICTIONS_URL, expense_payload(**fields), format="json")
        assert response.status_code == 200, response.content
        return response.json()

    return post


@pytest.fixture
def train_active_model(seed):
    """Seed the background business and `events` through the API, then train and activate a model.

    Returns the new model version id.
    """

    def train(events=()):
        seed(background_events() + list(events))
        run = TrainingRun.objects.create(activate=True)
        version = mlops_services.run_training(run_id=run.pk)
        assert version is not None, TrainingRun.objects.get(pk=run.pk).error
        return version.version

    return train


def background_events(per_category: int = 12) -> list[dict]:
    """Created events of BACKGROUND_BUSINESS, one a week, per_category for each category."""
    start = datetime.date(2024, 1, 1)
    events = []
    for category, suppliers in BACKGROUND_SUPPLIERS.items():
        for number in range(per_category):
            events.append(
                created_event(
                    business_id=BACKGROUND_BUSINESS,
                    supplier=suppliers[number % len(suppliers)],
                    description=BACKGROUND_DESCRIPTIONS[category],
                    category=category,
                    date=(start + datetime.timedelta(days=7 * number)).isoformat(),
                )
            )
    return events


@pytest.fixture
def sqlite_file_url(tmp_path):
    """A migrated SQLite file, as the web and worker processes share it with the default settings."""
    url = f"sqlite:///{tmp_path / 'field-cases.sqlite3'}"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0", "--settings", "config.settings.test"],
        cwd=REPO_ROOT,
        env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=120,
    )
    return url
