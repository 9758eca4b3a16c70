"""Versioned model registry on S3 or a local directory, with sha256 verification before loading.

Layout (``ROOT`` is ``s3://bucket/prefix`` or a directory)::

    ROOT/<model_name>/<version>/manifest.json, model.onnx, model.joblib, metrics.json, ...
    ROOT/<model_name>/current.json     pointer: version + sha256 of its manifest + history
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fraud_core.artifact_stores import (
    ArtifactNotFoundError,
    LocalModelStore,
    ModelStore,
    S3ModelStore,
    store_from_uri,
)
from fraud_core.errors import ArtifactIntegrityError, ModelUnavailableError
from fraud_core.manifest import MANIFEST_FILE, FileEntry, ModelManifest, sha256_hex

if TYPE_CHECKING:
    pass

__all__ = [
    "ArtifactNotFoundError",
    "LocalModelStore",
    "ModelRegistry",
    "ModelStore",
    "Pointer",
    "S3ModelStore",
    "open_registry",
    "store_from_uri",
]

logger = logging.getLogger(__name__)

POINTER_FILE = "current.json"
HISTORY_LIMIT = 20


def open_registry(uri: str, model_name: str) -> ModelRegistry:
    """The registry of ``model_name`` at ``uri`` (``s3://bucket/prefix`` or a directory)."""
    return ModelRegistry(store_from_uri(uri), model_name)


@dataclass(frozen=True, slots=True)
class Pointer:
    """Content of ``current.json``."""

    version: str
    manifest_sha256: str
    promoted_at: str
    history: tuple[dict[str, str], ...] = ()

    def to_json(self, model_name: str) -> bytes:
        body = {
            "model_name": model_name,
            "version": self.version,
            "manifest_sha256": self.manifest_sha256,
            "promoted_at": self.promoted_at,
            "history": list(self.history),
        }
        return json.dumps(body, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Pointer:
        body = json.loads(data)
        return cls(
            version=body["version"],
            manifest_sha256=body["manifest_sha256"],
            promoted_at=body.get("promoted_at", ""),
            history=tuple(body.get("history", [])),
        )


@dataclass(frozen=True, slots=True)
class FileCheck:
    """Result of re-checking one file of a version."""

    file: str
    status: str
    """``ok``, ``missing`` or ``mismatch``."""
    detail: str = ""


class ModelRegistry:
    """Publish, list, verify, promote and roll back versions of one model."""

    def __init__(self, store: ModelStore, model_name: str) -> None:
        self.store = store
        self.model_name = model_name

    def _key(self, *parts: str) -> str:
        return "/".join((self.model_name, *parts))

    # -- writing ---------------------------------------------------------------------------
    def publish(
        self, manifest: ModelManifest, files: Mapping[str, bytes], *, promote: bool = True
    ) -> ModelManifest:
        """Write every file, then the manifest that checksums them, then (optionally) the pointer.

        The order matters: a reader that follows the pointer never sees a manifest whose files
        are not all written yet.
        """
        entries = {name: FileEntry(sha256=sha256_hex(data), bytes=len(data)) for name, data in files.items()}
        final = manifest.model_copy(update={"files": entries})
        for name, data in files.items():
            self.store.write(self._key(final.version, name), data)
        self.store.write(self._key(final.version, MANIFEST_FILE), final.model_dump_json(indent=2).encode())
        if promote:
            self.promote(final.version)
        return final

    def promote(self, version: str) -> Pointer:
        """Point ``current.json`` at ``version`` after verifying all its files."""
        problems = [c for c in self.verify(version) if c.status != "ok"]
        if problems:
            raise ArtifactIntegrityError(
                f"refusing to promote {self.model_name}/{version}: "
                + "; ".join(f"{c.file} {c.status} {c.detail}".strip() for c in problems)
            )
        manifest_sha = sha256_hex(self.store.read(self._key(version, MANIFEST_FILE)))
        previous = self.pointer()
        history: tuple[dict[str, str], ...] = ()
        if previous is not None and previous.version != version:
            entry = {
                "version": previous.version,
                "manifest_sha256": previous.manifest_sha256,
                "promoted_at": previous.promoted_at,
            }
            history = (entry, *previous.history)[:HISTORY_LIMIT]
        elif previous is not None:
            history = previous.history
        pointer = Pointer(version, manifest_sha, _now(), history)
        self.store.write(self._key(POINTER_FILE), pointer.to_json(self.model_name))
        logger.info("promoted model", extra={"model": self.model_name, "version": version})
        return pointer

    def rollback(self) -> Pointer:
        """Re-point ``current.json`` at the previously promoted version."""
        current = self.pointer()
        if current is None or not current.history:
            raise ModelUnavailableError(f"{self.model_name}: no earlier version to roll back to")
        target, *rest = current.history
        version = target["version"]
        problems = [c for c in self.verify(version) if c.status != "ok"]
        if problems:
            raise ArtifactIntegrityError(f"refusing to roll back to {version}: {problems}")
        pointer = Pointer(
            version,
            sha256_hex(self.store.read(self._key(version, MANIFEST_FILE))),
            _now(),
            tuple(rest),
        )
        self.store.write(self._key(POINTER_FILE), pointer.to_json(self.model_name))
        return pointer

    # -- reading ---------------------------------------------------------------------------
    def versions(self) -> list[str]:
        return self.store.list_dirs(self.model_name)

    def pointer(self) -> Pointer | None:
        try:
            return Pointer.from_json(self.store.read(self._key(POINTER_FILE)))
        except ArtifactNotFoundError:
            return None
        except (ValueError, KeyError) as exc:
            raise ArtifactIntegrityError(
                f"{self.store.uri}/{self._key(POINTER_FILE)} is corrupt: {exc}"
            ) from exc

    def manifest(self, version: str, *, expected_sha256: str | None = None) -> ModelManifest:
        raw = self.store.read(self._key(version, MANIFEST_FILE))
        if expected_sha256 is not None and sha256_hex(raw) != expected_sha256:
            raise ArtifactIntegrityError(
                f"{self.model_name}/{version}/{MANIFEST_FILE}: sha256 differs from current.json"
            )
        try:
            return ModelManifest.model_validate_json(raw)
        except ValueError as exc:
            raise ArtifactIntegrityError(
                f"{self.model_name}/{version}/{MANIFEST_FILE} is invalid: {exc}"
            ) from exc

    def verify(self, version: str) -> list[FileCheck]:
        """Re-check every file of ``version`` against its manifest."""
        try:
            manifest = self.manifest(version)
        except ArtifactNotFoundError:
            return [FileCheck(MANIFEST_FILE, "missing", f"no version {version!r}")]
        checks = []
        for name, entry in sorted(manifest.files.items()):
            try:
                data = self.store.read(self._key(version, name))
            except ArtifactNotFoundError:
                checks.append(FileCheck(name, "missing"))
                continue
            actual = sha256_hex(data)
            if actual != entry.sha256:
                checks.append(
                    FileCheck(name, "mismatch", f"expected {entry.sha256[:12]}…, got {actual[:12]}…")
                )
            else:
                checks.append(FileCheck(name, "ok"))
        return checks

    def read_verified(self, manifest: ModelManifest, name: str) -> bytes:
        """Bytes of one artifact file, refused unless its sha256 matches the manifest.

        Always call this before deserializing: joblib files are pickles and run code on load.
        """
        entry = manifest.files.get(name)
        if entry is None:
            raise ArtifactIntegrityError(
                f"{self.model_name}/{manifest.version}: manifest lists no file {name!r}"
            )
        try:
            data = self.store.read(self._key(manifest.version, name))
        except ArtifactNotFoundError as exc:
            raise ArtifactIntegrityError(f"{self.model_name}/{manifest.version}/{name} is missing") from exc
        if sha256_hex(data) != entry.sha256:
            raise ArtifactIntegrityError(
                f"{self.model_name}/{manifest.version}/{name}: sha256 mismatch "
                f"(expected {entry.sha256}, got {sha256_hex(data)}); refusing to load it"
            )
        return data

    def current_manifest(self) -> tuple[Pointer, ModelManifest]:
        pointer = self.pointer()
        if pointer is None:
            raise ModelUnavailableError(
                f"no model published: {self.store.uri}/{self._key(POINTER_FILE)} does not exist "
                "(run `make demo` or `python -m fraud_training.train`)"
            )
        try:
            return pointer, self.manifest(pointer.version, expected_sha256=pointer.manifest_sha256)
        except ArtifactNotFoundError as exc:
            raise ArtifactIntegrityError(
                f"current.json points at {pointer.version!r}, which has no manifest in {self.store.uri}"
            ) from exc


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
