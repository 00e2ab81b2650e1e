import pytest
from django.urls import reverse

from mlops.models import DatasetSnapshot, Deployment, ModelVersion, TrainingRun

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _version_url(name: str, version: ModelVersion) -> str:
    return reverse(f"admin:mlops_modelversion_{name}", args=[version.pk])


@pytest.mark.parametrize("model", ["modelversion", "trainingrun", "datasetsnapshot", "deployment"])
def test_changelist_renders(admin_client, register_model, model):
    register_model(activate=True)

    response = admin_client.get(reverse(f"admin:mlops_{model}_changelist"))

    assert response.status_code == 200


def test_version_list_shows_key_metrics(admin_client, register_model):
    version = register_model()

    content = admin_client.get(reverse("admin:mlops_modelversion_changelist")).content.decode()

    assert version.version in content
    assert str(version.metrics["top1_accuracy"]) in content
    assert "Train a new model" in content


def test_version_page_shows_metrics_and_charts(admin_client, register_model):
    version = register_model()

    response = admin_client.get(_version_url("change", version))

    content = response.content.decode()
    assert response.status_code == 200
    assert "Top-1 accuracy" in content
    assert "Confidence thresholds" in content
    assert "Answer tiers on the holdout replay" in content
    for tier in ("auto_apply", "suggest", "abstain"):
        assert f"<td>{tier}</td>" in content
    assert "Per category" in content
    assert f'src="{reverse("admin:mlops_modelversion_chart", args=[version.pk, "confusion-matrix"])}"' in content
    assert f'src="{reverse("admin:mlops_modelversion_chart", args=[version.pk, "per-category"])}"' in content
    assert "Deploy this version" in content
    assert "cannot load this version" not in content


def test_version_page_reports_incompatible_artefact(admin_client, register_model):
    version = register_model(metadata_changes={"sklearn_version": "0.24.2"})

    content = admin_client.get(_version_url("change", version)).content.decode()

    assert "This process cannot load this version" in content
    assert "trained with scikit-learn 0.24.2" in content


@pytest.mark.parametrize("chart", ["confusion-matrix", "per-category"])
def test_chart_view_returns_png(admin_client, register_model, chart):
    version = register_model()

    response = admin_client.get(reverse("admin:mlops_modelversion_chart", args=[version.pk, chart]))

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response.content.startswith(PNG_SIGNATURE)


def test_chart_view_unknown_chart(admin_client, register_model):
    version = register_model()

    response = admin_client.get(reverse("admin:mlops_modelversion_chart", args=[version.pk, "roc"]))

    assert response.status_code == 404


def test_train_asks_for_confirmation(admin_client):
    response = admin_client.get(reverse("admin:mlops_modelversion_train"))

    assert response.status_code == 200
    assert b'value="Train"' in response.content
    assert not TrainingRun.objects.exists()


def test_train_confirmed_queues_run(admin_client, admin_user):
    response = admin_client.post(reverse("admin:mlops_modelversion_train"), {"confirm": "Train"})

    run = TrainingRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:mlops_trainingrun_change", args=[run.pk])
    assert run.requested_by == admin_user.get_username()
    assert run.status == TrainingRun.Status.QUEUED
    assert not run.activate


def test_training_run_page_refreshes_while_running(admin_client):
    run = TrainingRun.objects.create(status=TrainingRun.Status.RUNNING, stage="fitting on all rows", rows_read=300)

    content = admin_client.get(reverse("admin:mlops_trainingrun_change", args=[run.pk])).content.decode()

    assert '<meta http-equiv="refresh" content="5">' in content
    assert "fitting on all rows" in content
    assert "300 rows read" in content


def test_training_run_page_stops_refreshing_when_finished(admin_client, register_model):
    run = TrainingRun.objects.create(status=TrainingRun.Status.SUCCEEDED, model_version=register_model())

    content = admin_client.get(reverse("admin:mlops_trainingrun_change", args=[run.pk])).content.decode()

    assert 'http-equiv="refresh"' not in content
    assert "Registered <a href" in content


def test_deploy_shows_gate_before_acting(admin_client, register_model):
    register_model(activate=True)
    candidate = register_model()

    response = admin_client.get(_version_url("deploy", candidate))

    content = response.content.decode()
    assert response.status_code == 200
    assert "Promotion gate: failed" in content
    assert "has no dataset snapshot" in content
    assert "Override reason (required)" in content
    assert not Deployment.objects.exists()


