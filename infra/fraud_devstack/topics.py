"""Create the stream's topics explicitly (brokers may auto-create them with surprising partition counts)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable


def ensure_topics(bootstrap_servers: str, names: Iterable[str], *, partitions: int = 2) -> None:
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
