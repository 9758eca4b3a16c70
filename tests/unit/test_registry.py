"""Model registry on a local directory and on S3 (moto in-process), integrity first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from fraud_core.errors import ArtifactIntegrityError, ModelUnavailableError
from fraud_core.manifest import ONNX_FILE, ModelManifest, Thresholds, sha256_hex
from fraud_core.provider import load_scorer
from fraud_core.registry import (
    LocalModelStore,
    ModelRegistry,
    ModelStore,
    Pointer,
    S3ModelStore,
    VersionNotFoundError,
    store_from_uri,
)
from tests.conftest import MODEL_NAME, TrainedModel


def manifest(version: str) -> ModelManifest:
    return ModelManifest(
        name="m",
        version=version,
        created_at="2026-01-01T00:00:00+00:00",
        model_type="hgb",
        features=["a"],
        raw_scaling={},
        explain_baseline=[0.0],
        thresholds=Thresholds(review=0.1, decline=0.5),
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModelStore]:
    if request.param == "local":
        yield LocalModelStore(tmp_path / "reg")
        return
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="models")
        yield S3ModelStore("models", "registry/v1")


def test_publish_writes_checksummed_files_and_promotes(store: ModelStore) -> None:
    reg = ModelRegistry(store, "m")
    published = reg.publish(manifest("v1"), {"model.onnx": b"onnx-bytes", "notes.txt": b"hi"})
    assert reg.versions() == ["v1"]
    assert reg.pointer() is not None and reg.pointer().version == "v1"  # type: ignore[union-attr]
    assert set(published.files) == {"model.onnx", "notes.txt"}
    assert all(c.status == "ok" for c in reg.verify("v1"))
    assert reg.read_verified(published, "model.onnx") == b"onnx-bytes"


def test_promote_and_rollback_keep_history(store: ModelStore) -> None:
    reg = ModelRegistry(store, "m")
    reg.publish(manifest("v1"), {"f": b"1"})
    reg.publish(manifest("v2"), {"f": b"2"})
    assert reg.pointer().version == "v2"  # type: ignore[union-attr]
    assert reg.rollback().version == "v1"
    assert reg.pointer().version == "v1"  # type: ignore[union-attr]
    with pytest.raises(ModelUnavailableError, match="no earlier version"):
        reg.rollback()
    reg.promote("v2")
    assert reg.pointer().version == "v2"  # type: ignore[union-attr]


def test_publish_without_promote_leaves_pointer(store: ModelStore) -> None:
    reg = ModelRegistry(store, "m")
    reg.publish(manifest("v1"), {"f": b"1"})
    reg.publish(manifest("v2"), {"f": b"2"}, promote=False)
    assert reg.pointer().version == "v1"  # type: ignore[union-attr]
    assert reg.versions() == ["v1", "v2"]


def test_tampered_file_is_refused_everywhere(store: ModelStore) -> None:
    # GIVEN a published version whose model file is later overwritten
    reg = ModelRegistry(store, "m")
    published = reg.publish(manifest("v1"), {"model.onnx": b"good"})
    store.write("m/v1/model.onnx", b"evil pickle")
    # THEN verify names the file, reading refuses it, and promotion is refused
    assert [(c.file, c.status) for c in reg.verify("v1")] == [("model.onnx", "mismatch")]
    with pytest.raises(ArtifactIntegrityError, match=r"model.onnx: sha256 mismatch"):
        reg.read_verified(published, "model.onnx")
    with pytest.raises(ArtifactIntegrityError, match="refusing to promote"):
        reg.promote("v1")


def test_missing_file_is_refused(store: ModelStore, tmp_path: Path) -> None:
    reg = ModelRegistry(store, "m")
    published = reg.publish(manifest("v1"), {"model.onnx": b"good"}, promote=False)
    bad = published.model_copy(
        update={"files": {**published.files, "extra.bin": published.files["model.onnx"]}}
    )
    store.write("m/v1/manifest.json", bad.model_dump_json().encode())
    assert ("extra.bin", "missing") in [(c.file, c.status) for c in reg.verify("v1")]
    with pytest.raises(ArtifactIntegrityError, match=r"extra\.bin is missing"):
        reg.read_verified(bad, "extra.bin")


def test_pointer_to_unknown_version_and_edited_manifest(store: ModelStore) -> None:
    reg = ModelRegistry(store, "m")
    with pytest.raises(ModelUnavailableError, match="is published in"):
        reg.current_manifest()
    reg.publish(manifest("v1"), {"f": b"1"})
    # a manifest edited after promotion no longer matches the pointer's checksum
    store.write(
        "m/v1/manifest.json",
        manifest("v1").model_copy(update={"model_type": "rf"}).model_dump_json().encode(),
    )
    with pytest.raises(ArtifactIntegrityError, match=r"differs from current\.json"):
        reg.current_manifest()
    store.write("m/current.json", b'{"version": "v9", "manifest_sha256": "00"}')
    with pytest.raises(ArtifactIntegrityError, match="points at 'v9'"):
        reg.current_manifest()
    assert reg.verify("v9")[0].status == "missing"


def test_trained_model_roundtrip_through_s3(trained: TrainedModel) -> None:
    # GIVEN the session's trained model copied file by file into an S3 registry
    src = trained.registry
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="models")
        dst = ModelRegistry(store_from_uri("s3://models/prod"), MODEL_NAME)
        m = src.current_manifest()[1]
        dst.publish(m, {name: src.read_verified(m, name) for name in m.files})
        # THEN it loads and scores exactly like the local copy
        row = trained.frame.iloc[:5]
        records = [{k: float(v) for k, v in r.items() if k != "Class"} for _, r in row.iterrows()]
        s3_scores = [r.fraud_score for r in load_scorer(dst).score_batch(records)]
        local_scores = [r.fraud_score for r in load_scorer(src).score_batch(records)]
        assert s3_scores == local_scores
        # AND a tampered ONNX file in S3 is refused before it is deserialized
        boto3.client("s3").put_object(
            Bucket="models", Key=f"prod/{MODEL_NAME}/{m.version}/{ONNX_FILE}", Body=b"x"
        )
        with pytest.raises(ArtifactIntegrityError, match="sha256 mismatch"):
            load_scorer(dst)


def test_store_from_uri() -> None:
    assert isinstance(store_from_uri("s3://b/p/q"), S3ModelStore)
    assert store_from_uri("s3://b/p/q").uri == "s3://b/p/q"
    assert isinstance(store_from_uri("some/dir"), LocalModelStore)
    with pytest.raises(ValueError, match="no bucket"):
        store_from_uri("s3:///x")


def test_repeated_rollbacks_walk_back_instead_of_toggling(store: ModelStore) -> None:
    # GIVEN three promotions in turn
    reg = ModelRegistry(store, "m")
    for v in ("v1", "v2", "v3"):
        reg.publish(manifest(v), {"f": v.encode()})
    # WHEN rolling back twice
    first = reg.rollback()
    second = reg.rollback()
    # THEN the second goes one further back (v1), never back to v3
    assert (first.version, first.rolled_back_from) == ("v2", "v3")
    assert (second.version, second.rolled_back_from) == ("v1", "v2")
    assert reg.pointer() == second
    with pytest.raises(ModelUnavailableError, match=r"no earlier version .* v1 is the oldest promotion"):
        reg.rollback()
    # AND promoting again starts a new history on top of what is left
    reg.promote("v3")
    assert [e["version"] for e in reg.pointer().history] == ["v1"]  # type: ignore[union-attr]
    assert reg.rollback().version == "v1"


def test_pointer_written_before_history_existed_still_works(store: ModelStore) -> None:
    # GIVEN a current.json of the first format: no history, no promoted_at
    reg = ModelRegistry(store, "m")
    reg.publish(manifest("v1"), {"f": b"1"}, promote=False)
    reg.publish(manifest("v2"), {"f": b"2"}, promote=False)
    sha = sha256_hex(store.read("m/v1/manifest.json"))
    store.write("m/current.json", json.dumps({"version": "v1", "manifest_sha256": sha}).encode())
    # THEN it is read, and promotion builds the history from it
    assert reg.pointer() == Pointer("v1", sha, "", ())
    reg.promote("v2")
    assert reg.rollback().version == "v1"


def test_rollback_refuses_a_manifest_edited_since_its_promotion(store: ModelStore) -> None:
    reg = ModelRegistry(store, "m")
    reg.publish(manifest("v1"), {"f": b"1"})
    reg.publish(manifest("v2"), {"f": b"2"})
    store.write("m/v1/manifest.json", store.read("m/v1/manifest.json").replace(b'"hgb"', b'"rf"'))
    with pytest.raises(
        ArtifactIntegrityError, match=r"refusing to roll back to m/v1: manifest\.json changed"
    ):
        reg.rollback()
    assert reg.pointer().version == "v2"  # type: ignore[union-attr]


def test_unknown_version_is_named_in_a_sentence(store: ModelStore) -> None:
    reg = ModelRegistry(store, "m")
    reg.publish(manifest("v1"), {"f": b"1"})
    expected = (
        f"version 2099 does not exist in {store.uri}/m; "
        "`python -m fraud_training.registry list` shows the versions"
    )
    for call in (lambda: reg.promote("2099"), lambda: reg.manifest("2099")):
        with pytest.raises(VersionNotFoundError) as caught:
            call()
        assert str(caught.value) == expected
    assert not reg.has_version("2099") and reg.has_version("v1")
