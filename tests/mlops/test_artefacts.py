import io
import json
import stat
import tarfile
from pathlib import Path

import pytest

from mlops.artefacts import ArtefactError, FilesystemArtefactStore, package_bundle, sha256_hex, unpack_verified
from mlops.inference import BUNDLE_FILENAME, METADATA_FILENAME

METADATA = {"version": "v-test", "sklearn_version": "1.9.1"}


@pytest.fixture
def archive() -> bytes:
    return package_bundle({"labels": ["Meals", "Travel"]}, METADATA)


def test_package_bundle_contains_model_and_metadata(archive):
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        names = tar.getnames()
        metadata = json.load(tar.extractfile(METADATA_FILENAME))

    assert sorted(names) == sorted([BUNDLE_FILENAME, METADATA_FILENAME])
    assert metadata == METADATA


def test_unpack_verified_extracts_matching_archive(archive):
    folder = unpack_verified(archive=archive, expected_sha256=sha256_hex(archive), version="v-test")

    assert json.loads((folder / METADATA_FILENAME).read_text()) == METADATA
    assert (folder / BUNDLE_FILENAME).is_file()


def test_unpack_verified_rejects_changed_byte(archive):
    changed = bytearray(archive)
    changed[len(changed) // 2] ^= 0x01

    with pytest.raises(ArtefactError, match="Artefact of v-test has SHA-256 .* but the registry records"):
        unpack_verified(archive=bytes(changed), expected_sha256=sha256_hex(archive), version="v-test")


def test_unpack_verified_rejects_unreadable_archive():
    not_a_tar = b"not a gzip file"

    with pytest.raises(ArtefactError, match="not a readable model.tar.gz"):
        unpack_verified(archive=not_a_tar, expected_sha256=sha256_hex(not_a_tar), version="v-test")


def test_store_save_then_read(tmp_path, archive):
    store = FilesystemArtefactStore(tmp_path)

    uri = store.save(version="v1", archive=archive)

    assert Path(uri) == tmp_path / "v1" / "model.tar.gz"
    assert store.read(uri) == archive
    assert [path.name for path in (tmp_path / "v1").iterdir()] == ["model.tar.gz"]


def test_store_refuses_to_overwrite_version(tmp_path, archive):
    store = FilesystemArtefactStore(tmp_path)
    uri = store.save(version="v1", archive=archive)

    with pytest.raises(ArtefactError, match="already exists .* artefacts are immutable"):
        store.save(version="v1", archive=b"other bytes")

    assert store.read(uri) == archive


def test_store_saves_read_only_file(tmp_path, archive):
    uri = FilesystemArtefactStore(tmp_path).save(version="v1", archive=archive)

    mode = Path(uri).stat().st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_store_read_missing_artefact(tmp_path):
    store = FilesystemArtefactStore(tmp_path)

    with pytest.raises(ArtefactError, match="Cannot read artefact .*missing"):
        store.read(str(tmp_path / "missing" / "model.tar.gz"))
