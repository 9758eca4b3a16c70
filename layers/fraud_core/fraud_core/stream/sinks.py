"""Where the stream publishes: Kafka (confluent-kafka, idempotent producer) or process memory."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fraud_core.errors import SinkUnavailableError

logger = logging.getLogger(__name__)


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
    """librdkafka settings for a TLS and/or SASL/SCRAM connection (certificates: the system CAs,
    found by probing the usual paths: the wheel's OpenSSL is linked statically)."""
    config: dict[str, Any] = {"security.protocol": protocol}
    if protocol.endswith("SSL"):
        config["ssl.ca.location"] = "probe"
    if protocol.startswith("SASL"):
        if not (mechanism and username and password):
            raise ValueError(f"{protocol} needs a SASL mechanism, a username and a password")
        config.update({"sasl.mechanism": mechanism, "sasl.username": username, "sasl.password": password})
    return config


class KafkaSink:
    """ResultSink on a real broker (confluent-kafka, i.e. librdkafka: idempotent, acks=all),
    created once per process; also the producer of the local tools. ``flush`` waits for every
    acknowledgement or raises, and drops what was not delivered, so a redelivered batch is the
    only copy that gets published again."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        timeout_seconds: float = 10.0,
        linger_ms: int = 5,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        from confluent_kafka import Producer

        self.timeout_seconds = timeout_seconds
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": linger_ms,
                "batch.size": 1024 * 1024,
                "message.timeout.ms": int(timeout_seconds * 1000),
                "socket.timeout.ms": int(timeout_seconds * 1000),
                "logger": logger,  # librdkafka's own log lines, through Python logging (not raw stderr)
                **(security or {}),
            }
        )
        self._pending = 0
        self._errors: list[str] = []
        self.delivered = 0
        """Messages acknowledged by the broker since the sink was created."""

    def _on_delivery(self, error: Any, _message: Any) -> None:
        if error is None:
            self.delivered += 1
        else:
            self._errors.append(str(error))

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
                break
            except BufferError:  # the local queue is full: serve acknowledgements, then retry
                self._producer.poll(0.05)
            except Exception as exc:  # KafkaException: unknown topic, oversize message, ...
                raise SinkUnavailableError(f"kafka send to {topic} failed: {exc}") from exc
        self._pending += 1

    def flush(self) -> None:
        pending, self._pending = self._pending, 0
        left = self._producer.flush(self.timeout_seconds)
        if left:
            self._producer.purge(in_queue=True, in_flight=False)  # not sent: the batch is redelivered
            self._producer.poll(0)
        errors, self._errors = self._errors, []
        if left or errors:
            why = f"no acknowledgement within {self.timeout_seconds:g} s" if left else errors[0]
            raise SinkUnavailableError(
                f"kafka did not acknowledge {max(left, len(errors))} of {pending} messages: {why}"
            )

    def close(self) -> None:
        self._producer.flush(self.timeout_seconds)
