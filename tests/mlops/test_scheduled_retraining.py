from unittest import mock

import pytest
from celery.schedules import crontab

from config.celery import register_periodic_tasks, retraining_schedule
from lookup.stores import get_lookup_store
from mlops import services
from mlops.models import Deployment, ModelVersion, TrainingRun
from mlops.promotion import GateResult
from mlops.tasks import retrain_on_schedule
from tests.mlops.synthetic import expense_change, synthetic_records


def _store(count: int, *, category_for: str | None = None) -> None:
    store = get_lookup_store()
    for index, (record, category, date) in enumerate(synthetic_records(count)):
        store.apply(expense_change(expense_id=f"e{index}", record=record, category=category_for or category, date=date))


def test_retraining_schedule_values():
    assert retraining_schedule("off") is None
    assert retraining_schedule("daily") == crontab(minute=0, hour=2)
    assert retraining_schedule("weekly") == crontab(minute=0, hour=2, day_of_week="mon")


@pytest.mark.parametrize(("setting", "registered"), [("off", False), ("daily", True), ("weekly", True)])
def test_periodic_task_registered_by_setting(settings, setting, registered):
    settings.RETRAIN_SCHEDULE = setting
    sender = mock.Mock()

    register_periodic_tasks(sender)

    names = [call.kwargs["name"] for call in sender.add_periodic_task.call_args_list]
    assert ("scheduled retraining" in names) is registered
    if registered:
        sender.signature.assert_any_call("mlops.tasks.retrain_on_schedule")


@pytest.mark.django_db
def test_scheduled_retraining_deploys_first_model():
    _store(200)

    retrain_on_schedule.delay()

    run = TrainingRun.objects.get()
    assert run.requested_by == "scheduled retraining"
    assert run.status == TrainingRun.Status.SUCCEEDED
    assert ModelVersion.objects.get(is_active=True) == run.model_version
    deployment = Deployment.objects.get()
    assert deployment.status == Deployment.Status.SUCCEEDED
    assert deployment.override_reason == ""


@pytest.mark.django_db
def test_scheduled_retraining_respects_failed_gate(register_model, monkeypatch):
    active = register_model(activate=True)
    _store(200)
    failed = GateResult(passed=False, reason="worse than the active version", comparison={})
    monkeypatch.setattr(services, "check_promotion_gate", lambda **kwargs: failed)

    assert services.retrain_on_schedule() is None

    assert ModelVersion.objects.get(is_active=True) == active
    assert ModelVersion.objects.count() == 2
    assert not Deployment.objects.exists()


@pytest.mark.django_db
def test_scheduled_retraining_single_category_keeps_active(register_model):
    active = register_model(activate=True)
    _store(60, category_for="Meals")

    assert services.retrain_on_schedule() is None

    assert TrainingRun.objects.get().error.startswith("Not enough categories")
    assert ModelVersion.objects.get(is_active=True) == active


@pytest.mark.django_db
def test_scheduled_retraining_skips_while_run_in_progress():
    TrainingRun.objects.create(status=TrainingRun.Status.RUNNING)

    assert services.retrain_on_schedule() is None

    assert TrainingRun.objects.count() == 1
