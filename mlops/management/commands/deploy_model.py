"""Deploy a registered model version, or roll back to an earlier one."""

from django.core.management.base import BaseCommand, CommandError

from mlops.deployment import DeploymentFailed, DeploymentRefused, deploy_version, rollback_to


class Command(BaseCommand):
    help = (
        "Deploy a registered model version to the PREDICTOR target (in process or SageMaker), make it "
        "the active version and print its id alone on the last line."
    )

    def add_arguments(self, parser):
        parser.add_argument("version", help="The model version id to deploy, as printed by train_model.")
        parser.add_argument(
            "--override-reason",
            default="",
            help="Deploy even if the promotion gate fails; the reason is recorded on the deployment.",
        )
        parser.add_argument(
            "--rollback",
            action="store_true",
            help="Roll back to a version that was active before; the promotion gate does not run.",
        )

    def handle(self, *args, version, override_reason, rollback, **options):
        requested_by = "manage.py deploy_model"
        try:
            if rollback:
                if override_reason:
                    raise CommandError("--override-reason has no effect with --rollback, which skips the gate.")
                deployment = rollback_to(version=version, requested_by=requested_by)
            else:
                deployment = deploy_version(version=version, requested_by=requested_by, override_reason=override_reason)
        except DeploymentRefused as exc:
            raise CommandError(f"Deployment refused: {exc}") from exc
        except DeploymentFailed as exc:
            raise CommandError(f"{exc} The previous version is still serving.") from exc

        for step in deployment.steps:
            self.stderr.write(f"{step['name']}: {step['status']}" + (f" ({step['detail']})" if step["detail"] else ""))
        if deployment.previous_version_id == deployment.model_version_id:
            self.stderr.write(f"{version} is already the active version; nothing was deployed.")
        else:
            self.stderr.write(f"{deployment.kind} of {version} to {deployment.target} succeeded.")
        self.stdout.write(version)
