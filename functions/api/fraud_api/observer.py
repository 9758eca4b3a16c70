"""What the app reports about itself, behind a port so the Lambda handler can plug in Powertools metrics."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Protocol

logger = logging.getLogger(__name__)


class Observer(Protocol):
    def request(self, *, route: str, status: int, latency_ms: float) -> None: ...

    def decisions(self, decisions: Iterable[str]) -> None: ...

    def degraded(self, reason: str) -> None: ...


class LoggingObserver:
    """Default observer (uvicorn, tests): counts in memory, logs degradations."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def request(self, *, route: str, status: int, latency_ms: float) -> None:
        self.counts[f"status_{status // 100}xx"] += 1

    def decisions(self, decisions: Iterable[str]) -> None:
        self.counts.update(f"decision_{d}" for d in decisions)

    def degraded(self, reason: str) -> None:
        self.counts["degraded"] += 1
        logger.warning("degraded: %s", reason)
