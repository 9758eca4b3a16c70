"""A per-client token bucket (per API process): bounds how fast one client can post labels.

API Gateway's stage throttling bounds the whole API; this bounds one principal inside one
warm process, so a leaked labels key cannot flood a terminal's fraud set in one burst.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, *, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str, n: int = 1) -> float:
        """Take ``n`` tokens for ``client``: 0 when allowed, else the seconds to wait before retrying."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - at) * self.rate)
            if n > tokens:
                self._buckets[client] = (tokens, now)
                return (n - tokens) / self.rate
            self._buckets[client] = (tokens - n, now)
            return 0.0
