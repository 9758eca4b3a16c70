"""Drive the real stream path (producer → tansu → local runner → handler → Redis) and audit it."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import redis
from kafka import KafkaConsumer, KafkaProducer

from fraud_core.online import keys
from fraud_core.stream.state import RedisStreamState
from fraud_devstack.services import kill_process, start_process
from fraud_devstack.streaming import producer_argv, runner_argv
from fraud_devstack.topics import ensure_topics

CARDS = 37


def with_cards(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.drop(columns=["Class"], errors="ignore").copy()
    out["card_id"] = [f"c_{i % CARDS}" for i in range(len(out))]
    return out.reset_index(drop=True)


@dataclass
class Audit:
    """What the online store and the topics say after a run."""

    events_in: int
    scored: int
    lost: int
    double_counted: int
    not_done: int
    alerts: int
    distinct_alerts: int
    dlq: int

    @property
    def exactly_once(self) -> bool:
        return self.lost == 0 and self.double_counted == 0 and self.not_done == 0


class StreamRig:
    """One scenario's topics, environment and runners, on shared broker and given Redis."""

    def __init__(
        self,
        *,
        registry_dir: Path,
        model_name: str,
        broker_url: str,
        redis_url: str,
        workdir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.topics = {k: f"{k}-{suffix}" for k in ("transactions", "scores", "alerts", "dlq")}
        self.broker_url = broker_url
        self.redis_url = redis_url
        self.workdir = workdir
        ensure_topics(broker_url, self.topics.values())
        self.env = {
            **os.environ,
            "FRAUD_REGISTRY_URI": str(registry_dir),
            "FRAUD_MODEL_NAME": model_name,
            "FRAUD_REDIS_URL": redis_url,
            "FRAUD_REDIS_TIMEOUT_SECONDS": "0.5",
            "FRAUD_KAFKA_BOOTSTRAP_SERVERS": broker_url,
            "FRAUD_SCORES_TOPIC": self.topics["scores"],
            "FRAUD_ALERTS_TOPIC": self.topics["alerts"],
            "FRAUD_DLQ_TOPIC": self.topics["dlq"],
            "POWERTOOLS_LOG_LEVEL": "INFO",
            **(extra_env or {}),
        }
        self.logs: list[Path] = []

    def produce_csv(self, csv: Path) -> None:
        argv = producer_argv(csv, bootstrap_servers=self.broker_url, topic=self.topics["transactions"])
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=1800, check=False)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])

    def produce_raw(self, values: Iterable[bytes]) -> int:
        producer = KafkaProducer(bootstrap_servers=[self.broker_url], max_request_size=4 * 1024 * 1024)
        n = 0
        for value in values:
            producer.send(self.topics["transactions"], key=b"raw", value=value)
            n += 1
        producer.flush(60)
        producer.close()
        return n

    def start_runner(self, *, batch_size: int = 200, idle_exit: float = 5) -> subprocess.Popen[bytes]:
        log = self.workdir / f"runner-{len(self.logs)}.log"
        self.logs.append(log)
        argv = runner_argv(
            bootstrap_servers=self.broker_url,
            topic=self.topics["transactions"],
            group_id=f"g-{self.topics['transactions']}",
            batch_size=batch_size,
            idle_exit=idle_exit,
        )
        with log.open("wb") as out:
            return start_process(argv, env=self.env, stdout=out)

    def run_to_completion(
        self, *, batch_size: int = 200, idle_exit: float = 5, timeout: float = 1800
    ) -> None:
        proc = self.start_runner(batch_size=batch_size, idle_exit=idle_exit)
        if proc.wait(timeout) != 0:
            raise RuntimeError(self.logs[-1].read_text()[-3000:])

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        kill_process(proc)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def seen_count(self) -> int:
        return sum(1 for _ in self.client().scan_iter(match="fraud:seen:*", count=5000))

    def read_topic(
        self, name: str, *, idle_seconds: float = 4.0, limit_seconds: float = 120.0
    ) -> list[dict[str, Any]]:
        return read_topic(
            self.broker_url, self.topics[name], idle_seconds=idle_seconds, limit_seconds=limit_seconds
        )

    def audit(self, transaction_ids: list[str], cards: dict[str, int]) -> Audit:
        r = self.client()
        pipe = r.pipeline(transaction=False)
        for t in transaction_ids:
            pipe.exists(keys.RESULT(t))
        stored = sum(1 for a in pipe.execute() if a)
        states = RedisStreamState(r).dedupe_states(transaction_ids)
        not_done = sum(1 for s in states if s != keys.Dedupe.DONE)
        counted = {c: int(r.hget(keys.CARD(c), "tx_count") or 0) for c in cards}
        double = sum(max(counted[c] - n, 0) for c, n in cards.items())
        alerts = self.read_topic("alerts")
        dlq = self.read_topic("dlq")
        return Audit(
            events_in=len(transaction_ids),
            scored=stored,
            lost=len(transaction_ids) - stored,
            double_counted=double,
            not_done=not_done,
            alerts=len(alerts),
            distinct_alerts=len({a["transaction_id"] for a in alerts}),
            dlq=len(dlq),
        )

    def logs_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())


def read_topic(
    broker_url: str, topic: str, *, idle_seconds: float = 4.0, limit_seconds: float = 120.0
) -> list[dict[str, Any]]:
    """Every JSON message of ``topic`` from the beginning, until ``idle_seconds`` pass without one."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=[broker_url],
        group_id=f"r-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
    )
    out: list[dict[str, Any]] = []
    start = last = time.monotonic()
    while time.monotonic() - last < idle_seconds and time.monotonic() - start < limit_seconds:
        polled = consumer.poll(timeout_ms=500)
        if not consumer.assignment():
            last = time.monotonic()  # still joining the group: not idle yet
        for batch in polled.values():
            out.extend(json.loads(r.value) for r in batch)
            last = time.monotonic()
    consumer.close()
    return out


def rss_bytes(pid: int) -> int:
    """Resident set size of a process and its children's leader (Linux /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def fuzz_openapi(base_url: str, *, max_examples: int) -> tuple[Counter[int], list[str]]:
    """Schemathesis over the app's own OpenAPI spec, positive and negative cases mixed.

    Returns the status counts and a description of every 5xx.
    """
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]

    def fuzz(operation: Any) -> None:
        @settings(
            max_examples=max_examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(data=st.data())
        def exercise(data: st.DataObject) -> None:
            mode = data.draw(st.sampled_from(modes))
            case = data.draw(operation.as_strategy(generation_mode=mode))
            response = case.call(base_url=base_url, timeout=10)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                server_errors.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {case.body!r:.300}"
                )

        exercise()

    for result in schema.get_all_operations():
        fuzz(result.ok())
    return statuses, server_errors
