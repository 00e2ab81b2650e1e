"""Admin pages for ML staff: train, judge, deploy and roll back model versions.

The registry rows are read-only here. Every action that changes what serves (train, deploy,
roll back) goes through a confirmation page and a POST before it calls a service.
"""

import io
import json
import logging
import tarfile

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from mlops import services
from mlops.artefacts import ArtefactError, get_artefact_store, sha256_hex
from mlops.charts import ChartUnavailable, confusion_matrix_png, per_category_png
from mlops.inference import METADATA_FILENAME, IncompatibleModelError, check_compatible
from mlops.models import DatasetSnapshot, Deployment, ModelVersion, TrainingRun
from mlops.promotion import check_promotion_gate

logger = logging.getLogger(__name__)

CHARTS = {"confusion-matrix": confusion_matrix_png, "per-category": per_category_png}
OVERALL_METRICS = (
    ("holdout_rows", "Holdout rows"),
    ("training_rows", "Rows fitted before the holdout"),
    ("final_training_rows", "Rows of the final fit"),
    ("categories", "Categories"),
    ("top1_accuracy", "Top-1 accuracy"),
    ("top3_accuracy", "Top-3 accuracy"),
    ("macro_f1", "Macro F1"),
    ("expected_calibration_error", "Expected calibration error"),
    ("combined_top1_accuracy", "Holdout replay with the lookup: top-1"),
)
# Deployments listed on a version's page, newest first.
VERSION_PAGE_DEPLOYMENTS = 20
# Seconds between reloads of the training run pages while a run is queued or running.
REFRESH_SECONDS = 5


