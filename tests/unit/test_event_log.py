"""The scoring and label logs: every scored transaction once, redeliveries overwrite, failures fail."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from fraud_core.event_log import LABELS, SCORING, EventLog, Logs, ReadStats
from fraud_core.scorer import Scorer
from fraud_core.stream.processor import StreamProcessor
from fraud_core.stream.sinks import InMemorySink
from fraud_core.stream.state import InMemoryStreamState
from fraud_devstack.kafka_events import build_event
from fraud_training.data import to_records
from tests.conftest import TrainedModel


def batch(records: list[dict[str, Any]], *, start: int = 0) -> dict[str, Any]:
    return build_event(
        [
            {"topic": "tx", "partition": 0, "offset": start + i, "value": json.dumps(r).encode()}
            for i, r in enumerate(records)
        ]
    )


@pytest.fixture
def records(trained: TrainedModel) -> list[dict[str, Any]]:
    return [{**r, "card_id": f"c{i % 3}"} for i, r in enumerate(to_records(trained.frame.head(25)))]


def test_every_scored_transaction_is_logged_once_with_its_features(
    scorer: Scorer, records: list[dict[str, Any]], tmp_path: Path
) -> None:
    logs = Logs.at(str(tmp_path))
    processor = StreamProcessor(scorer, InMemoryStreamState(), InMemorySink(), logs=logs)
    event = batch(records)
    assert processor.process(event).scored == 25
    # WHEN the same batch is redelivered THEN its object is the same and nothing is added
    processor.process(copy.deepcopy(event))
    keys = logs.scoring.keys()
    assert len(keys) == 1 and keys[0].startswith(f"{SCORING}/dt=") and "/hour=" in keys[0]
    rows = list(logs.scoring.read())
    assert sorted(r["transaction_id"] for r in rows) == sorted(r["transaction_id"] for r in records)
    first = rows[0]
    assert set(first["features"]) == set(scorer.shape.feature_names)
    assert first["shape"] == "kaggle" and first["model_version"] == scorer.version
    assert first["event_time"] == next(
        r["Time"] for r in records if r["transaction_id"] == first["transaction_id"]
    )


def test_a_failed_log_write_fails_the_batch_and_the_retry_logs_it(
    scorer: Scorer, records: list[dict[str, Any]], tmp_path: Path
) -> None:
    class Broken(EventLog):
        broken = True

        def write(self, data: bytes, *, name: str, when: float) -> str:
            if self.broken:
                from fraud_core.event_log import LogUnavailableError

                raise LogUnavailableError("scoring-log write failed: disk full")
            return super().write(data, name=name, when=when)

    good = Logs.at(str(tmp_path))
    scoring = Broken(good.scoring.store, SCORING)
    state = InMemoryStreamState()
    processor = StreamProcessor(scorer, state, InMemorySink(), logs=Logs(scoring, good.labels))
    event = batch(records[:5])
    assert len(processor.process(event).failures) == 5
    scoring.broken = False
    retried = processor.process(copy.deepcopy(event))
    assert retried.failures == [] and retried.duplicates == 5, "committed before, logged and published now"
    assert len(list(good.scoring.read())) == 5


def test_corrupt_objects_are_counted_not_fatal(tmp_path: Path) -> None:
    log = EventLog.at(str(tmp_path), LABELS)
    log.append([{"transaction_id": "a"}], name="one", when=0)
    broken = tmp_path / LABELS / "dt=1970-01-01" / "hour=00" / "two.jsonl.gz"
    broken.write_bytes(gzip.compress(b'{"transaction_id": "b"}\n')[:20])
    (tmp_path / LABELS / "dt=1970-01-01" / "hour=00" / "three.jsonl.gz").write_bytes(
        gzip.compress(b'{"x": 1}\nnot json\n')
    )
    stats = ReadStats()
    rows = list(log.read(stats=stats))
    assert [r.get("transaction_id") for r in rows] == ["a", None]
    assert (
        stats.corrupt_objects == [f"{LABELS}/dt=1970-01-01/hour=00/two.jsonl.gz"] and stats.corrupt_rows == 1
    )


def test_logged_features_read_back_as_the_model_input_exactly() -> None:
    import numpy as np
    import orjson

    from fraud_core.event_log import logged_features

    rng = np.random.default_rng(7)
    matrix = np.concatenate(
        [
            rng.normal(scale=10.0, size=(200, 8)),
            rng.uniform(0, 1e6, size=(200, 8)),
            np.tile([0.1, 1 / 3, -0.0, 1e-30, 3.4e38, -2.5, 7.0, 86_399.0], (200, 1)),
        ],
        axis=1,
    ).astype(np.float32)
    names = [f"f{i}" for i in range(matrix.shape[1])]
    # WHEN the rows go through the log's JSON and back onto the float32 grid
    text = orjson.dumps([{"features": f} for f in logged_features(matrix, names)])
    objects = [row["features"] for row in json.loads(text)]
    assert all(list(o) == names for o in objects), "a JSON object per row, in the shape's order"
    back = np.array([[o[n] for n in names] for o in objects], dtype=np.float32)
    # THEN every value is the model's input bit for bit, in fewer characters than float64's repr
    assert back.tobytes() == matrix.tobytes()
    assert len(text) < 0.7 * len(json.dumps([dict(zip(names, r, strict=True)) for r in matrix.tolist()]))
    assert logged_features(matrix[:1], names)[0] is not None and logged_features(matrix[:0], names) == []
