"""Create the stream's topics explicitly (brokers may auto-create them with surprising partition counts)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable

from fraud_core.errors import FraudCoreError


class BrokerUnreachableError(FraudCoreError):
    """No bootstrap server accepts a connection."""


def check_reachable(bootstrap_servers: str, *, timeout: float = 3.0) -> None:
    """Fail in seconds, with the addresses tried, when no bootstrap server accepts a TCP
    connection (kafka-python would retry for 30 s before raising a timeout)."""
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
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","), request_timeout_ms=10_000)
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names if n not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # created concurrently by someone else
                admin.create_topics(wanted, timeout_ms=10_000)
    finally:
        admin.close()
