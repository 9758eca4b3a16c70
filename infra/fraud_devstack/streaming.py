"""Command lines of the stream CLIs, shared by the integration tests and the benchmarks."""

from __future__ import annotations

import sys
from pathlib import Path


def producer_argv(csv: Path, *, bootstrap_servers: str, topic: str) -> list[str]:
    """`fraud_devstack.producer` sending every row of ``csv`` to ``topic`` (no progress bar)."""
    return [
        sys.executable,
        "-m",
        "fraud_devstack.producer",
        "--csv",
        str(csv),
        "--topic",
        topic,
        "--bootstrap-servers",
        bootstrap_servers,
        "--quiet",
    ]


def runner_argv(
    *,
    bootstrap_servers: str,
    topic: str,
    group_id: str,
    batch_size: int,
    idle_exit: float,
    stats: Path | None = None,
) -> list[str]:
    """`fraud_devstack.local_runner` in summary mode, stopping after ``idle_exit`` idle seconds
    (writing its totals to ``stats`` when given)."""
    return [
        sys.executable,
        "-m",
        "fraud_devstack.local_runner",
        "--topic",
        topic,
        "--bootstrap-servers",
        bootstrap_servers,
        "--group-id",
        group_id,
        "--batch-size",
        str(batch_size),
        "--idle-exit",
        str(idle_exit),
        "--quiet",
        *(["--stats", str(stats)] if stats else []),
    ]
