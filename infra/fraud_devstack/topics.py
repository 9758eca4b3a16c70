"""Create the stream's topics explicitly (brokers may auto-create them with surprising partition counts)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from typing import Any

from fraud_core.errors import FraudCoreError

logger = logging.getLogger(__name__)


class BrokerUnreachableError(FraudCoreError):
    """No bootstrap server accepts a connection."""


def check_reachable(bootstrap_servers: str, *, timeout: float = 3.0) -> None:
    """Fail in seconds, with the addresses tried, when no bootstrap server accepts a TCP
    connection (a Kafka client would keep retrying for its whole timeout)."""
    tried = []
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
                return
        except (OSError, ValueError) as exc:
            tried.append(f"{server.strip()} ({exc.strerror or exc if isinstance(exc, OSError) else exc})")
    raise BrokerUnreachableError(
        f"cannot reach the Kafka broker at {', '.join(tried)}: is it running? `make stack-status` "
        "shows the local stack, or pass --bootstrap-servers"
    )


def ensure_topics(bootstrap_servers: str, names: Iterable[str], *, partitions: int = 2) -> None:
    check_reachable(bootstrap_servers)
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    config: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, "logger": logger}
    admin = AdminClient(config)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names if n not in existing
    ]
    if not wanted:
        return
    for future in admin.create_topics(wanted, request_timeout=10).values():
        try:
            future.result(timeout=15)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # created concurrently: fine
                raise