class ReadOnlyAdmin(admin.ModelAdmin):
    """Registry rows are written by services only, so the admin shows them and changes nothing."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        # View only: a Save here could overwrite progress that a worker has just written.
        return False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]


class DeployForm(forms.Form):
    override_reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Required when the promotion gate fails: why this version should serve anyway. It is recorded.",
    )

    def __init__(self, *args, gate_passed: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate_passed = gate_passed

    def clean_override_reason(self):
        reason = self.cleaned_data["override_reason"].strip()
        if not self.gate_passed and not reason:
            raise forms.ValidationError("The promotion gate failed, so an override reason is required to deploy.")
        return reason


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = (
        "version",
        "is_active",
        "top1_accuracy",
        "top3_accuracy",
        "macro_f1",
        "holdout_rows",
        "snapshot",
        "created_at",
        "activated_at",
    )
    list_filter = ("is_active",)
    search_fields = ("version",)
    change_list_template = "admin/mlops/modelversion/change_list.html"
    change_form_template = "admin/mlops/modelversion/change_form.html"

    @admin.display(description="top-1")
    def top1_accuracy(self, obj):
        return obj.metrics.get("top1_accuracy")

    @admin.display(description="top-3")
    def top3_accuracy(self, obj):
        return obj.metrics.get("top3_accuracy")

    @admin.display(description="macro F1")
    def macro_f1(self, obj):
        return obj.metrics.get("macro_f1")

    @admin.display(description="holdout rows")
    def holdout_rows(self, obj):
        return obj.metrics.get("holdout_rows")

    def get_urls(self):
        def view(function):
            return self.admin_site.admin_view(function)

        return [
            path("train/", view(self.train_view), name="mlops_modelversion_train"),
            path("<path:object_id>/deploy/", view(self.deploy_view), name="mlops_modelversion_deploy"),
            path("<path:object_id>/rollback/", view(self.rollback_view), name="mlops_modelversion_rollback"),
            path("<path:object_id>/charts/<slug:chart>.png", view(self.chart_view), name="mlops_modelversion_chart"),
            *super().get_urls(),
        ]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        version = self.get_object(request, object_id) if object_id else None
        if version is not None:
            extra_context = (extra_context or {}) | _version_page_context(version)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def chart_view(self, request, object_id, chart):
        version = self._get_version(request, object_id, permission=self.has_view_permission)
        if chart not in CHARTS:
            raise Http404(f"No chart named {chart!r}; the charts are {', '.join(CHARTS)}.")
        try:
            image = CHARTS[chart](version.metrics)
        except ChartUnavailable as exc:
            raise Http404(str(exc)) from exc
        response = HttpResponse(image, content_type="image/png")
        # A version's metrics never change, so its charts never do.
        response["Cache-Control"] = "private, max-age=86400"
        return response

    def train_view(self, request):
        if not request.user.has_perm("mlops.add_trainingrun"):
            raise PermissionDenied
        if request.method == "POST":
            run = services.start_training(activate=False, requested_by=request.user.get_username())
            self.message_user(request, f"Training run {run.pk} is queued; this page shows its progress.")
            return HttpResponseRedirect(reverse("admin:mlops_trainingrun_change", args=[run.pk]))
        return self._confirmation(
            request,
            title="Train a new model",
            action="Train",
            lines=[
                "A new dataset snapshot is taken from every expense in the lookup store, and a model is trained "
                "on it and registered as a new version.",
                "The new version does not serve until it is deployed.",
            ],
        )

    def deploy_view(self, request, object_id):
        version = self._get_version(request, object_id, permission=_can_deploy)
        active = ModelVersion.objects.filter(is_active=True).first()
        gate = check_promotion_gate(candidate=version, active=active)
        form = DeployForm(request.POST or None, gate_passed=gate.passed)
        if request.method == "POST" and form.is_valid():
            # Imported when used: deployment imports the AWS clients, which most admin pages never need.
            from mlops.deployment import DeploymentError, deploy_version

            try:
                deployment = deploy_version(
                    version=version.version,
                    requested_by=request.user.get_username(),
                    override_reason=form.cleaned_data["override_reason"],
                )
            except DeploymentError as exc:
                return self._deployment_error(request, version, exc)
            return self._after_deployment(request, deployment)
        return self._confirmation(
            request,
            title=f"Deploy {version.version}",
            action="Deploy",
            version=version,
            active=active,
            gate=gate,
            gate_rows=_gate_rows(gate.comparison),
            form=form,
        )

    def rollback_view(self, request, object_id):
        version = self._get_version(request, object_id, permission=_can_deploy)
        active = ModelVersion.objects.filter(is_active=True).first()
        if request.method == "POST":
            from mlops.deployment import DeploymentError, rollback_to

            try:
                deployment = rollback_to(version=version.version, requested_by=request.user.get_username())
            except DeploymentError as exc:
                return self._deployment_error(request, version, exc)
            return self._after_deployment(request, deployment)
        return self._confirmation(
            request,
            title=f"Roll back to {version.version}",
            action="Roll back",
            version=version,
            active=active,
            lines=["A roll-back skips the promotion gate: it restores a version that served before."],
        )

    def _get_version(self, request, object_id, *, permission) -> ModelVersion:
        version = self.get_object(request, object_id)
        if version is None:
            raise Http404(f"No model version with id {object_id!r}.")
        if not permission(request):
            raise PermissionDenied
        return version

    def _confirmation(self, request, *, title: str, action: str, **context):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "action": action,
            **context,
        }
        return TemplateResponse(request, "admin/mlops/confirm_action.html", context)

    def _after_deployment(self, request, deployment: Deployment):
        summary = f"{deployment.get_kind_display()} of {deployment.model_version}: {deployment.status}."
        self.message_user(request, summary)
        return HttpResponseRedirect(reverse("admin:mlops_deployment_change", args=[deployment.pk]))

    def _deployment_error(self, request, version: ModelVersion, exc: Exception):
        # The refused or failed Deployment, when one was recorded, is listed on the version's page.
        self.message_user(request, str(exc), messages.ERROR)
        return HttpResponseRedirect(reverse("admin:mlops_modelversion_change", args=[version.pk]))


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "status",
        "stage",
        "rows_read",
        "model_version",
        "snapshot",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
    )
    list_filter = ("status",)
    change_list_template = "admin/mlops/trainingrun/change_list.html"
    change_form_template = "admin/mlops/trainingrun/change_form.html"

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        run = self.get_object(request, object_id) if object_id else None
        in_progress = run is not None and run.status in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING)
        extra_context = (extra_context or {}) | {"refresh_seconds": REFRESH_SECONDS if in_progress else None}
        return super().changeform_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request, extra_context=None):
        in_progress = TrainingRun.objects.filter(
            status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
        ).exists()
        extra_context = (extra_context or {}) | {"refresh_seconds": REFRESH_SECONDS if in_progress else None}
        return super().changelist_view(request, extra_context)


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "row_count",
        "category_count",
        "business_count",
        "date_from",
        "date_to",
        "store",
        "short_sha256",
        "created_at",
    )
    list_filter = ("store",)

    @admin.display(description="SHA-256")
    def short_sha256(self, obj):
        return obj.sha256[:12]


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "model_version",
        "kind",
        "target",
        "status",
        "gate_passed",
        "previous_version",
        "requested_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "kind", "target")
    change_form_template = "admin/mlops/deployment/change_form.html"

    @admin.display(description="gate passed", boolean=True)
    def gate_passed(self, obj):
        return obj.gate.get("passed") if obj.gate else None

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        deployment = self.get_object(request, object_id) if object_id else None
        if deployment is not None:
            extra_context = (extra_context or {}) | {
                "steps": deployment.steps,
                "gate_rows": _gate_rows(deployment.gate.get("comparison", deployment.gate)),
            }
        return super().changeform_view(request, object_id, form_url, extra_context)


def _can_deploy(request) -> bool:
    return request.user.has_perm("mlops.add_deployment")


def _version_page_context(version: ModelVersion) -> dict:
    metrics = version.metrics or {}
    return {
        "load_problem": artefact_load_problem(version),
        "overall_metrics": [(label, metrics[name]) for name, label in OVERALL_METRICS if name in metrics],
        "threshold_metrics": metrics.get("thresholds", []),
        "tier_metrics": [(tier, row) for tier, row in metrics.get("tiers_on_holdout", {}).items()],
        "auto_apply_threshold": (metrics.get("calibration") or {}).get("auto_threshold"),
        "per_category_metrics": sorted(
            metrics.get("per_category", []), key=lambda row: (-row["support"], row["category"])
        ),
        "charts": [
            (name, reverse("admin:mlops_modelversion_chart", args=[version.pk, name]))
            for name, key in (("confusion-matrix", "confusion_matrix"), ("per-category", "per_category"))
            if metrics.get(key)
        ],
        "training_data_json": json.dumps(version.training_data, indent=2, sort_keys=True),
        "deployments": version.deployments.all()[:VERSION_PAGE_DEPLOYMENTS],
    }


def _gate_rows(comparison: dict) -> list[tuple[str, object, object]]:
    """Return (metric, candidate value, active value) rows of a gate comparison for a table."""
    candidate = comparison.get("candidate") or {}
    active = comparison.get("active") or {}
    names = [name for name in candidate if name != "version"]
    return [(name, candidate.get(name), active.get(name)) for name in names]


def artefact_load_problem(version: ModelVersion) -> str:
    """Return why this process would reject the version's artefact, or "" if it would load it.

    Checks the checksum and the metadata (scikit-learn version, feature schema) without
    unpickling the model, which is the slow part and runs the artefact's code.
    """
    try:
        archive = get_artefact_store().read(version.artefact_uri)
    except ArtefactError as exc:
        return str(exc)
    if sha256_hex(archive) != version.artefact_sha256:
        return f"The artefact of {version.version} does not match its recorded SHA-256; it was changed or corrupted."
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            member = tar.extractfile(METADATA_FILENAME)
            if member is None:
                raise KeyError(f"{METADATA_FILENAME} is not a regular file")
            metadata = json.load(member)
    except (tarfile.TarError, KeyError, ValueError) as exc:
        return f"The artefact of {version.version} has no readable {METADATA_FILENAME}: {exc}"
    try:
        check_compatible(metadata)
    except IncompatibleModelError as exc:
        return str(exc)
    return ""
