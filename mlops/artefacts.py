"""Model artefact storage, on the filesystem or S3: packaged as SageMaker expects (model.tar.gz), checksummed.

An artefact is written once under its version and never changed. Loading verifies the SHA-256
recorded in the registry before anything is unpickled, because a joblib file runs code when it
is loaded.
"""

import hashlib
import io
import json
import os
import secrets
import shutil
import tarfile
import tempfile
from pathlib import Path

import joblib
from botocore.exceptions import ClientError
from django.conf import settings

from mlops import aws
from mlops.inference import BUNDLE_FILENAME, METADATA_FILENAME

ARCHIVE_NAME = "model.tar.gz"
S3_SCHEME = "s3://"


class ArtefactError(Exception):
    """An artefact is missing, corrupt, or does not match its recorded checksum."""


def package_bundle(bundle: dict, metadata: dict) -> bytes:
    """Return the model.tar.gz bytes holding the pickled bundle and its metadata."""
    model_bytes = io.BytesIO()
    joblib.dump(bundle, model_bytes, compress=3)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        _add_file(archive, BUNDLE_FILENAME, model_bytes.getvalue())
        _add_file(archive, METADATA_FILENAME, json.dumps(metadata, indent=2, sort_keys=True).encode())
    return buffer.getvalue()


def write_once(target: Path, data: bytes) -> None:
    """Write a new read-only file; raise FileExistsError if target exists, even from a racing writer.

    rename() would replace an existing target, but link() fails when it exists, so a unique
    partial file and a hard link keep two writers of one path apart.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{secrets.token_hex(4)}.partial")
    partial.write_bytes(data)
    try:
        os.link(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    target.chmod(0o444)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FilesystemArtefactStore:
    """Artefacts in a local folder: <root>/<version>/model.tar.gz, read-only once written."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def save(self, *, version: str, archive: bytes) -> str:
        target = self.root / version / ARCHIVE_NAME
        if target.exists():
            raise ArtefactError(f"Artefact for {version} already exists at {target}; artefacts are immutable.")
        try:
            write_once(target, archive)
        except FileExistsError as exc:
            raise ArtefactError(f"Artefact for {version} already exists at {target}; artefacts are immutable.") from exc
        return str(target)

    def read(self, uri: str) -> bytes:
        try:
            return Path(uri).read_bytes()
        except OSError as exc:
            raise ArtefactError(f"Cannot read artefact {uri}: {exc}") from exc


class S3ArtefactStore:
    """Artefacts in S3: s3://<bucket>/<prefix>/<version>/model.tar.gz, written once.

    The write is conditional (If-None-Match: *), so S3 itself rejects a second write of a version,
    even from a racing writer. The SHA-256 is stored as object metadata, so a deploy can check an
    uploaded copy without downloading it.
    """

    def __init__(self, *, bucket: str, prefix: str = ""):
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    @classmethod
    def from_uri(cls, uri: str) -> "S3ArtefactStore":
        bucket, prefix = parse_s3_uri(uri)
        return cls(bucket=bucket, prefix=prefix)

    def uri_for(self, version: str) -> str:
        return f"s3://{self.bucket}/{self._key(version)}"

    def save(self, *, version: str, archive: bytes) -> str:
        key = self._key(version)
        uri = self.uri_for(version)
        try:
            with aws.translated_errors("S3 PutObject", bucket=self.bucket, key=key, model_version=version):
                try:
                    aws.s3_client().put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=archive,
                        IfNoneMatch="*",
                        ContentType="application/gzip",
                        Metadata={"sha256": sha256_hex(archive)},
                    )
                except ClientError as exc:
                    # S3 returns 412 when the object exists and 409 when another write of it is in flight.
                    if aws.error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                        raise ArtefactError(
                            f"Artefact for {version} already exists at {uri}; artefacts are immutable."
                        ) from exc
                    raise
        except aws.AwsError as exc:
            raise ArtefactError(f"Cannot write artefact {uri}: {exc}") from exc
        return uri

    def read(self, uri: str) -> bytes:
        bucket, key = parse_s3_uri(uri)
        try:
            with aws.translated_errors("S3 GetObject", bucket=bucket, key=key):
                try:
                    return aws.s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
                except ClientError as exc:
                    if aws.error_code(exc) in ("NoSuchKey", "404"):
                        raise ArtefactError(f"Cannot read artefact {uri}: no such object.") from exc
                    raise
        except aws.AwsError as exc:
            raise ArtefactError(f"Cannot read artefact {uri}: {exc}") from exc

    def stored_sha256(self, uri: str) -> str | None:
        """Return the SHA-256 recorded on the object at uri, "" if it has none, or None if it is missing."""
        bucket, key = parse_s3_uri(uri)
        try:
            with aws.translated_errors("S3 HeadObject", bucket=bucket, key=key):
                try:
                    head = aws.s3_client().head_object(Bucket=bucket, Key=key)
                except ClientError as exc:
                    # HeadObject has no body, so a missing object comes back as a bare 404.
                    if aws.error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                        return None
                    raise
        except aws.AwsError as exc:
            raise ArtefactError(f"Cannot check artefact {uri}: {exc}") from exc
        return head.get("Metadata", {}).get("sha256", "")

    def _key(self, version: str) -> str:
        return f"{self.prefix}/{version}/{ARCHIVE_NAME}" if self.prefix else f"{version}/{ARCHIVE_NAME}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split s3://bucket/key into bucket and key, raising ArtefactError on anything else."""
    if not uri.startswith(S3_SCHEME):
        raise ArtefactError(f"{uri!r} is not an S3 URI; expected s3://bucket/prefix.")
    bucket, _, key = uri.removeprefix(S3_SCHEME).partition("/")
    if not bucket:
        raise ArtefactError(f"{uri!r} names no bucket; expected s3://bucket/prefix.")
    return bucket, key


def get_artefact_store() -> FilesystemArtefactStore | S3ArtefactStore:
    """Return the store ARTEFACT_STORE names: S3 for an s3:// URI, otherwise a local folder."""
    if settings.ARTEFACT_STORE.startswith(S3_SCHEME):
        return S3ArtefactStore.from_uri(settings.ARTEFACT_STORE)
    return FilesystemArtefactStore(settings.ARTEFACT_STORE)


def unpack_verified(*, archive: bytes, expected_sha256: str, version: str) -> Path:
    """Check the archive's checksum and unpack it to a new temporary folder; return the folder."""
    actual = sha256_hex(archive)
    if actual != expected_sha256:
        raise ArtefactError(
            f"Artefact of {version} has SHA-256 {actual}, but the registry records {expected_sha256}; "
            "it was changed or corrupted. Retrain or restore the artefact."
        )
    folder = Path(tempfile.mkdtemp(prefix=f"model-{version}-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            tar.extractall(folder, filter="data")
    except tarfile.TarError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise ArtefactError(f"Artefact of {version} is not a readable model.tar.gz: {exc}") from exc
    return folder


def _add_file(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))
