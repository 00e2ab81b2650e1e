import io
import re

import pytest
from django.core.management import CommandError, call_command

from lookup.stores import get_lookup_store
from mlops.models import ModelVersion, TrainingRun
from tests.mlops.synthetic import expense_change, synthetic_records

VERSION_ID = re.compile(r"^v\d{8}-\d{6}-[0-9a-f]{4}$")


@pytest.fixture
def store_expenses(db):
    """Store synthetic expenses in the lookup store; category_for overrides every category."""

    def store(count: int, *, category_for=None) -> None:
        lookup_store = get_lookup_store()
        for index, (record, category, date) in enumerate(synthetic_records(count)):
            change = expense_change(expense_id=f"e{index}", record=record, category=category_for or category, date=date)
            lookup_store.apply(change)

    return store


def _train(*args):
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("train_model", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def test_train_model_prints_version_last(store_expenses):
    store_expenses(200)

    stdout, stderr = _train()

    last_line = stdout.strip().splitlines()[-1]
    assert VERSION_ID.match(last_line), stdout
    version = ModelVersion.objects.get(version=last_line)
    assert not version.is_active
    assert version.training_data["rows"] == 200
    assert "Trained on 200 expenses: holdout top-1" in stderr


def test_train_model_activate(store_expenses):
    store_expenses(200)

    stdout, stderr = _train("--activate")

    version = ModelVersion.objects.get(version=stdout.strip().splitlines()[-1])
    assert version.is_active
    assert stderr.rstrip().endswith("(activated)")
    assert TrainingRun.objects.get().status == TrainingRun.Status.SUCCEEDED


def test_train_model_without_expenses(db):
    with pytest.raises(CommandError, match=r"Training failed: Not enough data: 0 expenses, at least 30 are needed\."):
        _train()

    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.FAILED
    assert run.error.startswith("Not enough data")


def test_train_model_single_category_keeps_active_version(store_expenses, register_model):
    active = register_model(activate=True)
    store_expenses(100, category_for="Meals")

    with pytest.raises(CommandError, match="Training failed: Not enough categories: every expense has the same"):
        _train("--activate")

    assert ModelVersion.objects.get(is_active=True) == active
    assert ModelVersion.objects.count() == 1
