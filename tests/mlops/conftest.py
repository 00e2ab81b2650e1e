import pytest
import sklearn

from mlops import services
from mlops.artefacts import get_artefact_store, package_bundle, sha256_hex
from mlops.features import FEATURE_SCHEMA, FEATURE_SCHEMA_VERSION
from mlops.models import ModelVersion
from mlops.training import train
from tests.mlops.aws_doubles import (  # noqa: F401 (fixtures of the AWS tests, imported so pytest finds them)
    gate,
    moto_aws,
    offline_aws,
    runtime_stub,
    sagemaker_settings,
)
from tests.mlops.synthetic import synthetic_rows

TRAINING_DATA_REFERENCE = {"store": "synthetic", "rows": 300}


@pytest.fixture(scope="session")
def tiny_training_result():
    """A model trained once per session on 300 synthetic rows of five categories and two businesses."""
    return train(synthetic_rows(300), min_rows=30, holdout_fraction=0.2)


@pytest.fixture
def register_model(db, tiny_training_result):
    """Register the tiny model as a new version; metadata_changes alter only its artefact's metadata."""

    def register(*, activate: bool = False, metadata_changes: dict | None = None) -> ModelVersion:
        if metadata_changes is None:
            version = services.register_version(result=tiny_training_result, training_data=TRAINING_DATA_REFERENCE)
        else:
            version = _register_with_metadata(tiny_training_result, metadata_changes)
        if activate:
            services.activate_version(version=version.version)
        return version

    return register


def _register_with_metadata(result, changes: dict) -> ModelVersion:
    """Store an artefact whose metadata differs from the running process, as another build would."""
    version = services.new_version_id()
    metadata = {
        "version": version,
        "sklearn_version": sklearn.__version__,
        "feature_schema": list(FEATURE_SCHEMA),
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "labels": result.bundle["labels"],
    } | changes
    archive = package_bundle(result.bundle, metadata)
    return ModelVersion.objects.create(
        version=version,
        artefact_uri=get_artefact_store().save(version=version, archive=archive),
        artefact_sha256=sha256_hex(archive),
        sklearn_version=metadata["sklearn_version"],
        feature_schema=metadata["feature_schema"],
        labels=result.bundle["labels"],
        training_data=TRAINING_DATA_REFERENCE,
    )
