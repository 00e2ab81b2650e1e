import io

import pytest
from django.core.management import CommandError, call_command

from mlops.models import Deployment, ModelVersion


def _deploy(*args):
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("deploy_model", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def _active_version() -> str:
    return ModelVersion.objects.get(is_active=True).version


def test_deploy_model_prints_version_last(register_model, gate):
    register_model(activate=True)
    candidate = register_model()

    stdout, stderr = _deploy(candidate.version)

    assert stdout.strip().splitlines()[-1] == candidate.version
    assert "activate version: succeeded" in stderr
    assert f"deploy of {candidate.version} to inprocess succeeded." in stderr
    assert _active_version() == candidate.version
    assert Deployment.objects.get().requested_by == "manage.py deploy_model"


def test_deploy_model_refused_by_gate(register_model, gate):
    previous = register_model(activate=True)
    candidate = register_model()
    gate.passed, gate.reason = False, "macro F1 fell by 0.05"

    with pytest.raises(CommandError, match="Deployment refused: Promotion gate failed: macro F1 fell by 0.05"):
        _deploy(candidate.version)

    assert _active_version() == previous.version


def test_deploy_model_override_reason(register_model, gate):
    register_model(activate=True)
    candidate = register_model()
    gate.passed = False

    stdout, _ = _deploy(candidate.version, "--override-reason", "new categories added this week")

    assert stdout.strip().splitlines()[-1] == candidate.version
    assert Deployment.objects.get().override_reason == "new categories added this week"


def test_deploy_model_rollback(register_model, gate):
    earlier = register_model(activate=True)
    register_model(activate=True)

    stdout, stderr = _deploy(earlier.version, "--rollback")

    assert stdout.strip().splitlines()[-1] == earlier.version
    assert "promotion gate: skipped" in stderr
    assert _active_version() == earlier.version
    assert Deployment.objects.get().kind == Deployment.Kind.ROLLBACK


def test_deploy_model_rollback_rejects_override_reason(register_model, gate):
    earlier = register_model(activate=True)

    with pytest.raises(CommandError, match="--override-reason has no effect with --rollback"):
        _deploy(earlier.version, "--rollback", "--override-reason", "because")


def test_deploy_model_already_active(register_model, gate):
    active = register_model(activate=True)

    stdout, stderr = _deploy(active.version)

    assert stdout.strip().splitlines()[-1] == active.version
    assert f"{active.version} is already the active version; nothing was deployed." in stderr


def test_deploy_model_unknown_version(db, gate):
    with pytest.raises(CommandError, match="Deployment refused: Model version 'v-nope' is not registered"):
        _deploy("v-nope")


def test_deploy_model_failure_keeps_previous_version(register_model, gate, settings):
    settings.PREDICTOR = "sagemaker"
    settings.SAGEMAKER_ROLE_ARN = ""
    previous = register_model(activate=True)
    candidate = register_model()

    with pytest.raises(
        CommandError, match="SAGEMAKER_ROLE_ARN .* must be set .* The previous version is still serving"
    ):
        _deploy(candidate.version)

    assert _active_version() == previous.version
