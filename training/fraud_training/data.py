"""Load a Kaggle-schema CSV (with progress) and split it without leaking the future."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
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

from fraud_core.shapes import FeatureMatrix
from fraud_core.shapes.kaggle import LABEL_FIELD, RAW_FIELDS, build_feature_matrix

SplitName = Literal["time", "random"]


class DatasetError(ValueError):
    """The training file is unusable (missing columns, no frauds...)."""


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


def load_csv(path: Path, *, progress: bool = True) -> LoadedData:
    """Read a Kaggle-schema CSV, checking its columns, and fingerprint its bytes."""
    if not path.exists():
        raise DatasetError(
            f"{path} does not exist (generate synthetic data with `python -m fraud_training.datasets kaggle-like --out {path}`)"
        )
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
    return LoadedData(frame, reader.sha256, path)


@dataclass(frozen=True)
class Part:
    """One part of a split, as model inputs plus raw rows kept for reporting."""

    name: str
    X: FeatureMatrix
    y: npt.NDArray[np.int64]
    raw: pd.DataFrame

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


def _part(name: str, frame: pd.DataFrame) -> Part:
    frame = frame.reset_index(drop=True)
    return Part(name, build_feature_matrix(frame), frame[LABEL_FIELD].to_numpy(np.int64), frame)


def split(frame: pd.DataFrame, kind: SplitName, *, seed: int) -> Split:
    """``time``: earliest 60 % train, next 20 % validation, last 20 % test (by ``Time``).
    ``random``: stratified 80/20 train/test as published, with a stratified quarter of the
    training part held out for threshold selection.
    """
    if kind == "time":
        ordered = frame.sort_values("Time", kind="stable")
        n = len(ordered)
        a, b = int(n * 0.6), int(n * 0.8)
        parts = ordered.iloc[:a], ordered.iloc[a:b], ordered.iloc[b:]
    else:
        rest, test = train_test_split(frame, test_size=0.2, stratify=frame[LABEL_FIELD], random_state=seed)
        train, val = train_test_split(rest, test_size=0.25, stratify=rest[LABEL_FIELD], random_state=seed)
        parts = train, val, test
    result = Split(kind, *(_part(n, p) for n, p in zip(("train", "validation", "test"), parts, strict=True)))
    for p in (result.train, result.validation, result.test):
        if p.frauds == 0:
            raise DatasetError(f"{kind} split left no frauds in the {p.name} part; use more data")
    return result
