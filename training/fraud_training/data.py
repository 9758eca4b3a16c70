"""Load a Kaggle-schema CSV (with progress) and split it without leaking the future."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from sklearn.model_selection import train_test_split

from fraud_core.errors import FraudCoreError
from fraud_core.shapes import FeatureMatrix
from fraud_core.shapes.kaggle import LABEL_FIELD, RAW_FIELDS, build_feature_matrix

SplitName = Literal["time", "random"]


PROVENANCE_SUFFIX = ".provenance.json"
REAL_KAGGLE_FILE = "creditcard.csv"
SYNTHETIC_KAGGLE_FILE = Path("data/kaggle_like.csv")


class DatasetError(FraudCoreError, ValueError):
    """The training file is unusable (absent, missing columns, no frauds...)."""


@dataclass(frozen=True)
class Provenance:
    """Where a data file came from, read from its ``<file>.provenance.json`` sidecar.

    Our generators write the sidecar next to every file they produce, so training knows a file
    is synthetic without anyone passing a flag, and no generated file passes for real data.
    """

    generator: str
    """The command that wrote the file, e.g. ``fraud_training.datasets kaggle-like``."""
    synthetic: bool
    parameters: dict[str, Any]
    sha256: str
    """sha256 of the data file as written; a different file hash means it changed since."""
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator,
            "synthetic": self.synthetic,
            "parameters": self.parameters,
            "sha256": self.sha256,
            "created_at": self.created_at,
        }


def provenance_path(data: Path) -> Path:
    """The sidecar of ``data``: ``<data>.provenance.json``."""
    return data.with_name(data.name + PROVENANCE_SUFFIX)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_provenance(data: Path, *, generator: str, parameters: dict[str, Any]) -> Provenance:
    """Record that ``data`` (already written) is SYNTHETIC output of ``generator``."""
    provenance = Provenance(
        generator=generator,
        synthetic=True,
        parameters=parameters,
        sha256=file_sha256(data),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    provenance_path(data).write_text(json.dumps(provenance.to_dict(), indent=2) + "\n")
    return provenance


def read_provenance(data: Path) -> Provenance | None:
    """The sidecar of ``data``, or None when there is none (e.g. a downloaded real file)."""
    path = provenance_path(data)
    if not path.exists():
        return None
    try:
        body = json.loads(path.read_text())
        return Provenance(
            generator=str(body["generator"]),
            synthetic=bool(body["synthetic"]),
            parameters=dict(body.get("parameters", {})),
            sha256=str(body["sha256"]),
            created_at=str(body.get("created_at", "")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(
            f"{path} is not a provenance file ({exc}); delete it or regenerate {data}"
        ) from exc


def missing_data_hint(path: Path) -> str:
    """The sentence for a training file that does not exist."""
    if path.name == REAL_KAGGLE_FILE:
        return (
            f"{path} does not exist: download the real Kaggle file there, or generate SYNTHETIC data "
            f"with `python -m fraud_training.datasets kaggle-like --out {SYNTHETIC_KAGGLE_FILE}` "
            f"and train with `--data {SYNTHETIC_KAGGLE_FILE}`"
        )
    return (
        f"{path} does not exist: generate SYNTHETIC data there with "
        f"`python -m fraud_training.datasets kaggle-like --out {path}`"
    )


class _ProgressReader:
    """File wrapper that advances a progress bar as pandas reads it."""

    def __init__(self, handle: IO[bytes], progress: Progress, task: Any) -> None:
        self._handle = handle
        self._progress = progress
        self._task = task
        self._sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._sha.update(chunk)
        self._progress.advance(self._task, len(chunk))
        return chunk

    def __iter__(self) -> Any:
        return iter(self._handle)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-like transactions in the raw schema (no label), ``transaction_id`` = ``t_<index>``."""
    return [
        {"transaction_id": f"t_{idx}", **dict(zip(RAW_FIELDS, map(float, values), strict=True))}
        for idx, values in zip(frame.index, frame[list(RAW_FIELDS)].itertuples(index=False), strict=True)
    ]


