"""Reliability suite: every scenario starts and checks itself against real local services.

Scale: FRAUD_RELIABILITY_SCALE=ci (default, in `make test`) or full (`make reliability`).
Each scenario adds a row to a report printed at the end and written to bench/results/.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TrainedModel

FULL = os.environ.get("FRAUD_RELIABILITY_SCALE", "ci") == "full"
ROWS: list[dict[str, Any]] = []


def scale(ci: int, full: int) -> int:
    return full if FULL else ci


@pytest.fixture
def record() -> Any:
    """Add a row to the reliability report: record(scenario=..., events_in=..., ..., passed=...)."""

    def add(**row: Any) -> None:
        ROWS.append(row)

    return add


@pytest.fixture(scope="session")
def model(trained: TrainedModel) -> TrainedModel:
    return trained


COLUMNS = (
    "scenario",
    "events_in",
    "scored",
    "dlq",
    "lost",
    "double_counted",
    "http_5xx",
    "peak_memory",
    "passed",
)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    from datetime import UTC, datetime

    results = Path(__file__).resolve().parents[2] / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    payload = {"scale": "full" if FULL else "ci", "at": stamp, "rows": ROWS}
    for name in (f"reliability-{stamp}.json", "reliability-latest.json"):
        (results / name).write_text(json.dumps(payload, indent=2))
    terminalreporter.write_sep("=", f"reliability report ({payload['scale']} scale)")
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in ROWS)) for c in COLUMNS]
    terminalreporter.write_line("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    for r in ROWS:
        terminalreporter.write_line(
            "  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(COLUMNS, widths, strict=True))
        )
    terminalreporter.write_line(f"written {results / f'reliability-{stamp}.json'}")
