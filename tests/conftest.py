"""Fixtures shared by every test tier: tiny synthetic data and a model trained on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraud_core.provider import load_scorer
from fraud_core.registry import LocalModelStore, ModelRegistry
from fraud_core.scorer import Scorer
from fraud_devstack.services import Service, start_moto_server, start_redis, start_tansu, stop_all
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
    """Reset every cached factory of both functions (settings, clients, providers, stores)."""
    from fraud_api import deps
    from fraud_stream import wiring

    for factory in (*deps.FACTORIES, *wiring.FACTORIES):
        factory.cache_clear()


@pytest.fixture(scope="session")
def scorer(trained: TrainedModel) -> Scorer:
    return trained.scorer()


@pytest.fixture(autouse=True)
def _logs_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Scoring and label logs of whatever a test runs go to its own directory, never the repo's."""
    logs = tmp_path / "logs"
    monkeypatch.setenv("FRAUD_LOG_URI", str(logs))
    clear_caches()
    yield logs
    clear_caches()


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_processes() -> Iterator[None]:
    """Whatever a test started and did not stop (a failed test's runner, a server) is stopped,
    process group and all, when the session ends."""
    yield
    stop_all()


# Real services for the integration and reliability tiers, one of each per session, on free
# loopback ports (unit tests never request them: their sockets are blocked).


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_moto_server(log_dir=tmp_path_factory.mktemp("logs"))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_redis(log_dir=tmp_path_factory.mktemp("redis-logs"))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """tansu, a Kafka-protocol broker, with in-memory storage."""
    service = start_tansu(log_dir=tmp_path_factory.mktemp("tansu-logs"))
    yield service
    service.stop()


def publish_simulated_model(
    root: Path,
    X: np.ndarray,
    y: np.ndarray,
    *,
    name: str,
    thresholds: Any = None,
    reference: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    model: Any = None,
) -> ModelRegistry:
    """A logistic regression on simulated-schema features, published to a local registry."""
    import io
    from datetime import UTC, datetime

    import joblib

    from fraud_core.manifest import ONNX_FILE, SKLEARN_FILE, ModelManifest, Thresholds
    from fraud_core.shapes.simulated import SIMULATED
    from fraud_core.shapes.simulated.features import SIMULATED_FEATURE_NAMES
    from fraud_training.export import to_onnx_bytes
    from fraud_training.models import make_model

    model = model if model is not None else make_model("logreg", seed=0).fit(X, y)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    manifest = ModelManifest(
        name=name,
        version="v1",
        created_at=datetime.now(UTC).isoformat(),
        model_type="logreg",
        schema_name=SIMULATED.name,
        features=list(SIMULATED_FEATURE_NAMES),
        raw_scaling={},
        explain_baseline=[float(v) for v in np.median(X, axis=0)],
        thresholds=thresholds or Thresholds(review=0.2, decline=0.6),
        reference=reference or {},
        metrics=metrics or {},
    )
    registry = ModelRegistry(LocalModelStore(root), name)
    registry.publish(manifest, {ONNX_FILE: to_onnx_bytes(model, X), SKLEARN_FILE: buffer.getvalue()})
    return registry
