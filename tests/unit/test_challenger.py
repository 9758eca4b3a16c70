"""The shadow challenger: a second version scored in the same pass, logged, never deciding; one
that cannot be loaded is dropped and reported while the champion serves on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from fraud_core.errors import ArtifactIntegrityError, ModelUnavailableError
from fraud_core.event_log import Logs
from fraud_core.manifest import ONNX_FILE
from fraud_core.monitoring.gate import AP, CP, GateConfig, compare
from fraud_core.monitoring.job import DAY
from fraud_core.monitoring.rows import Scored
from fraud_core.provider import ModelProvider, load_scorer
from fraud_core.registry import LocalModelStore, ModelRegistry, VersionNotFoundError
from fraud_core.scorer import Scorer
from fraud_core.stream.processor import StreamProcessor
from fraud_core.stream.sinks import InMemorySink
from fraud_core.stream.state import InMemoryStreamState
from fraud_devstack.kafka_events import build_event
from fraud_training.data import to_records
from fraud_training.registry import main as registry_cli
from fraud_training.train import TrainConfig, train
from tests.conftest import MODEL_NAME, TrainedModel, clear_caches


def stream(scorer: Scorer, records: list[dict[str, Any]], logs: Logs) -> InMemorySink:
    """``records`` through a stream processor in one batch, logged to ``logs``; what it published."""
    sink = InMemorySink()
    processor = StreamProcessor(scorer, InMemoryStreamState(), sink, logs=logs)
    event = build_event(
        [
            {"topic": "tx", "partition": 0, "offset": i, "value": json.dumps(r).encode()}
            for i, r in enumerate(records)
        ]
    )
    assert processor.process(event).scored == len(records)
    return sink


@pytest.fixture(scope="module")
def two_versions(trained: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A copy of the session registry with a logistic regression published beside the champion."""
    root = tmp_path_factory.mktemp("challenger") / "registry"
    shutil.copytree(trained.registry_dir, root)
    result = train(
        TrainConfig(
            data=trained.data,
            model="logreg",
            registry=str(root),
            model_name=MODEL_NAME,
            out_dir=root.parent / "runs",
            promote="never",
            synthetic=True,
        )
    )
    champion = ModelRegistry(LocalModelStore(root), MODEL_NAME).pointer()
    assert champion is not None
    return root, champion.version, result.manifest.version


@pytest.fixture
def registry(two_versions: tuple[Path, str, str], tmp_path: Path) -> ModelRegistry:
    root = tmp_path / "registry"
    shutil.copytree(two_versions[0], root)
    return ModelRegistry(LocalModelStore(root), MODEL_NAME)


def test_challenge_points_at_a_verified_version_and_unchallenge_clears_it(
    registry: ModelRegistry, two_versions: tuple[Path, str, str]
) -> None:
    _, _, challenger = two_versions
    assert registry.challenger() is None
    pointer = registry.challenge(challenger)
    assert registry.challenger() == pointer and pointer.version == challenger
    registry.unchallenge()
    assert registry.challenger() is None
    with pytest.raises(VersionNotFoundError):
        registry.challenge("19990101T000000Z-deadbeef")
    (Path(registry.store.uri) / MODEL_NAME / challenger / ONNX_FILE).write_bytes(b"tampered")
    with pytest.raises(ArtifactIntegrityError, match="refusing to challenge"):
        registry.challenge(challenger)


