"""Small helpers shared by the benchmarks: timing, percentiles, result files."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from fraud_core.registry import LocalModelStore, ModelRegistry
from fraud_training.datasets import write_kaggle_like
from fraud_training.train import TrainConfig, TrainResult, train

RESULTS = Path(__file__).parent / "results"
BENCH_MODEL = "bench"


@dataclass(frozen=True)
class BenchModel:
    """A model trained for a benchmark on SYNTHETIC Kaggle-like data, in a private registry."""

    frame: pd.DataFrame
    registry: ModelRegistry
    result: TrainResult
    train_seconds: float


def train_bench_model(
    tmp: Path, *, rows: int = 284_807, model: str = "hgb", console: Console | None = None
) -> BenchModel:
    """Generate ``rows`` synthetic rows and train ``model`` into ``tmp/reg`` (quiet unless a console is given)."""
    frame, _ = write_kaggle_like(tmp / "kaggle_like.csv", rows)
    start = time.perf_counter()
    result = train(
        TrainConfig(
            data=tmp / "kaggle_like.csv",
            model=model,
            registry=str(tmp / "reg"),
            model_name=BENCH_MODEL,
            out_dir=tmp / "runs",
        ),
        console=console or Console(quiet=True),
    )
    return BenchModel(
        frame, ModelRegistry(LocalModelStore(tmp / "reg"), BENCH_MODEL), result, time.perf_counter() - start
    )


def latencies_us(fn: Callable[[], object], *, repeat: int, warmup: int = 50) -> dict[str, float]:
    """p50/p99/mean of ``fn`` in microseconds over ``repeat`` calls."""
    for _ in range(warmup):
        fn()
    samples = np.empty(repeat)
    for i in range(repeat):
        t = time.perf_counter_ns()
        fn()
        samples[i] = time.perf_counter_ns() - t
    samples /= 1_000
    return {
        "p50_us": float(np.percentile(samples, 50)),
        "p99_us": float(np.percentile(samples, 99)),
        "mean_us": float(samples.mean()),
        "calls": repeat,
    }


def throughput(
    fn: Callable[[], object], rows: int, *, min_seconds: float = 0.5, max_calls: int = 2000
) -> float:
    """Rows per second of ``fn`` (which handles ``rows`` rows), run for about ``min_seconds``."""
    fn()
    calls, start = 0, time.perf_counter()
    while calls < max_calls and (calls == 0 or time.perf_counter() - start < min_seconds):
        fn()
        calls += 1
    return rows * calls / (time.perf_counter() - start)


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    payload = {
        "benchmark": name,
        "at": stamp,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        **payload,
    }
    path = RESULTS / f"{name}-{stamp}.json"
    text = json.dumps(payload, indent=2)
    path.write_text(text)
    (RESULTS / f"{name}-latest.json").write_text(text)
    return path


def stream_events(records: list[dict[str, Any]], batch: int, run: str) -> list[dict[str, Any]]:
    """Kafka events of ``batch`` records each, ids prefixed with ``run`` (a fresh id space)."""
    from fraud_devstack.kafka_events import build_event

    out = []
    for start in range(0, len(records), batch):
        msgs = [
            {
                "topic": "transactions",
                "partition": 0,
                "offset": start + i,
                "key": str(r["card_id"]).encode(),
                "value": json.dumps({**r, "transaction_id": f"{run}-{r['transaction_id']}"}).encode(),
            }
            for i, r in enumerate(records[start : start + batch])
        ]
        out.append(build_event(msgs))
    return out
