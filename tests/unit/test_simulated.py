"""Simulator facts, Card Precision@k, and the stream handler on the simulated schema (in memory)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fraud_core.errors import InvalidTransactionError
from fraud_core.provider import load_scorer
from fraud_core.registry import ModelRegistry
from fraud_core.scorer import Scorer
from fraud_core.shapes.simulated import CardEvent, InMemoryWindows
from fraud_core.shapes.simulated.features import SIMULATED_FEATURE_NAMES
from fraud_core.stream.processor import StreamProcessor
from fraud_core.stream.sinks import InMemorySink
from fraud_core.stream.state import InMemoryStreamState
from fraud_devstack.kafka_events import build_event
from fraud_devstack.replay import messages
from fraud_training.entity_offline import entity_features
from fraud_training.simulator import SIMULATED_COLUMNS, SimulationConfig, simulate
from tests.conftest import publish_simulated_model


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return simulate(SimulationConfig(customers=120, terminals=300, days=20, seed=3))


def test_simulator_follows_the_specification(small: pd.DataFrame) -> None:
    assert tuple(small.columns) == SIMULATED_COLUMNS
    assert small["tx_datetime"].is_monotonic_increasing
    assert set(small["fraud_scenario"].unique()) <= {0, 1, 2, 3}
    assert (small.loc[small["amount"] > 220, "is_fraud"] == 1).all()
    assert ((small["fraud_scenario"] > 0) == (small["is_fraud"] == 1)).all()
    seconds = (small["tx_datetime"] - small["tx_datetime"].dt.normalize()).dt.total_seconds()
    assert ((seconds > 0) & (seconds < 86_400)).all()
    assert (small["amount"] >= 0).all()
    pd.testing.assert_frame_equal(
        small, simulate(SimulationConfig(customers=120, terminals=300, days=20, seed=3))
    )


@pytest.fixture(scope="module")
def simulated_registry(small: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    X = entity_features(small).to_numpy(np.float32)
    return publish_simulated_model(
        tmp_path_factory.mktemp("simreg"), X, small["is_fraud"].to_numpy(), name="sim"
    )


@pytest.fixture(scope="module")
def simulated_scorer(simulated_registry: ModelRegistry) -> Scorer:
    return load_scorer(simulated_registry)


def test_stream_scores_simulated_transactions_with_offline_features(
    small: pd.DataFrame, simulated_scorer: Scorer
) -> None:
    # GIVEN the replay stream (transactions + delayed labels) split into batches
    msgs = [m for _, m in messages(small)]
    windows, sink = InMemoryWindows(), InMemorySink()
    processor = StreamProcessor(simulated_scorer, InMemoryStreamState(), sink, online=windows)
    for start in range(0, len(msgs), 300):
        batch = [
            {"topic": "t", "partition": 0, "offset": start + i, "value": json.dumps(m).encode()}
            for i, m in enumerate(msgs[start : start + 300])
        ]
        assert processor.process(build_event(batch)).failures == []
    # THEN each transaction was scored with its offline feature vector
    scored = {s["transaction_id"]: s["features"] for s in sink.values("fraud-scores")}
    assert len(scored) == len(small)
    online = np.array([[scored[str(t)][f] for f in SIMULATED_FEATURE_NAMES] for t in small["transaction_id"]])
    np.testing.assert_allclose(online, entity_features(small).to_numpy(), atol=1e-9, rtol=0)
    # AND a redelivered batch changes nothing
    again = processor.process(
        build_event([{"topic": "t", "partition": 0, "offset": 0, "value": json.dumps(msgs[0]).encode()}])
    )
    assert again.scored == 0


def test_simulated_model_refuses_kaggle_records(simulated_scorer: Scorer) -> None:
    with pytest.raises(InvalidTransactionError, match="customer_id: field required"):
        simulated_scorer.score_batch([{"Time": 0.0, "Amount": 1.0}], online=InMemoryWindows())


def test_invalid_simulated_records_go_to_dlq(simulated_scorer: Scorer) -> None:
    sink = InMemorySink()
    processor = StreamProcessor(simulated_scorer, InMemoryStreamState(), sink, online=InMemoryWindows())
    bad = [
        {
            "transaction_id": "1",
            "tx_datetime": "not a time",
            "customer_id": "c",
            "terminal_id": "t",
            "amount": 1.0,
        },
        {"transaction_id": "2", "tx_datetime": 1, "customer_id": "c", "terminal_id": "t", "amount": -5},
        {"type": "label", "transaction_id": "3", "tx_datetime": 1, "terminal_id": "t", "is_fraud": "maybe"},
    ]
    report = processor.process(
        build_event(
            [
                {"topic": "t", "partition": 0, "offset": i, "value": json.dumps(b).encode()}
                for i, b in enumerate(bad)
            ]
        )
    )
    reasons = [d["reason"] for d in sink.values("fraud-dlq")]
    assert report.dead_lettered == 3
    assert any("tx_datetime" in r for r in reasons)
    assert any("amount" in r for r in reasons)
    assert any("is_fraud" in r for r in reasons)


def test_peek_equals_observe_and_changes_nothing(small: pd.DataFrame) -> None:
    state = InMemoryWindows()
    rows = small.head(400)
    events = [
        CardEvent(
            str(r.transaction_id),
            int(pd.Timestamp(r.tx_datetime).timestamp()),
            str(r.customer_id),
            str(r.terminal_id),
            float(r.amount),
        )
        for r in rows.itertuples()
    ]
    state.observe(events[:-1], ["same"] * (len(events) - 1))
    before = (dict(state.features), {k: list(v) for k, v in state.cards.items()})
    peeked = state.peek([events[-1]])[0]
    assert (dict(state.features), {k: list(v) for k, v in state.cards.items()}) == before
    observed = state.observe([events[-1]], ["same"])[0]
    np.testing.assert_allclose(peeked, observed, atol=1e-9, rtol=0)


def test_api_scores_a_card_transaction_with_online_features(
    simulated_registry: ModelRegistry, small: pd.DataFrame
) -> None:
    from fastapi.testclient import TestClient

    from fraud_api import deps
    from fraud_api.main import create_app
    from fraud_core.provider import ModelProvider

    state = InMemoryWindows()
    first = small.iloc[0]
    epoch = int(pd.Timestamp(first["tx_datetime"]).timestamp())
    state.observe(
        [CardEvent("0", epoch, str(first["customer_id"]), str(first["terminal_id"]), float(first["amount"]))],
        ["f0"],
    )
    app = create_app()
    app.dependency_overrides[deps.provider] = lambda: ModelProvider(simulated_registry)
    app.dependency_overrides[deps.online_state] = lambda: state
    client = TestClient(app)
    body = {
        "tx_datetime": epoch + 60,
        "customer_id": str(first["customer_id"]),
        "terminal_id": "9",
        "amount": 10.0,
    }
    response = client.post("/v1/score", json=body)
    assert response.status_code == 200, response.text
    features = response.json()["online_features"]
    assert features["card_nb_tx_1d"] == 2
    assert features["card_avg_amount_1d"] == pytest.approx((float(first["amount"]) + 10.0) / 2)
    kaggle = client.post(
        "/v1/score", json={"Time": 0.0, "Amount": 1.0, **{f"V{i}": 0.0 for i in range(1, 29)}}
    )
    assert kaggle.status_code == 422
    assert "simulated schema" in kaggle.text
    # AND the classic /predict payload is refused with a pointer to /v1/score
    classic = client.post(
        "/predict",
        json={**{f"V{i}": 0.0 for i in range(1, 29)}, "scaled_amount": 0.1, "scaled_time": 0.2},
    )
    assert classic.status_code == 409
    assert "POST /v1/score" in classic.text


def test_labels_feed_terminal_windows_of_a_simulated_model(simulated_registry: ModelRegistry) -> None:
    from fastapi.testclient import TestClient

    from fraud_api import deps
    from fraud_api.main import create_app
    from fraud_core.online.results import InMemoryResultStore
    from fraud_core.provider import ModelProvider

    windows, store = InMemoryWindows(), InMemoryResultStore()
    # GIVEN two transactions the stream scored at terminal 3107
    store.put_results(
        [
            {"transaction_id": t, "terminal_id": "3107", "tx_datetime": 1522541234, "decision": "approve"}
            for t in ("812", "813")
        ]
    )
    app = create_app()
    app.dependency_overrides[deps.provider] = lambda: ModelProvider(simulated_registry)
    app.dependency_overrides[deps.online_state] = lambda: windows
    app.dependency_overrides[deps.result_store] = lambda: store
    client = TestClient(app)
    # WHEN labels name them (no terminal or time needed: the scored values are applied)
    response = client.post(
        "/v1/labels",
        json={
            "labels": [
                {"transaction_id": "812", "is_fraud": True},
                {"transaction_id": "813", "is_fraud": False},
            ]
        },
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 2 and response.json()["applied_online"] == 1
    assert windows.frauds == {"3107": {(1522541234, "812")}}
    # AND a correction (fraud → legitimate) takes the transaction out of the terminal's fraud set
    fixed = client.post("/v1/labels", json={"labels": [{"transaction_id": "812", "is_fraud": False}]})
    assert fixed.json()["applied_online"] == 1 and windows.frauds == {"3107": set()}
    # AND a label that contradicts the scored transaction is refused
    wrong = client.post(
        "/v1/labels", json={"labels": [{"transaction_id": "812", "terminal_id": "9", "is_fraud": True}]}
    )
    assert wrong.status_code == 422 and "is not the scored transaction's terminal" in wrong.text


@pytest.mark.parametrize("kind", ["spending", "fraud"])
def test_drift_changes_only_what_it_says_from_its_day(kind: str) -> None:
    base = simulate(SimulationConfig(customers=200, terminals=400, days=40, seed=4))
    drift = simulate(
        SimulationConfig(customers=200, terminals=400, days=40, seed=4, drift_day=20, drift_kind=kind)
    )
    after = (base["tx_datetime"] >= pd.Timestamp("2018-04-21")).to_numpy()
    assert drift[~after].equals(base[~after])  # nothing changes before the drift day
    ratio = drift["amount"].to_numpy()[after] / np.maximum(base["amount"].to_numpy()[after], 1e-9)
    big = base["amount"].to_numpy()[after] > 5
    if kind == "spending":
        assert np.allclose(ratio[big], 1.5, rtol=0.01)
    else:  # the compromised cards' frauds: x0.2 where they were x5; everything else as it was
        small_frauds = (drift["fraud_scenario"].to_numpy()[after] == 3) & big
        r = ratio[small_frauds]  # 0.2/5 once, or twice for a card compromised twice over
        assert small_frauds.any() and np.all(
            np.isclose(r, 0.04, rtol=0.01) | np.isclose(r, 0.04**2, rtol=0.01)
        )
        assert np.allclose(ratio[big & ~small_frauds], 1.0)
