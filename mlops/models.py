from django.db import models


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
    is_active = models.BooleanField(default=False)
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
    error = models.TextField(blank=True)
    requested_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"training run {self.pk} ({self.status})"
