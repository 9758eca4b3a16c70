"""The shadow challenger and a promotion in the live stream path: tansu → local runner → stream
function → real Redis, the registry changing under a running consumer."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

from kafka import KafkaProducer

from fraud_core.event_log import Logs
from fraud_core.registry import LocalModelStore, ModelRegistry
from fraud_devstack.services import Service, start_process, start_redis
from fraud_devstack.streaming import runner_argv
from fraud_devstack.topics import ensure_topics
from fraud_training.data import to_records
from fraud_training.train import TrainConfig, train
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


def test_challenger_scored_in_shadow_then_promoted_without_a_failed_batch(
    trained: TrainedModel, kafka_broker: Service, tmp_path: Path
) -> None:
    # GIVEN the session's model as champion and a logistic regression published beside it
    root = tmp_path / "registry"
    shutil.copytree(trained.registry_dir, root)
    registry = ModelRegistry(LocalModelStore(root), MODEL_NAME)
    champion = registry.pointer().version  # type: ignore[union-attr]
    challenger = train(
        TrainConfig(
            data=trained.data, model="logreg", registry=str(root), model_name=MODEL_NAME,
            out_dir=tmp_path / "runs", promote="never", synthetic=True,
        )
    ).manifest.version  # fmt: skip
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
    rows = to_records(trained.frame.head(300))
    phases = {p: [{**r, "transaction_id": f"{p}-{i}"} for i, r in enumerate(rows[k * 100 : (k + 1) * 100])]
              for k, p in enumerate(("alone", "shadow", "promoted"))}  # fmt: skip
    logs = Logs.at(str(logs_dir))
    argv = runner_argv(
        bootstrap_servers=kafka_broker.url, topic=topic, group_id=f"g-{topic}", batch_size=50, idle_exit=8
    )
    log = tmp_path / "runner.log"
    try:
        with log.open("wb") as out:
            runner = start_process(argv, env=env, stdout=out)

            def wait_for(prefix: str) -> None:
                deadline = time.monotonic() + 120
                while (
                    len(_logged(logs, prefix)) < 100 and time.monotonic() < deadline and runner.poll() is None
                ):
                    time.sleep(0.2)

            # WHEN transactions flow while the registry changes: challenger set, then promoted
            _send(kafka_broker, topic, phases["alone"])
            wait_for("alone")
            registry.challenge(challenger)
            time.sleep(REFRESH * 2.5)
            _send(kafka_broker, topic, phases["shadow"])
            wait_for("shadow")
            registry.promote(challenger)
            registry.unchallenge()
            time.sleep(REFRESH * 2.5)
            _send(kafka_broker, topic, phases["promoted"])
            wait_for("promoted")
            assert runner.wait(120) == 0, log.read_text()[-3000:]
    finally:
        store.stop()

    # THEN each phase was scored by the models the registry named, nothing failed or was lost
    alone, shadow, promoted = (_logged(logs, p) for p in ("alone", "shadow", "promoted"))
    assert len(alone) == len(shadow) == len(promoted) == 100
    assert {r["model_version"] for r in alone} == {champion} and all("challenger" not in r for r in alone)
    assert {r["model_version"] for r in shadow} == {champion}
    assert {r["challenger"]["model_version"] for r in shadow} == {challenger}  # type: ignore[index]
    assert any(r["challenger"]["fraud_score"] != r["fraud_score"] for r in shadow)  # type: ignore[index]
    assert {r["model_version"] for r in promoted} == {challenger} and all(
        "challenger" not in r for r in promoted
    )
    summary = log.read_text().splitlines()[-1]
    assert "0 retried batches" in summary and "scored 300" in summary, summary
