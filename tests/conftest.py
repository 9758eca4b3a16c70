"""Fixtures shared by every test tier: tiny synthetic data and a model trained on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from fraud_core.provider import load_scorer
from fraud_core.registry import LocalModelStore, ModelRegistry
from fraud_core.scorer import Scorer
from fraud_training.datasets import kaggle_like
from fraud_training.train import TrainConfig, TrainResult, train

MODEL_NAME = "test-model"


@dataclass(frozen=True)
class TrainedModel:
    """A model trained once per session on tiny synthetic data, in a local registry."""

    data: Path
    frame: pd.DataFrame
    registry_dir: Path
    result: TrainResult

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(LocalModelStore(self.registry_dir), MODEL_NAME)

    def scorer(self) -> Scorer:
        return load_scorer(self.registry)


@pytest.fixture(scope="session")
def tiny_frame() -> pd.DataFrame:
    # 6,000 rows at 3 % fraud: every split part gets enough frauds, and training takes ~1 s.
    return kaggle_like(6_000, seed=3, fraud_rate=0.03)


@pytest.fixture(scope="session")
def tiny_csv(tiny_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    tiny_frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def trained(
    tiny_csv: Path, tiny_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> TrainedModel:
    root = tmp_path_factory.mktemp("trained")
    config = TrainConfig(
        data=tiny_csv,
        model="hgb",
        registry=str(root / "registry"),
        model_name=MODEL_NAME,
        out_dir=root / "runs",
        synthetic=True,
    )
    return TrainedModel(tiny_csv, tiny_frame, root / "registry", train(config))


@pytest.fixture
def service_env(trained: TrainedModel, monkeypatch: pytest.MonkeyPatch) -> Iterator[TrainedModel]:
    """Process settings pointing at the trained registry, with every cached factory reset around the test."""
    monkeypatch.setenv("FRAUD_REGISTRY_URI", str(trained.registry_dir))
    monkeypatch.setenv("FRAUD_MODEL_NAME", MODEL_NAME)
    for key in ("FRAUD_REDIS_URL", "FRAUD_API_KEY", "FRAUD_API_KEY_SSM_PARAMETER"):
        monkeypatch.delenv(key, raising=False)
    clear_caches()
    yield trained
    clear_caches()


def clear_caches() -> None:
    from fraud_core.entity_online import get_entity_state
    from fraud_core.provider import get_model_provider
    from fraud_core.settings import get_settings
    from fraud_core.stores import get_online_store

    for factory in (get_settings, get_model_provider, get_online_store, get_entity_state):
        factory.cache_clear()


@pytest.fixture(scope="session")
def scorer(trained: TrainedModel) -> Scorer:
    return trained.scorer()
