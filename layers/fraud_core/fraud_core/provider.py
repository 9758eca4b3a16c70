"""Load the current model once per process and pick up promotions, keeping the last good model."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fraud_core.errors import ModelUnavailableError
from fraud_core.manifest import ONNX_FILE, ModelManifest
from fraud_core.model import OnnxModel
from fraud_core.registry import ModelRegistry, Pointer
from fraud_core.scorer import Scorer, Shadow

logger = logging.getLogger(__name__)


def load_scorer(registry: ModelRegistry, *, threads: int = 1, top_k: int = 3) -> Scorer:
    """Verify and load the version ``current.json`` points at (without its challenger)."""
    _, manifest = registry.current_manifest()
    return Scorer(manifest, _load_model(registry, manifest, threads), top_k=top_k)


def _load_model(registry: ModelRegistry, manifest: ModelManifest, threads: int) -> OnnxModel:
    onnx_bytes = registry.read_verified(manifest, ONNX_FILE)
    return OnnxModel(onnx_bytes, n_features=len(manifest.features), threads=threads)


def load_shadow(registry: ModelRegistry, pointer: Pointer, scorer: Scorer, *, threads: int = 1) -> Shadow:
    """Verify and load the challenger ``pointer`` names, for ``scorer``'s data shape."""
    manifest = registry.manifest(pointer.version, expected_sha256=pointer.manifest_sha256)
    return Shadow.of(manifest, _load_model(registry, manifest, threads), scorer.shape)


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    version: str | None
    registry: str
    last_error: str | None
    checked_at: float | None
    challenger: str | None = None
    challenger_error: str | None = None
    """Why the challenger named by ``challenger.json`` is not scored (the champion serves on)."""


class ModelProvider:
    """Thread-safe holder of the current Scorer.

    The pointer is re-read at most every ``refresh_seconds`` so a warm Lambda picks up a
    promoted (or rolled back) version. If the new version cannot be loaded the last good one
    keeps serving and the error is reported by :meth:`status` (e.g. on ``/ready``).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        refresh_seconds: float = 60.0,
        threads: int = 1,
        top_k: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.refresh_seconds = refresh_seconds
        self._threads = threads
        self._top_k = top_k
        self._clock = clock
        self._lock = threading.Lock()
        self._scorer: Scorer | None = None
        self._checked_at: float | None = None
        self._last_error: str | None = None
        self._challenger_error: str | None = None
        self._challenger_seen: str | None = None

    def get(self) -> Scorer:
        """The current Scorer; raises ModelUnavailableError only if no model was ever loaded."""
        now = self._clock()
        if self._scorer is not None and not self._due(now):
            return self._scorer
        with self._lock:
            if self._due(now):  # another thread may have refreshed while we waited
                self._refresh(now)
        if self._scorer is None:
            raise ModelUnavailableError(self._last_error or "model not loaded")
        return self._scorer

    def _due(self, now: float) -> bool:
        if self._checked_at is None:
            return True
        # Without any model, retry sooner, but still not on every request (a 503 storm must
        # not become an S3 request storm).
        interval = self.refresh_seconds if self._scorer is not None else min(self.refresh_seconds, 5.0)
        return now - self._checked_at >= interval

    def _refresh(self, now: float) -> None:
        self._checked_at = now
        try:
            pointer = self.registry.pointer()
            champion = self._scorer
            if champion is None or pointer is None or pointer.version != champion.version:
                champion = load_scorer(self.registry, threads=self._threads, top_k=self._top_k)
        except Exception as exc:  # any failure keeps the last good model serving
            self._last_error = f"{type(exc).__name__}: {exc}"
            logger.error("model refresh failed", extra={"error": self._last_error})
            return
        self._last_error = None
        scorer = self._with_challenger(champion)
        if self._scorer is not None and scorer.version != self._scorer.version:
            logger.info("model switched", extra={"from": self._scorer.version, "to": scorer.version})
        self._scorer = scorer

    def _with_challenger(self, champion: Scorer) -> Scorer:
        """``champion`` with the challenger ``challenger.json`` names in shadow; a challenger that
        cannot be loaded is dropped and reported, never in the way of the champion."""
        try:
            pointer = self.registry.challenger()
        except Exception as exc:
            pointer, self._challenger_error = None, f"{type(exc).__name__}: {exc}"
        else:
            self._challenger_error = None
        self._challenger_seen = pointer.version if pointer else None
        current = champion.shadow
        if pointer is None:
            shadow = None
        elif current is not None and current.manifest.version == pointer.version:
            shadow = current
        else:
            try:
                shadow = load_shadow(self.registry, pointer, champion, threads=self._threads)
            except Exception as exc:
                shadow, self._challenger_error = None, f"{type(exc).__name__}: {exc}"
                logger.error("challenger not loaded", extra={"error": self._challenger_error})
        if shadow is current:
            return champion
        return Scorer(champion.manifest, champion.model, top_k=self._top_k, shadow=shadow)

    def status(self) -> ProviderStatus:
        return ProviderStatus(
            version=self._scorer.version if self._scorer else None,
            registry=self.registry.store.uri,
            last_error=self._last_error,
            checked_at=self._checked_at,
            challenger=self._challenger_seen,
            challenger_error=self._challenger_error,
        )
