"""The ONNX parity gate: tolerated borderline flips, refused real differences, failing early."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraud_core.cli import run_cli
from fraud_core.errors import FraudCoreError
from fraud_core.manifest import Thresholds
from fraud_training import export
from fraud_training import train as train_cli
from fraud_training.data import split
from fraud_training.export import PARITY_TOLERANCE, ParityError, check_parity, compare_scores
from fraud_training.models import make_model
from tests.conftest import TrainedModel

BANDS = Thresholds(review=0.2, decline=0.5)


def test_identical_scores_pass_without_flips() -> None:
    scores = np.array([0.01, 0.3, 0.7])
    parity = compare_scores(scores, scores.copy(), BANDS, part="test")
    assert parity.ok and parity.max_abs_diff == 0.0 and parity.decision_mismatches == 0
    assert "no decision flips" in parity.summary()


def test_flip_of_a_row_on_the_threshold_is_accepted_and_reported() -> None:
    # GIVEN float32 rounding that moves one score a hair across the decline threshold
    sklearn = np.array([0.05, BANDS.decline + 2e-7, 0.9, BANDS.review - 3e-7])
    onnx = np.array([0.05, BANDS.decline - 2e-7, 0.9, BANDS.review + 1e-7])
    # WHEN compared, with rows named by their position in the data file
    parity = compare_scores(sklearn, onnx, BANDS, part="test", row_ids=[100, 101, 102, 103])
    # THEN it passes, and the manifest dict names both borderline rows with their scores
    assert parity.ok
    report = parity.to_dict()
    assert (
        report["decision_mismatches"] == 2 and report["borderline_flips"] == 2 and report["other_flips"] == 0
    )
    first = report["borderline_rows"][0]
    assert first["row"] == 101
    assert (first["sklearn_decision"], first["onnx_decision"]) == ("decline", "review")
    assert first["sklearn"] == pytest.approx(0.5000002) and first["threshold"] == BANDS.decline
    assert report["borderline_rows"][1]["row"] == 103
    assert "2 borderline row(s) flip" in parity.summary()


def test_difference_over_tolerance_fails_and_says_where_and_by_how_much() -> None:
    sklearn = np.array([0.10, 0.30, 0.95])
    onnx = np.array([0.10, 0.30 + 5e-5, 0.95])
    parity = compare_scores(sklearn, onnx, BANDS, part="validation", row_ids=[7, 8, 9])
    assert not parity.ok and parity.decision_mismatches == 0
    with pytest.raises(ParityError) as caught:
        parity.require(model_type="rf")
    message = str(caught.value)
    assert "rf" in message and "validation part (3 rows)" in message
    assert "max |Δscore| 5.00e-05 exceeds the tolerance 1e-05" in message
    assert "row 8: sklearn 0.30000000, ONNX 0.30005000" in message


def test_flip_far_from_any_threshold_fails() -> None:
    # GIVEN a row sklearn declines firmly and ONNX approves
    parity = compare_scores(np.array([0.9, 0.1]), np.array([0.1, 0.1]), BANDS, part="test")
    assert not parity.ok
    assert len(parity.other_flips) == 1 and not parity.borderline_flips
    assert parity.to_dict()["other_rows"][0]["sklearn_decision"] == "decline"
    assert "1 decision(s) flip on rows farther than 1e-05" in parity.problems()


def test_parity_error_is_a_clean_cli_failure() -> None:
    assert issubclass(ParityError, FraudCoreError)


def test_real_export_matches_sklearn(tiny_frame: pd.DataFrame) -> None:
    parts = split(tiny_frame, "time", seed=0)
    model = make_model("logreg", seed=0).fit(parts.train.X, parts.train.y)
    parity = check_parity(model, export.to_onnx_bytes(model, parts.train.X), parts.test.X, BANDS)
    assert parity.ok and parity.rows == len(parts.test.y)
    assert parity.max_abs_diff <= PARITY_TOLERANCE


def _other_model_export(model: Any, sample: np.ndarray) -> bytes:
    """An exporter gone wrong: the ONNX graph of an unrelated model."""
    impostor = make_model("logreg", seed=0).fit(sample, (sample[:, 0] > np.median(sample[:, 0])).astype(int))
    return export.to_onnx_bytes(impostor, sample)


def test_training_stops_at_parity_before_writing_anything(
    tiny_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an export that does not score like the fitted model
    monkeypatch.setattr(train_cli, "to_onnx_bytes", _other_model_export)
    argv = ["--data", str(tiny_csv), "--model", "logreg", "--registry", str(tmp_path / "reg")]
    argv += ["--out-dir", str(tmp_path / "runs")]
    # WHEN training runs through the CLI wrapper
    assert run_cli(train_cli.main, argv) == 2
    # THEN one line says what differed on the validation part, and nothing was written or published
    err = capsys.readouterr().err
    assert "error: the ONNX export of logreg does not score like sklearn on the validation part" in err
    assert "max |Δscore|" in err and "nothing was published" in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "reg").exists()


def test_manifest_records_parity_of_both_parts(trained: TrainedModel) -> None:
    metrics = trained.result.manifest.metrics
    assert metrics["onnx_parity"]["part"] == "test" and metrics["onnx_parity"]["ok"] is True
    assert metrics["onnx_parity_validation"]["part"] == "validation"
    assert {"borderline_flips", "borderline_rows", "other_flips"} <= set(metrics["onnx_parity"])