def test_cli_challenge_list_unchallenge(
    registry: ModelRegistry, two_versions: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, challenger = two_versions
    common = ["--registry", registry.store.uri, "--model-name", MODEL_NAME]
    assert registry_cli([*common, "challenge", challenger]) == 0
    assert registry_cli([*common, "list"]) == 0
    listed = capsys.readouterr().out
    assert any(challenger in line and "shadow" in line for line in listed.splitlines())
    assert registry_cli([*common, "unchallenge"]) == 0
    assert registry.challenger() is None


def test_the_challenger_is_scored_in_the_same_pass_and_never_decides(
    registry: ModelRegistry, two_versions: tuple[Path, str, str], trained: TrainedModel, tmp_path: Path
) -> None:
    _, champion, challenger = two_versions
    records = [{**r, "card_id": f"c{i % 5}"} for i, r in enumerate(to_records(trained.frame.tail(300)))]
    alone = load_scorer(registry).score_batch(records, explain="none")
    registry.challenge(challenger)
    scorer = ModelProvider(registry).get()
    assert scorer.version == champion and scorer.shadow is not None
    both = scorer.score_batch(records, explain="none")
    assert [r.to_dict() for r in both] == [r.to_dict() for r in alone]  # decisions: the champion's
    registry.promote(challenger)  # the challenger alone, as the champion, for its own scores
    own = load_scorer(registry).score_batch(records, explain="none")
    assert [r.shadow_score for r in both] == [r.fraud_score for r in own]
    assert {r.shadow_version for r in both} == {challenger}
    assert not np.allclose([r.fraud_score for r in both], [r.fraud_score for r in own])

    # the stream logs both scores; what it publishes carries the champion's only
    registry.promote(champion)
    logs = Logs.at(str(tmp_path / "logs"))
    sink = stream(scorer, records, logs)
    rows = {row["transaction_id"]: row for row in logs.scoring.read()}
    for result in both:
        row = rows[str(result.transaction_id)]
        assert row["fraud_score"] == result.fraud_score and row["model_version"] == champion
        assert row["challenger"] == {"model_version": challenger, "fraud_score": result.shadow_score}
    assert all("challenger" not in str(v) for v in sink.values("fraud-scores"))


def test_a_broken_challenger_is_dropped_and_reported_while_the_champion_serves(
    registry: ModelRegistry,
    two_versions: tuple[Path, str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, champion, challenger = two_versions
    registry.challenge(challenger)
    (Path(registry.store.uri) / MODEL_NAME / challenger / ONNX_FILE).write_bytes(b"corrupt after challenge")
    provider = ModelProvider(registry)
    scorer = provider.get()
    assert scorer.version == champion and scorer.shadow is None
    status = provider.status()
    assert status.challenger == challenger and "sha256 mismatch" in (status.challenger_error or "")

    monkeypatch.setenv("FRAUD_REGISTRY_URI", registry.store.uri)
    monkeypatch.setenv("FRAUD_MODEL_NAME", MODEL_NAME)
    for key in ("FRAUD_REDIS_URL", "FRAUD_API_KEY", "FRAUD_API_KEY_SSM_PARAMETER"):
        monkeypatch.delenv(key, raising=False)
    clear_caches()
    from fraud_api.main import create_app

    try:
        body = TestClient(create_app()).get("/ready").json()
    finally:
        clear_caches()
    assert body["model"]["version"] == champion
    assert body["model"]["challenger"] == challenger
    assert "not scored in shadow" in body["model"]["challenger_error"]


def _world(
    days: int, per_day: int, *, challenger_skill: float, seed: int = 0
) -> tuple[Scored, dict[str, bool]]:
    rng = np.random.default_rng(seed)
    n = days * per_day
    y = rng.random(n) < 0.05
    noise = rng.random(n)
    champion = 0.5 * noise + 0.3 * y  # both see the truth through noise; the skill sets how much
    challenger = (1 - challenger_skill) * noise + challenger_skill * y + 0.01 * rng.random(n)
    ids = np.array([f"t{i}" for i in range(n)])
    data = Scored(
        ids=ids,
        event_time=np.repeat(np.arange(days), per_day) * DAY + 60.0,
        card=np.array([f"c{i % (per_day // 2)}" for i in range(n)]),
        score=champion,
        alert=champion > 0.7,
        decision=np.where(champion > 0.7, "review", "approve"),
        features=np.zeros((n, 0)),
        challenger=challenger,
    )
    return data, {t: bool(f) for t, f in zip(ids, y, strict=True) if f}


@pytest.mark.parametrize(
    ("skill", "promote", "why"),
    [(0.9, True, "clears the margin"), (0.1, False, "does not clear"), (0.375, False, "does not clear")],
)
def test_gate_decisions_on_synthetic_series(skill: float, promote: bool, why: str) -> None:
    # 0.375 gives the challenger the champion's signal-to-noise: within noise, never promoted
    data, labels = _world(14, 2_000, challenger_skill=skill)
    decision = compare(data, labels, complete_before=20 * DAY, config=GateConfig(margin=0.005))
    assert decision.promote is promote and why in " ".join(decision.reasons)
    assert decision.metric == "card_precision_at_100" and len(decision.days) == 14


def _saturated_world(split_frauds: bool) -> tuple[Scored, dict[str, bool]]:
    """1,000 cards with two transactions a day, 20 of them compromised each day: fewer than 100,
    so CP@100 only asks whether each fraud card is in the top 100. The champion scores every fraud
    card's legitimate transaction above its fraud (card found, fraud ranked low: poor AP). The
    challenger ranks the frauds first; with ``split_frauds`` it sinks half of them below 100 other
    cards (better AP, worse CP@100)."""
    days, cards = 10, 1_000
    card = np.tile(np.repeat(np.arange(cards), 2), days)
    day = np.repeat(np.arange(days), 2 * cards)
    second = np.tile([0, 1], days * cards).astype(bool)
    compromised = (card - 20 * day) % cards < 20  # 20 other cards every day
    fraud = compromised & ~second
    others = np.random.default_rng(1).random(card.size) * 0.5
    champion = np.where(fraud, 0.8, np.where(compromised, 0.9, others))
    challenger = np.where(fraud, 0.95, np.where(compromised, 0.6, others))
    if split_frauds:
        challenger = np.where(fraud & ((card - 20 * day) % cards >= 10), 0.01, challenger)
        challenger = np.where(compromised & ~fraud, 0.01, challenger)
        challenger = np.where(~compromised & (card % 10 == 0), 0.7, challenger)  # 100 cards above them
    ids = np.array([f"t{i}" for i in range(card.size)])
    data = Scored(
        ids=ids,
        event_time=day * DAY + 60.0,
        card=np.array([f"c{c}" for c in card]),
        score=champion,
        alert=champion > 0.7,
        decision=np.where(champion > 0.7, "review", "approve"),
        features=np.zeros((card.size, 0)),
        challenger=challenger,
    )
    return data, {t: True for t in ids[fraud]}


def test_gate_on_ap_promotes_what_saturated_card_precision_cannot_see() -> None:
    data, labels = _saturated_world(split_frauds=False)
    on_cp = compare(data, labels, complete_before=20 * DAY, config=GateConfig(min_days=5))
    assert not on_cp.promote and on_cp.difference["mean"] == pytest.approx(0.0)
    on_ap = compare(data, labels, complete_before=20 * DAY, config=GateConfig(metric=AP, min_days=5))
    assert on_ap.promote and on_ap.metric == AP and on_ap.difference["low"] > 0.3
    assert on_ap.guardrail["metric"] == CP and on_ap.guardrail["mean"] == pytest.approx(0.0)
    assert "clears the margin" in on_ap.reasons[0] and "within the tolerance" in on_ap.reasons[1]


def test_gate_guardrail_refuses_better_ap_with_worse_card_precision() -> None:
    data, labels = _saturated_world(split_frauds=True)
    decision = compare(data, labels, complete_before=20 * DAY, config=GateConfig(metric=AP, min_days=5))
    assert decision.difference["low"] > 0  # better on AP ...
    assert decision.guardrail["mean"] == pytest.approx(-0.1)  # ... but 10 of 20 fraud cards lost a day
    assert not decision.promote and any("beyond the tolerance" in r for r in decision.reasons)


def test_gate_refuses_too_few_days_or_frauds_and_budgets() -> None:
    data, labels = _world(14, 2_000, challenger_skill=0.9)
    # days not yet label-complete do not count
    few = compare(data, labels, complete_before=5 * DAY, config=GateConfig())
    assert not few.promote and "5 label-complete days" in few.reasons[0]
    none = compare(data, {}, complete_before=20 * DAY, config=GateConfig())
    assert not none.promote and "0 fraud labels" in none.reasons[0]
    slow = compare(
        data, labels, complete_before=20 * DAY, config=GateConfig(), latency_ratio=3.0, artifact_bytes=10**9
    )
    assert (
        not slow.promote and any("slower" in r for r in slow.reasons) and any("MB" in r for r in slow.reasons)
    )


def test_cli_gate_reads_the_log_records_its_decision_and_promotes_with_apply(
    registry: ModelRegistry,
    two_versions: tuple[Path, str, str],
    trained: TrainedModel,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, champion, challenger = two_versions
    registry.challenge(challenger)
    scorer = ModelProvider(registry).get()
    frame = trained.frame  # two days of Time: the first is label-complete (delay 0)
    records = [{**r, "transaction_id": f"g{i}"} for i, r in enumerate(to_records(frame))]
    logs = Logs.at(str(tmp_path / "gate-logs"))
    stream(scorer, records, logs)
    truth = [
        {"transaction_id": r["transaction_id"], "is_fraud": True, "received_at": 1.0}
        for r, y in zip(records, frame["Class"], strict=True)
        if y == 1
    ]
    logs.labels.append(truth, name="labels", when=0.0)
    common = ["--registry", registry.store.uri, "--model-name", MODEL_NAME]
    gate = ["gate", "--log-uri", str(tmp_path / "gate-logs"), "--label-delay-days", "0", "--min-days", "1"]
    # any AP and any speed pass: what is tested is the path (a timing budget fails on a busy machine)
    relaxed = ["--min-frauds", "1", "--margin", "-1", "--max-latency-ratio", "1000"]
    code = registry_cli([*common, *gate, *relaxed, "--apply"])
    said = capsys.readouterr().err
    assert code == 0, said
    assert "average_precision on 1 label-complete days" in said and f"current → {challenger}" in said
    assert registry.pointer().version == challenger and registry.challenger() is None  # type: ignore[union-attr]
    history = registry.history()
    assert [r["action"] for r in history][-4:] == ["challenge", "gate", "promote", "unchallenge"]
    assert history[-3]["passed"] is True and history[-3]["champion"] == champion
    # nothing to compare any more: the gate says so
    with pytest.raises(ModelUnavailableError, match="has no challenger"):
        registry_cli([*common, *gate])
    assert registry_cli([*common, "history"]) == 0
    assert "gate" in capsys.readouterr().out


def test_retrain_uses_logged_features_and_only_labels_known_by_the_cutoff(
    registry: ModelRegistry, trained: TrainedModel, tmp_path: Path
) -> None:
    from fraud_training.retrain import main as retrain_cli
    from fraud_training.retrain import training_set

    scorer = ModelProvider(registry).get()
    frame = trained.frame
    records = [{**r, "transaction_id": f"r{i}"} for i, r in enumerate(to_records(frame))]
    logs = Logs.at(str(tmp_path / "retrain-logs"))
    stream(scorer, records, logs)
    frauds = [r["transaction_id"] for r, y in zip(records, frame["Class"], strict=True) if y == 1]
    late = frauds[0]
    labels = [{"transaction_id": t, "is_fraud": True, "received_at": 1.0} for t in frauds[1:]]
    labels.append({"transaction_id": late, "is_fraud": True, "received_at": 1e12})  # after the cut-off
    logs.labels.append(labels, name="labels", when=0.0)
    cutoff = float(frame["Time"].max())
    data = training_set(logs, list(scorer.feature_names), label_delay_days=0, as_of=cutoff, labels_until=1e9)
    assert len(data.y) == len(frame) and data.y.sum() == len(frauds) - 1  # the late label was not known
    logged = {row["transaction_id"]: row["features"] for row in logs.scoring.read()}
    first = next(row for row in records if row["transaction_id"] == "r0")
    assert logged["r0"]["Amount"] == pytest.approx(first["Amount"], rel=1e-6)

    common = [
        "--registry",
        registry.store.uri,
        "--model-name",
        MODEL_NAME,
        "--log-uri",
        str(tmp_path / "retrain-logs"),
    ]
    assert retrain_cli([*common, "--model", "logreg", "--label-delay-days", "0"]) == 0
    challenger = registry.challenger()
    assert challenger is not None and challenger.version != scorer.version
    manifest = registry.manifest(challenger.version)
    assert manifest.training["source"] == "scoring log" and manifest.reference
    assert manifest.model_type == "logreg" and list(manifest.training["selection"]["candidates"]) == [
        "logreg"
    ]
    assert ModelProvider(registry).get().shadow is not None
    # --model auto (the default): both families fitted, the better validation AP published
    assert retrain_cli([*common, "--label-delay-days", "0"]) == 0
    auto = registry.manifest(registry.challenger().version)  # type: ignore[union-attr]
    candidates = auto.training["selection"]["candidates"]
    assert set(candidates) == {"hgb", "rf"} and auto.model_type == max(candidates, key=candidates.get)
    assert auto.metrics["validation"]["average_precision"] == pytest.approx(candidates[auto.model_type])
