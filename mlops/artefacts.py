"""Model artefact storage: packaged as SageMaker expects (model.tar.gz), checksummed.

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
from django.conf import settings

from mlops.inference import BUNDLE_FILENAME, METADATA_FILENAME

ARCHIVE_NAME = "model.tar.gz"


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
        target.parent.mkdir(parents=True, exist_ok=True)
        # rename() would replace an existing target, but link() fails when it exists. A unique
        # partial file and a hard link therefore keep two writers of one version apart.
        partial = target.with_name(f"{ARCHIVE_NAME}.{secrets.token_hex(4)}.partial")
        partial.write_bytes(archive)
        try:
            os.link(partial, target)
        except FileExistsError as exc:
            raise ArtefactError(f"Artefact for {version} already exists at {target}; artefacts are immutable.") from exc
        finally:
            partial.unlink(missing_ok=True)
        target.chmod(0o444)
        return str(target)

    def read(self, uri: str) -> bytes:
        try:
            return Path(uri).read_bytes()
        except OSError as exc:
            raise ArtefactError(f"Cannot read artefact {uri}: {exc}") from exc


def get_artefact_store() -> FilesystemArtefactStore:
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
