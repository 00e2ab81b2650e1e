from django.contrib import admin

from mlops.models import ModelVersion, TrainingRun


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("version", "is_active", "created_at", "activated_at", "sklearn_version")
    list_filter = ("is_active",)
    readonly_fields = [field.name for field in ModelVersion._meta.fields]


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "stage", "rows_read", "model_version", "created_at", "finished_at")
    list_filter = ("status",)
    readonly_fields = [field.name for field in TrainingRun._meta.fields]
