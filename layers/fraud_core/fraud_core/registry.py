"""Versioned model registry on S3 or a local directory, with sha256 verification before loading.

Layout (``ROOT`` is ``s3://bucket/prefix`` or a directory)::

    ROOT/<model_name>/<version>/manifest.json, model.onnx, model.joblib, metrics.json, ...
    ROOT/<model_name>/current.json     pointer: version + sha256 of its manifest + history

``history`` in ``current.json`` is a stack of the versions promoted before the current one,
most recent first. ``promote`` pushes the outgoing version; ``rollback`` pops: a second
rollback goes one further back instead of returning to the version just left.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fraud_core.artifact_stores import (
    ArtifactNotFoundError,
    LocalModelStore,
    ModelStore,
    S3ModelStore,
    safe_name,
    store_from_uri,
)
from fraud_core.errors import ArtifactIntegrityError, ModelUnavailableError
from fraud_core.manifest import MANIFEST_FILE, FileEntry, ModelManifest, sha256_hex

__all__ = [
    "ArtifactNotFoundError",
    "LocalModelStore",
    "ModelRegistry",
    "ModelStore",
    "Pointer",
    "S3ModelStore",
    "VersionNotFoundError",
    "open_registry",
    "store_from_uri",
]

logger = logging.getLogger(__name__)

POINTER_FILE = "current.json"
CHALLENGER_FILE = "challenger.json"
AUDIT_DIR = "audit"
"""One object per promotion, rollback, challenge and gate decision: append-only by construction."""
"""The shadow challenger: scored beside the champion, logged, never deciding."""
HISTORY_LIMIT = 20
LIST_COMMAND = "python -m fraud_training.registry list"


class VersionNotFoundError(ArtifactNotFoundError):
    """A version named by the caller does not exist in the registry."""


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
    """Earlier promotions, most recent first: where each rollback goes, in order."""
    rolled_back_from: str | None = None
    """The version a rollback left to get here (None after a promotion)."""

    def to_json(self, model_name: str) -> bytes:
        body: dict[str, object] = {
            "model_name": model_name,
            "version": self.version,
            "manifest_sha256": self.manifest_sha256,
            "promoted_at": self.promoted_at,
            "history": list(self.history),
        }
        if self.rolled_back_from is not None:
            body["rolled_back_from"] = self.rolled_back_from
        return json.dumps(body, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Pointer:
        body = json.loads(data)
        return cls(
            version=body["version"],
            manifest_sha256=body["manifest_sha256"],
            promoted_at=body.get("promoted_at", ""),
            history=tuple(body.get("history", [])),
            rolled_back_from=body.get("rolled_back_from"),
        )

    def entry(self) -> dict[str, str]:
        """This pointer as a history entry."""
        return {
            "version": self.version,
            "manifest_sha256": self.manifest_sha256,
            "promoted_at": self.promoted_at,
        }


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
        """``model/part/...``; every part (model name, version, file name) must be a plain name."""
        return "/".join(safe_name(p) for p in (self.model_name, *parts))

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
        manifest_sha = self._verified_manifest_sha(version, action="promote")
        previous = self.pointer()
        history: tuple[dict[str, str], ...] = ()
        if previous is not None and previous.version != version:
            history = (previous.entry(), *previous.history)[:HISTORY_LIMIT]
        elif previous is not None:
            history = previous.history
        pointer = Pointer(version, manifest_sha, _now(), history)
        self.store.write(self._key(POINTER_FILE), pointer.to_json(self.model_name))
        self.record(
            "promote", version, previous=previous.version if previous else None, manifest_sha256=manifest_sha
        )
        logger.info("promoted model", extra={"model": self.model_name, "version": version})
        return pointer

    def rollback(self) -> Pointer:
        """Re-point ``current.json`` at the version promoted before the current one.

        The history is a stack: the version rolled back from is not pushed onto it, so
        repeated rollbacks walk further back instead of toggling between two versions.
        """
        current = self.pointer()
        if current is None or not current.history:
            raise ModelUnavailableError(
                f"{self.model_name}: no earlier version to roll back to in {self.store.uri}"
                + (f" (current {current.version} is the oldest promotion on record)" if current else "")
            )
        target, *rest = current.history
        version = target["version"]
        manifest_sha = self._verified_manifest_sha(
            version, action="roll back to", recorded=target.get("manifest_sha256")
        )
        pointer = Pointer(version, manifest_sha, _now(), tuple(rest), rolled_back_from=current.version)
        self.store.write(self._key(POINTER_FILE), pointer.to_json(self.model_name))
        self.record("rollback", version, previous=current.version, manifest_sha256=manifest_sha)
        logger.info("rolled back model", extra={"model": self.model_name, "version": version})
        return pointer

    def record(self, action: str, version: str | None, *, by: str | None = None, **details: Any) -> str:
        """Append an audit record (who, what, when, and why) under ``<model>/audit/``."""
        when = datetime.now(UTC)
        actor = by or os.environ.get("FRAUD_ACTOR") or os.environ.get("USER") or "unknown"
        body = {
            "at": when.isoformat(timespec="microseconds"),
            "action": action,
            "version": version,
            "by": actor,
        }
        key = self._key(AUDIT_DIR, f"{when:%Y%m%dT%H%M%S%fZ}-{action}.json")
        self.store.write(key, json.dumps({**body, **details}, indent=2, default=str).encode())
        return key

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The audit records, oldest first (only the newest ``limit`` when given: one read each)."""
        keys = sorted(self.store.list_keys(self._key(AUDIT_DIR)))
        if limit is not None:
            keys = keys[-limit:] if limit > 0 else []
        records: list[dict[str, Any]] = [json.loads(self.store.read(k)) for k in keys]
        return records

    def challenge(self, version: str) -> Pointer:
        """Point ``challenger.json`` at ``version`` (verified like a promotion): serving scores
        it in shadow beside the champion."""
        manifest_sha = self._verified_manifest_sha(version, action="challenge with")
        pointer = Pointer(version, manifest_sha, _now())
        self.store.write(self._key(CHALLENGER_FILE), pointer.to_json(self.model_name))
        self.record("challenge", version, manifest_sha256=manifest_sha)
        logger.info("challenger set", extra={"model": self.model_name, "version": version})
        return pointer

    def unchallenge(self) -> None:
        """Stop shadow scoring (the pointer records that there is none)."""
        previous = self.challenger()
        body = {"model_name": self.model_name, "version": None, "unchallenged_at": _now()}
        self.store.write(self._key(CHALLENGER_FILE), json.dumps(body, indent=2).encode())
        self.record("unchallenge", previous.version if previous else None)

    def challenger(self) -> Pointer | None:
        try:
            raw = self.store.read(self._key(CHALLENGER_FILE))
        except ArtifactNotFoundError:
            return None
        try:
            return None if json.loads(raw).get("version") is None else Pointer.from_json(raw)
        except (ValueError, KeyError, AttributeError) as exc:
            raise ArtifactIntegrityError(
                f"{self.store.uri}/{self._key(CHALLENGER_FILE)} is corrupt: {exc}"
            ) from exc

    def _verified_manifest_sha(self, version: str, *, action: str, recorded: str | None = None) -> str:
        """sha256 of ``version``'s manifest once every file checks out; refuses ``action`` otherwise."""
        self.require_version(version)
        manifest_sha = sha256_hex(self.store.read(self._key(version, MANIFEST_FILE)))
        problems = [
            f"{c.file} {c.status} {c.detail}".strip() for c in self.verify(version) if c.status != "ok"
        ]
        if recorded and recorded != manifest_sha:
            problems.insert(0, f"{MANIFEST_FILE} changed since it was promoted")
        if problems:
            raise ArtifactIntegrityError(
                f"refusing to {action} {self.model_name}/{version}: " + "; ".join(problems)
            )
        return manifest_sha

    # -- reading ---------------------------------------------------------------------------
    def versions(self) -> list[str]:
        return [d for d in self.store.list_dirs(self.model_name) if d != AUDIT_DIR]

    def has_version(self, version: str) -> bool:
        """Whether ``version`` has a manifest (is published)."""
        try:
            self.store.read(self._key(version, MANIFEST_FILE))
        except ArtifactNotFoundError:
            return False
        return True

    def require_version(self, version: str) -> None:
        """Raise :class:`VersionNotFoundError` with a sentence unless ``version`` is published."""
        if not self.has_version(version):
            raise self._unknown(version)

    def _unknown(self, version: str) -> VersionNotFoundError:
        return VersionNotFoundError(
            f"version {version} does not exist in {self.store.uri}/{self.model_name}; "
            f"`{LIST_COMMAND}` shows the versions"
        )

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
        try:
            raw = self.store.read(self._key(version, MANIFEST_FILE))
        except ArtifactNotFoundError as exc:
            raise self._unknown(version) from exc
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
        except VersionNotFoundError as exc:
            return [FileCheck(MANIFEST_FILE, "missing", str(exc))]
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
                f"no model named {self.model_name!r} is published in {self.store.uri} "
                f"({self._key(POINTER_FILE)} does not exist): `make demo` publishes one, or "
                f"`python -m fraud_training.train --data … [--schema simulated] --model-name {self.model_name}`; "
                f"`python -m fraud_training.registry --registry {self.store.uri} list` shows what is there"
            )
        try:
            return pointer, self.manifest(pointer.version, expected_sha256=pointer.manifest_sha256)
        except ArtifactNotFoundError as exc:
            raise ArtifactIntegrityError(
                f"current.json points at {pointer.version!r}, which has no manifest in {self.store.uri}"
            ) from exc


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
