import pytest
from botocore.stub import Stubber

from mlops import aws
from mlops.artefacts import (
    ArtefactError,
    FilesystemArtefactStore,
    S3ArtefactStore,
    get_artefact_store,
    package_bundle,
    parse_s3_uri,
    sha256_hex,
)
from mlops.models import ModelVersion
from mlops.predictors import get_predictor
from tests.mlops.aws_doubles import BUCKET

RECORD = {"business_id": "b1", "supplier": "Trainline 12", "amount": "45.00", "currency": "GBP"}


@pytest.fixture
def archive() -> bytes:
    return package_bundle({"labels": ["Meals", "Travel"]}, {"version": "v-test"})


@pytest.fixture
def store(moto_aws) -> S3ArtefactStore:
    return S3ArtefactStore(bucket=BUCKET, prefix="models/prod")


def test_s3_store_save_then_read(store, archive):
    uri = store.save(version="v1", archive=archive)

    assert uri == f"s3://{BUCKET}/models/prod/v1/model.tar.gz"
    assert store.read(uri) == archive


def test_s3_store_records_checksum_on_object(store, archive):
    uri = store.save(version="v1", archive=archive)

    assert store.stored_sha256(uri) == sha256_hex(archive)
    assert store.stored_sha256(f"s3://{BUCKET}/models/prod/v2/model.tar.gz") is None


def test_s3_store_refuses_to_overwrite_version(store, archive):
    uri = store.save(version="v1", archive=archive)

    with pytest.raises(ArtefactError, match="already exists at s3://.*/v1/model.tar.gz; artefacts are immutable"):
        store.save(version="v1", archive=b"other bytes")

    assert store.read(uri) == archive


def test_s3_store_read_missing_object(store):
    with pytest.raises(ArtefactError, match="Cannot read artefact s3://.*/missing/model.tar.gz: no such object"):
        store.read(f"s3://{BUCKET}/missing/model.tar.gz")


def test_s3_store_read_missing_bucket(moto_aws):
    store = S3ArtefactStore(bucket="no-such-bucket")

    with pytest.raises(ArtefactError, match="Cannot read artefact s3://no-such-bucket/v1/model.tar.gz: .*NoSuchBucket"):
        store.read("s3://no-such-bucket/v1/model.tar.gz")


def test_s3_store_without_prefix(moto_aws, archive):
    store = S3ArtefactStore.from_uri(f"s3://{BUCKET}")

    assert store.save(version="v1", archive=archive) == f"s3://{BUCKET}/v1/model.tar.gz"


def test_s3_store_throttling_becomes_artefact_error(store):
    with Stubber(aws.s3_client()) as stubber:
        stubber.add_client_error("get_object", service_error_code="SlowDown", http_status_code=503)

        with pytest.raises(ArtefactError, match="retry later"):
            store.read(f"s3://{BUCKET}/v1/model.tar.gz")


@pytest.mark.parametrize(
    "uri, message",
    [
        ("/var/artefacts/v1/model.tar.gz", "is not an S3 URI"),
        ("s3:///v1/model.tar.gz", "names no bucket"),
    ],
)
def test_parse_s3_uri_rejects(uri, message):
    with pytest.raises(ArtefactError, match=message):
        parse_s3_uri(uri)


def test_get_artefact_store_by_scheme(settings, tmp_path):
    settings.ARTEFACT_STORE = f"s3://{BUCKET}/models"
    s3_store = get_artefact_store()
    settings.ARTEFACT_STORE = str(tmp_path)
    local_store = get_artefact_store()

    assert isinstance(s3_store, S3ArtefactStore)
    assert (s3_store.bucket, s3_store.prefix) == (BUCKET, "models")
    assert isinstance(local_store, FilesystemArtefactStore)


def test_predictor_loads_version_from_s3(moto_aws, settings, register_model):
    settings.ARTEFACT_STORE = f"s3://{BUCKET}/models"
    version = register_model(activate=True)

    answer = get_predictor().predict([RECORD], top_k=3)

    assert version.artefact_uri.startswith(f"s3://{BUCKET}/models/")
    assert answer.model_version == version.version
    assert len(answer.results[0]) == 3


def test_predictor_rejects_changed_s3_artefact(moto_aws, settings, register_model):
    settings.ARTEFACT_STORE = f"s3://{BUCKET}/models"
    version = register_model()
    bucket, key = parse_s3_uri(version.artefact_uri)
    aws.s3_client().put_object(Bucket=bucket, Key=key, Body=b"replaced")
    ModelVersion.objects.filter(pk=version.pk).update(is_active=True)

    status = get_predictor().status()

    assert status["model_version"] is None
    assert "it was changed or corrupted" in status["error"]