def test_deploy_failed_gate_requires_reason(admin_client, register_model):
    active = register_model(activate=True)
    candidate = register_model()

    response = admin_client.post(_version_url("deploy", candidate), {"confirm": "Deploy", "override_reason": " "})

    assert response.status_code == 200
    assert "an override reason is required to deploy" in response.content.decode()
    assert not Deployment.objects.exists()
    assert ModelVersion.objects.get(is_active=True) == active


def test_deploy_failed_gate_with_override(admin_client, register_model, admin_user):
    register_model(activate=True)
    candidate = register_model()

    response = admin_client.post(
        _version_url("deploy", candidate), {"confirm": "Deploy", "override_reason": "Retrained on corrected labels."}
    )

    deployment = Deployment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:mlops_deployment_change", args=[deployment.pk])
    assert deployment.status == Deployment.Status.SUCCEEDED
    assert deployment.override_reason == "Retrained on corrected labels."
    assert deployment.requested_by == admin_user.get_username()
    assert ModelVersion.objects.get(is_active=True) == candidate


def test_deploy_without_active_version(admin_client, register_model):
    candidate = register_model()

    page = admin_client.get(_version_url("deploy", candidate)).content.decode()
    response = admin_client.post(_version_url("deploy", candidate), {"confirm": "Deploy", "override_reason": ""})

    assert "Promotion gate: passed" in page
    assert response.status_code == 302
    assert ModelVersion.objects.get(is_active=True) == candidate


def test_deployment_page_shows_steps_and_override(admin_client, register_model):
    register_model(activate=True)
    candidate = register_model()
    admin_client.post(_version_url("deploy", candidate), {"confirm": "Deploy", "override_reason": "Known better."})
    deployment = Deployment.objects.get()

    content = admin_client.get(reverse("admin:mlops_deployment_change", args=[deployment.pk])).content.decode()

    assert "promotion gate" in content
    assert "activate version" in content
    assert "Known better." in content


def test_rollback_asks_for_confirmation(admin_client, register_model):
    earlier = register_model(activate=True)
    register_model(activate=True)

    response = admin_client.get(_version_url("rollback", earlier))

    assert response.status_code == 200
    assert b'value="Roll back"' in response.content
    assert not Deployment.objects.exists()


def test_rollback_confirmed(admin_client, register_model):
    earlier = register_model(activate=True)
    register_model(activate=True)

    response = admin_client.post(_version_url("rollback", earlier), {"confirm": "Roll back"})

    deployment = Deployment.objects.get()
    assert response.status_code == 302
    assert deployment.kind == Deployment.Kind.ROLLBACK
    assert deployment.status == Deployment.Status.SUCCEEDED
    assert ModelVersion.objects.get(is_active=True) == earlier


def test_rollback_to_never_active_version_refused(admin_client, register_model):
    active = register_model(activate=True)
    never_active = register_model()

    response = admin_client.post(_version_url("rollback", never_active), {"confirm": "Roll back"}, follow=True)

    assert "has never been active" in response.content.decode()
    assert ModelVersion.objects.get(is_active=True) == active


def test_deploy_calls_deployment_service(admin_client, register_model, monkeypatch):
    candidate = register_model()
    calls = []

    def fake_deploy_version(**kwargs):
        calls.append(kwargs)
        return Deployment.objects.create(model_version=candidate, target="inprocess", status="succeeded")

    monkeypatch.setattr("mlops.deployment.deploy_version", fake_deploy_version)

    admin_client.post(_version_url("deploy", candidate), {"confirm": "Deploy", "override_reason": "reason"})

    assert calls == [{"version": candidate.version, "requested_by": "admin", "override_reason": "reason"}]


def test_actions_need_deploy_permission(client, django_user_model, register_model):
    version = register_model()
    staff = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    client.force_login(staff)

    assert client.get(_version_url("deploy", version)).status_code == 403
    assert client.post(_version_url("rollback", version)).status_code == 403
    assert client.post(reverse("admin:mlops_modelversion_train")).status_code == 403
    assert not DatasetSnapshot.objects.exists()
