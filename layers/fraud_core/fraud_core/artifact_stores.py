"""Blob storage under the model registry: S3 (any endpoint: AWS, LocalStack, moto) or a directory."""

from __future__ import annotations

import functools
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from fraud_core.errors import ArtifactIntegrityError, ModelUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


def safe_name(part: str) -> str:
    """``part`` when it is a plain file or directory name; a version, model or file name taken
    from a pointer or a manifest could otherwise walk out of the registry (``../../x``)."""
    if _NAME.fullmatch(part) is None or part in (".", ".."):
        raise ArtifactIntegrityError(
            f"refusing registry name {part[:80]!r}: names are 1-128 letters, digits, '.', '_' or '-', not '.' or '..'"
        )
    return part


class ArtifactNotFoundError(ModelUnavailableError, KeyError):
    """A key does not exist in the store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "artifact not found"


class ModelStore(Protocol):
    """Blob storage for the registry: S3, a local directory, or an in-memory fake."""

    @property
    def uri(self) -> str: ...

    def read(self, key: str) -> bytes:
        """Bytes at ``key``; raises ArtifactNotFoundError when absent."""
        ...

    def write(self, key: str, data: bytes) -> None: ...

    def list_dirs(self, prefix: str) -> list[str]:
        """Names of the immediate sub-directories under ``prefix``."""
        ...

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (recursively), sorted."""
        ...


class LocalModelStore:
    """Registry on a local directory; writes are atomic (temp file + rename)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def uri(self) -> str:
        return str(self.root)

    @functools.cached_property
    def _root(self) -> Path:
        return self.root.resolve()

    def _path(self, key: str) -> Path:
        """The file of ``key``, refused unless it lies inside the root once symlinks are resolved."""
        root = self._root
        path = (root / key).resolve()
        if not path.is_relative_to(root):
            raise ArtifactIntegrityError(f"refusing {key!r}: it resolves outside the registry {root}")
        return path

    def read(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactNotFoundError(f"{self.root / key} does not exist") from exc

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def list_dirs(self, prefix: str) -> list[str]:
        base = self.root / prefix
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def list_keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )


class S3ModelStore:
    """Registry on S3. The endpoint comes from ``AWS_ENDPOINT_URL`` (LocalStack, moto_server)."""

    def __init__(self, bucket: str, prefix: str = "", *, client: S3Client | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def client(self) -> S3Client:
        if self._client is None:
            # boto3 costs ~0.5 s to import: only pay it when S3 is really used.
            import boto3
            from botocore.config import Config

            config = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 3})
            self._client = boto3.client("s3", config=config)
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def read(self, key: str) -> bytes:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey as exc:
            raise ArtifactNotFoundError(f"{self.uri}/{key} does not exist") from exc
        return obj["Body"].read()

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def list_keys(self, prefix: str) -> list[str]:
        full = self._key(prefix.strip("/")) + "/"
        paginator = self.client.get_paginator("list_objects_v2")
        skip = len(self.prefix) + 1 if self.prefix else 0
        keys = [
            obj["Key"][skip:]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full)
            for obj in page.get("Contents", [])
        ]
        return sorted(keys)

    def list_dirs(self, prefix: str) -> list[str]:
        full = self._key(prefix.strip("/")) + "/"
        paginator = self.client.get_paginator("list_objects_v2")
        names: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
            names.extend(cp["Prefix"][len(full) :].rstrip("/") for cp in page.get("CommonPrefixes", []))
        return sorted(names)


def store_from_uri(uri: str) -> ModelStore:
    """``s3://bucket/prefix`` → S3ModelStore, anything else → LocalModelStore."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"registry URI {uri!r} has no bucket")
        return S3ModelStore(bucket, prefix)
    return LocalModelStore(uri)
