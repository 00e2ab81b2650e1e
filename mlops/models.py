from django.db import models


class DatasetSnapshot(models.Model):
    """An immutable export of the lookup store's expenses that a model was trained on."""

    uri = models.CharField(max_length=500, help_text="Where the snapshot file is stored.")
    sha256 = models.CharField(max_length=64)
    store = models.CharField(max_length=20, help_text="The lookup store it was read from.")
    row_count = models.PositiveIntegerField()
    category_count = models.PositiveIntegerField()
    business_count = models.PositiveIntegerField()
    date_from = models.DateField(null=True, blank=True)
    date_to = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"snapshot {self.pk} ({self.row_count} rows)"


class ModelVersion(models.Model):
    """An immutable, registered model artefact with its metadata and holdout metrics."""

    version = models.CharField(max_length=40, unique=True)
    artefact_uri = models.CharField(max_length=500)
    artefact_sha256 = models.CharField(max_length=64)
    sklearn_version = models.CharField(max_length=20)
    feature_schema = models.JSONField()
    labels = models.JSONField(help_text="The categories the model can predict.")
    training_data = models.JSONField(
        help_text="Reference to the training data: store, row count, date range, checksum."
    )
    hyper_parameters = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    snapshot = models.ForeignKey(DatasetSnapshot, null=True, blank=True, on_delete=models.PROTECT)
    is_active = models.BooleanField(default=False, help_text="The version that serves predictions.")
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=models.Q(is_active=True), name="one_active_model_version"
            ),
        ]

    def __str__(self):
        return self.version


class TrainingRun(models.Model):
    """One training attempt, with its progress while it runs and its result or error."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=100, blank=True, help_text="What the run is doing now.")
    rows_read = models.PositiveIntegerField(default=0)
    activate = models.BooleanField(default=False, help_text="Activate the new version when training succeeds.")
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL)
    snapshot = models.ForeignKey(DatasetSnapshot, null=True, blank=True, on_delete=models.SET_NULL)
    error = models.TextField(blank=True)
    requested_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"training run {self.pk} ({self.status})"


class Deployment(models.Model):
    """One deploy or roll-back of a model version to a target, with every step it took."""

    class Target(models.TextChoices):
        IN_PROCESS = "inprocess"
        SAGEMAKER = "sagemaker"

    class Kind(models.TextChoices):
        DEPLOY = "deploy"
        ROLLBACK = "rollback"

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        REFUSED = "refused"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    previous_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    target = models.CharField(max_length=20, choices=Target.choices)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.DEPLOY)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.IN_PROGRESS)
    gate = models.JSONField(default=dict, help_text="The promotion gate's comparison with the active version.")
    override_reason = models.TextField(blank=True, help_text="Why staff deployed despite a failed gate.")
    steps = models.JSONField(default=list, help_text="Each step with its status, time and detail.")
    endpoint_name = models.CharField(max_length=63, blank=True)
    error = models.TextField(blank=True)
    requested_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"], condition=models.Q(status="in_progress"), name="one_deployment_in_progress"
            ),
        ]

    def __str__(self):
        return f"{self.kind} {self.model_version} to {self.target} ({self.status})"
