"""Security tier: each attack of the hostile-input issue replayed against real services."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from fraud_core.online.client import redis_client
from fraud_core.provider import load_scorer
from fraud_core.registry import ModelRegistry
from fraud_core.scorer import Scorer
from fraud_core.shapes.simulated import SIMULATED
from fraud_core.stream.processor import StreamProcessor
from fraud_core.stream.sinks import InMemorySink
from fraud_core.stream.state import RedisStreamState
from fraud_devstack.kafka_events import build_event
from fraud_devstack.services import Service, start_redis
from fraud_training.entity_offline import entity_features
from fraud_training.simulator import SimulationConfig, simulate
from tests.conftest import publish_simulated_model

SIM_MODEL = "sim-security"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/security" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def simulated_frame() -> pd.DataFrame:
    return simulate(SimulationConfig(customers=150, terminals=300, days=25, seed=11))


@pytest.fixture(scope="session")
def simulated_registry(
    simulated_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> ModelRegistry:
    X = entity_features(simulated_frame).to_numpy(np.float32)
    root = tmp_path_factory.mktemp("sim-security")
    return publish_simulated_model(root, X, simulated_frame["is_fraud"].to_numpy(), name=SIM_MODEL)


@pytest.fixture(scope="session")
def simulated_scorer(simulated_registry: ModelRegistry) -> Scorer:
    return load_scorer(simulated_registry)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Service]:
    service = start_redis(log_dir=tmp_path)
    yield service
    service.stop()


class Stream:
    """The stream processor on a real Redis, with an in-memory sink to read what it published."""

    def __init__(self, scorer: Scorer, url: str) -> None:
        self.client: redis.Redis = redis_client(url, timeout_seconds=5)
        self.sink = InMemorySink()
        self.processor = StreamProcessor(
            scorer,
            RedisStreamState(self.client),
            self.sink,
            online=scorer.shape.online_state(self.client) if scorer.shape is SIMULATED else None,
        )
        self.offset = 0

    def send(self, *payloads: Any) -> Any:
        messages = []
        for p in payloads:
            value = p if isinstance(p, bytes) else json.dumps(p).encode()
            messages.append({"topic": "transactions", "partition": 0, "offset": self.offset, "value": value})
            self.offset += 1
        return self.processor.process(build_event(messages))

    def dlq(self) -> list[dict[str, Any]]:
        return self.sink.values("fraud-dlq")

    def scores(self) -> dict[str, dict[str, Any]]:
        return {s["transaction_id"]: s for s in self.sink.values("fraud-scores")}
