"""The loop in the live stream path: tansu → local runner → stream function → real Redis, the
registry changing under a running consumer — a challenger retrained from the replayed log,
scored in shadow, promoted by the gate, picked up within the refresh interval."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

import pandas as pd
from kafka import KafkaProducer

from fraud_core.event_log import Logs
from fraud_core.labels import LABEL_TYPE
from fraud_core.registry import LocalModelStore, ModelRegistry
from fraud_devstack.services import Service, start_process, start_redis
from fraud_devstack.streaming import runner_argv
from fraud_devstack.topics import ensure_topics
from fraud_training.data import to_records
from fraud_training.registry import main as registry_cli
from fraud_training.retrain import main as retrain_cli
from tests.conftest import MODEL_NAME, TrainedModel

REFRESH = 1.0


def _send(broker: Service, topic: str, records: list[dict[str, object]]) -> None:
    producer = KafkaProducer(bootstrap_servers=[broker.url], acks="all")
    for r in records:
        producer.send(topic, value=json.dumps(r).encode())
    producer.flush(30)
    producer.close()


def _logged(logs: Logs, prefix: str) -> list[dict[str, object]]:
    return [row for row in logs.scoring.read() if str(row["transaction_id"]).startswith(prefix)]


def _labelled(logs: Logs, prefix: str) -> list[dict[str, object]]:
    return [row for row in logs.labels.read() if str(row["transaction_id"]).startswith(prefix)]


def _phase(frame: pd.DataFrame, name: str, day: int, frauds: int, legit: int, skip: int) -> pd.DataFrame:
    """``frauds`` + ``legit`` rows of ``day`` (Time in days), after the first ``skip`` of each kind."""
    rows = frame[(frame["Time"] // 86_400) == day]
    picked = pd.concat(
        [
            rows[rows["Class"] == 1].iloc[skip : skip + frauds],
            rows[rows["Class"] == 0].iloc[skip : skip + legit],
        ]
    )
    return picked.assign(phase=name)


def test_challenger_retrained_from_the_log_scored_in_shadow_and_promoted_by_the_gate(
    trained: TrainedModel, kafka_broker: Service, tmp_path: Path
) -> None:
    # GIVEN the session's model as champion, and three phases of labelled transactions: the
    # first spans both days of Time (retraining needs two label-complete days), the shadow phase
    # lies in day 0, which the first phase's day-1 rows make label-complete (label delay 0 here)
    root = tmp_path / "registry"
    shutil.copytree(trained.registry_dir, root)
    registry = ModelRegistry(LocalModelStore(root), MODEL_NAME)
    champion = registry.pointer().version  # type: ignore[union-attr]
    frame = trained.frame
    parts = {
        "alone": pd.concat([_phase(frame, "alone", 0, 8, 42, 0), _phase(frame, "alone", 1, 8, 42, 0)]),
        "shadow": _phase(frame, "shadow", 0, 8, 92, 8),
        "promoted": _phase(frame, "promoted", 1, 0, 100, 42),
    }
    phases = {
        name: [{**r, "transaction_id": f"{name}-{i}"} for i, r in enumerate(to_records(part))]
        for name, part in parts.items()
    }
    labels = {
        name: [
            {"type": LABEL_TYPE, "transaction_id": r["transaction_id"], "is_fraud": int(y)}
            for r, y in zip(phases[name], part["Class"], strict=True)
        ]
        for name, part in parts.items()
    }
    topic = f"shadow-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_broker.url, [topic], partitions=1)
    store = start_redis(log_dir=tmp_path)
    logs_dir = tmp_path / "logs"
    env = {
        **os.environ,
        "FRAUD_REGISTRY_URI": str(root),
        "FRAUD_MODEL_NAME": MODEL_NAME,
        "FRAUD_MODEL_REFRESH_SECONDS": str(REFRESH),
        "FRAUD_REDIS_URL": store.url,
        "FRAUD_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.url,
        "FRAUD_SCORES_TOPIC": "",
        "FRAUD_ALERTS_TOPIC": f"{topic}-alerts",
        "FRAUD_DLQ_TOPIC": f"{topic}-dlq",
        "FRAUD_LOG_URI": str(logs_dir),
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    logs = Logs.at(str(logs_dir))
    where = ["--registry", str(root), "--model-name", MODEL_NAME]
    argv = runner_argv(
        bootstrap_servers=kafka_broker.url, topic=topic, group_id=f"g-{topic}", batch_size=50, idle_exit=20
    )
    log = tmp_path / "runner.log"
    try:
        with log.open("wb") as out:
            runner = start_process(argv, env=env, stdout=out)

            def through(name: str) -> None:
                """The phase's transactions scored, then its labels recorded in the label log."""
                deadline = time.monotonic() + 120
                for wanted, read, batch in (
                    (phases[name], lambda: _logged(logs, name), phases[name]),
                    (labels[name], lambda: _labelled(logs, name), labels[name]),
                ):
                    _send(kafka_broker, topic, batch)
                    while len(read()) < len(wanted) and time.monotonic() < deadline and runner.poll() is None:
                        time.sleep(0.2)
                    assert len(read()) == len(wanted), log.read_text()[-3000:]

            # WHEN the loop runs: retrain from the log into shadow, shadow traffic, gate --apply
            through("alone")
            assert retrain_cli([*where, "--log-uri", str(logs_dir), "--label-delay-days", "0"]) == 0
            challenger = registry.challenger().version  # type: ignore[union-attr]
            time.sleep(REFRESH * 2.5)
            through("shadow")
            # (the gate's judgement is unit-tested; here any AP and any speed pass, what is tested
            # is the path: a timing budget would fail on a busy machine, not on a wrong path)
            gate = ["gate", "--log-uri", str(logs_dir), "--label-delay-days", "0", "--min-days", "1"]
            relaxed = ["--min-frauds", "1", "--margin", "-1", "--max-latency-ratio", "1000"]
            assert registry_cli([*where, *gate, *relaxed, "--apply"]) == 0
            time.sleep(REFRESH * 2.5)
            through("promoted")
            assert runner.wait(120) == 0, log.read_text()[-3000:]
    finally:
        store.stop()

    # THEN the challenger was trained on the logged first phase only, each phase was scored by
    # the models the registry named, and nothing failed or was lost
    manifest = registry.manifest(challenger)
    assert manifest.training["source"] == "scoring log" and manifest.training["retrained_from"] == champion
    assert sum(manifest.training["rows"].values()) == 100
    assert sum(manifest.training["frauds"].values()) == 16
    alone, shadow, promoted = (_logged(logs, p) for p in ("alone", "shadow", "promoted"))
    assert len(alone) == len(shadow) == len(promoted) == 100
    assert {r["model_version"] for r in alone} == {champion} and all("challenger" not in r for r in alone)
    assert {r["model_version"] for r in shadow} == {champion}
    assert {r["challenger"]["model_version"] for r in shadow} == {challenger}  # type: ignore[index]
    assert any(r["challenger"]["fraud_score"] != r["fraud_score"] for r in shadow)  # type: ignore[index]
    assert {r["model_version"] for r in promoted} == {challenger} and all(
        "challenger" not in r for r in promoted
    )
    gated = [r for r in registry.history() if r["action"] == "gate"]
    assert len(gated) == 1 and gated[0]["passed"] is True and gated[0]["metrics"]["days"] == ["1970-01-01"]
    assert registry.challenger() is None
    summary = log.read_text().splitlines()[-1]
    assert "0 retried batches" in summary and "scored 300" in summary, summary