@dataclass(frozen=True)
class LoadedData:
    frame: pd.DataFrame
    sha256: str
    path: Path
    provenance: Provenance | None = None

    @property
    def synthetic(self) -> bool:
        """Generated by us, by the file's provenance sidecar (even if the file changed since)."""
        return self.provenance is not None and self.provenance.synthetic

    @property
    def provenance_matches(self) -> bool | None:
        """Whether the file is byte-for-byte what the generator wrote (None: no sidecar)."""
        return None if self.provenance is None else self.provenance.sha256 == self.sha256


def load_csv(path: Path, *, progress: bool = True) -> LoadedData:
    """Read a Kaggle-schema CSV, checking its columns, and fingerprint its bytes."""
    if not path.is_file():
        raise DatasetError(missing_data_hint(path))
    columns = [*RAW_FIELDS, LABEL_FIELD]
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        disable=not progress,
        transient=True,
    ) as bar:
        task = bar.add_task(f"reading {path.name}", total=path.stat().st_size)
        with path.open("rb") as fh:
            reader = _ProgressReader(fh, bar, task)
            header = pd.read_csv(path, nrows=0).columns
            missing = [c for c in columns if c not in header]
            if missing:
                raise DatasetError(f"{path} lacks columns {missing}; expected the Kaggle schema {columns}")
            frame = pd.read_csv(cast(Any, reader), usecols=columns, dtype={c: np.float64 for c in RAW_FIELDS})
            reader.read()  # hash any tail pandas did not need
    labels = frame[LABEL_FIELD]
    if not labels.isin([0, 1]).all():
        raise DatasetError(f"{path}: column {LABEL_FIELD} must be 0 or 1")
    if frame[list(RAW_FIELDS)].isna().any().any():
        raise DatasetError(f"{path}: NaN in input columns")
    if labels.sum() < 10:
        raise DatasetError(f"{path}: only {int(labels.sum())} frauds; need at least 10 to train and evaluate")
    return LoadedData(frame, reader.sha256, path, read_provenance(path))


@dataclass(frozen=True)
class Part:
    """One part of a split, as model inputs plus raw rows kept for reporting."""

    name: str
    X: FeatureMatrix
    y: npt.NDArray[np.int64]
    raw: pd.DataFrame
    source_rows: npt.NDArray[np.int64]
    """0-based position of each row in the loaded frame (the data row of the CSV file)."""

    @property
    def frauds(self) -> int:
        return int(self.y.sum())


@dataclass(frozen=True)
class Split:
    kind: SplitName
    train: Part
    validation: Part
    test: Part

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            **{
                p.name: {"rows": len(p.y), "frauds": p.frauds}
                for p in (self.train, self.validation, self.test)
            },
        }


def _part(name: str, frame: pd.DataFrame, positions: npt.NDArray[np.int64]) -> Part:
    frame = frame.reset_index(drop=True)
    return Part(name, build_feature_matrix(frame), frame[LABEL_FIELD].to_numpy(np.int64), frame, positions)


def split(frame: pd.DataFrame, kind: SplitName, *, seed: int) -> Split:
    """``time``: earliest 60 % train, next 20 % validation, last 20 % test (by ``Time``).
    ``random``: stratified 80/20 train/test as published, with a stratified quarter of the
    training part held out for threshold selection.
    """
    # Remember each row's position in the file, so reports can name rows a person can look up.
    frame = frame.set_axis(np.arange(len(frame), dtype=np.int64))
    if kind == "time":
        ordered = frame.sort_values("Time", kind="stable")
        n = len(ordered)
        a, b = int(n * 0.6), int(n * 0.8)
        parts = ordered.iloc[:a], ordered.iloc[a:b], ordered.iloc[b:]
    else:
        rest, test = train_test_split(frame, test_size=0.2, stratify=frame[LABEL_FIELD], random_state=seed)
        train, val = train_test_split(rest, test_size=0.25, stratify=rest[LABEL_FIELD], random_state=seed)
        parts = train, val, test
    names = ("train", "validation", "test")
    result = Split(
        kind, *(_part(n, p, p.index.to_numpy(np.int64)) for n, p in zip(names, parts, strict=True))
    )
    for p in (result.train, result.validation, result.test):
        if p.frauds == 0:
            raise DatasetError(f"{kind} split left no frauds in the {p.name} part; use more data")
    return result
