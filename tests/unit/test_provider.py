"""Warm processes pick up promotions and keep serving the last good model on failure."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fraud_core.errors import ModelUnavailableError
from fraud_core.manifest import ONNX_FILE
from fraud_core.provider import ModelProvider
from fraud_core.registry import LocalModelStore, ModelRegistry
from tests.conftest import MODEL_NAME, TrainedModel


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry(trained: TrainedModel, tmp_path: Path) -> ModelRegistry:
    """A private copy of the trained registry, free to tamper with."""
    shutil.copytree(trained.registry_dir, tmp_path / "reg")
    return ModelRegistry(LocalModelStore(tmp_path / "reg"), MODEL_NAME)


def republish(registry: ModelRegistry, version: str) -> None:
    _, m = registry.current_manifest()
    files = {name: registry.read_verified(m, name) for name in m.files}
    registry.publish(m.model_copy(update={"version": version}), files)


def test_nothing_published_is_a_clear_error(tmp_path: Path) -> None:
    provider = ModelProvider(ModelRegistry(LocalModelStore(tmp_path), "m"))
    with pytest.raises(ModelUnavailableError, match="is published in"):
        provider.get()
    assert "is published in" in (provider.status().last_error or "")


def test_promotion_is_picked_up_after_refresh_interval(registry: ModelRegistry) -> None:
    clock = FakeClock()
    provider = ModelProvider(registry, refresh_seconds=60, clock=clock)
    first = provider.get()
    republish(registry, "v-next")
    # WHEN less than the interval has passed THEN the loaded model is reused without I/O
    clock.now = 59
    assert provider.get() is first
    # WHEN the interval has passed THEN the promoted version is loaded
    clock.now = 61
    assert provider.get().version == "v-next"


def test_bad_new_version_keeps_last_good_and_reports(registry: ModelRegistry) -> None:
    clock = FakeClock()
    provider = ModelProvider(registry, refresh_seconds=10, clock=clock)
    good = provider.get()
    republish(registry, "v-bad")
    registry.store.write(f"{MODEL_NAME}/v-bad/{ONNX_FILE}", b"tampered")
    clock.now = 11
    assert provider.get() is good
    status = provider.status()
    assert status.version == good.version
    assert status.last_error is not None and "sha256 mismatch" in status.last_error
    # AND once the pointer is rolled back the error clears
    registry.rollback()
    clock.now = 22
    assert provider.get() is good
    assert provider.status().last_error is None
