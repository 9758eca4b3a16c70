"""Where the stream publishes: Kafka (kafka-python 3, idempotent producer) or process memory."""

from __future__ import annotations

import json
from typing import Any

from fraud_core.errors import SinkUnavailableError


class InMemorySink:
    """Collects messages per topic: the embedded default and the unit-test fake."""

    def __init__(self) -> None:
        self.topics: dict[str, list[tuple[bytes | None, bytes]]] = {}
        self._pending: list[tuple[str, bytes | None, bytes]] = []

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._pending.append((topic, key, value))

    def flush(self) -> None:
        for topic, key, value in self._pending:
            self.topics.setdefault(topic, []).append((key, value))
        self._pending.clear()

    def values(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(v) for _, v in self.topics.get(topic, [])]


def kafka_security(
    protocol: str, *, mechanism: str | None = None, username: str | None = None, password: str | None = None
) -> dict[str, Any]:
    """kafka-python settings for a TLS and/or SASL/SCRAM connection (certificates: the system CAs)."""
    config: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL"):
        if not (mechanism and username and password):
            raise ValueError(f"{protocol} needs a SASL mechanism, a username and a password")
        config.update(sasl_mechanism=mechanism, sasl_plain_username=username, sasl_plain_password=password)
    return config


class KafkaSink:
    """ResultSink on a real broker, created once per process. ``flush`` waits for every
    acknowledgement or raises."""

    def __init__(self, bootstrap_servers: str, *, timeout_seconds: float = 10.0, **config: Any) -> None:
        from kafka import KafkaProducer  # ~0.35 s of import: only when a broker is configured

        self.timeout_seconds = timeout_seconds
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers.split(","),
            acks="all",
            linger_ms=5,
            batch_size=256 * 1024,
            max_block_ms=int(timeout_seconds * 1000),
            request_timeout_ms=int(timeout_seconds * 1000),
            **config,
        )
        self._futures: list[Any] = []

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        try:
            self._futures.append(self._producer.send(topic, key=key, value=value))
        except Exception as exc:  # kafka-python raises several unrelated types here
            raise SinkUnavailableError(f"kafka send to {topic} failed: {exc}") from exc

    def flush(self) -> None:
        futures, self._futures = self._futures, []
        try:
            self._producer.flush(timeout=self.timeout_seconds)
        except Exception as exc:
            raise SinkUnavailableError(f"kafka flush failed: {exc}") from exc
        failed = [f for f in futures if not f.succeeded()]
        if failed:
            raise SinkUnavailableError(
                f"kafka did not acknowledge {len(failed)} of {len(futures)} messages: {failed[0].exception}"
            )

    def close(self) -> None:
        self._producer.close(timeout=self.timeout_seconds)
