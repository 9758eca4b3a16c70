"""Training CLI, reports and the registry CLI on tiny synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fraud_core.registry import LocalModelStore, ModelRegistry
from fraud_core.shapes.kaggle import LABEL_FIELD, PCA_FIELDS
from fraud_training import registry as registry_cli
from fraud_training import train as train_cli
from fraud_training.data import DatasetError, load_csv, split
from fraud_training.datasets import kaggle_like
from fraud_training.datasets import main as datasets_main
from tests.conftest import TrainedModel


def test_kaggle_like_schema_ratio_and_determinism() -> None:
    a = kaggle_like(20_000, seed=1)
    assert list(a.columns) == ["Time", *PCA_FIELDS, "Amount", LABEL_FIELD]
    assert a[LABEL_FIELD].sum() == round(20_000 * 492 / 284_807)
    assert a["Time"].is_monotonic_increasing
    assert (a["Amount"] >= 0).all()
    pd.testing.assert_frame_equal(a, kaggle_like(20_000, seed=1))
    assert not a.equals(kaggle_like(20_000, seed=2))


def test_datasets_cli_writes_csv(tmp_path: Path) -> None:
    out = tmp_path / "k.csv"
    assert datasets_main(["kaggle-like", "--rows", "500", "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 500


def test_time_split_has_no_look_ahead(tiny_frame: pd.DataFrame) -> None:
    parts = split(tiny_frame, "time", seed=0)
    assert parts.train.raw["Time"].max() <= parts.validation.raw["Time"].min()
    assert parts.validation.raw["Time"].max() <= parts.test.raw["Time"].min()
    assert len(parts.train.y) == int(len(tiny_frame) * 0.6)


def test_random_split_is_stratified(tiny_frame: pd.DataFrame) -> None:
    parts = split(tiny_frame, "random", seed=0)
    rate = tiny_frame[LABEL_FIELD].mean()
    for part in (parts.train, parts.validation, parts.test):
        assert part.y.mean() == pytest.approx(rate, abs=0.003)
    assert len(parts.test.y) == pytest.approx(0.2 * len(tiny_frame), abs=1)


def test_load_csv_refuses_missing_columns(tmp_path: Path, tiny_frame: pd.DataFrame) -> None:
    path = tmp_path / "bad.csv"
    tiny_frame.drop(columns=["V3"]).to_csv(path, index=False)
    with pytest.raises(DatasetError, match=r"lacks columns \['V3'\]"):
        load_csv(path, progress=False)
    with pytest.raises(DatasetError, match="does not exist"):
        load_csv(tmp_path / "nope.csv", progress=False)


def test_trained_artifact_has_reports_and_complete_manifest(trained: TrainedModel) -> None:
    m = trained.result.manifest
    run = trained.result.run_dir
    for name in (
        "report.md",
        "metrics.json",
        "pr_curve.png",
        "roc_curve.png",
        "model.onnx",
        "manifest.json",
    ):
        assert (run / name).stat().st_size > 0
    assert set(m.files) >= {
        "model.onnx",
        "model.joblib",
        "metrics.json",
        "report.md",
        "pr_curve.png",
        "roc_curve.png",
    }
    assert (run / "pr_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert m.training["synthetic"] is True and "SYNTHETIC" in (run / "report.md").read_text()
    assert len(m.training["data_sha256"]) == 64
    test = m.metrics["test"]
    assert 0.5 < test["roc_auc"] <= 1.0 and 0 < test["average_precision"] <= 1.0
    assert json.loads((run / "metrics.json").read_text())["test"] == test
    assert m.thresholds.review <= m.thresholds.decline
    assert {"scikit-learn", "onnxruntime", "numpy"} <= set(m.libraries)


def test_train_cli_auto_picks_best_validation_ap(tiny_csv: Path, tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    argv = [
        "--data",
        str(tiny_csv),
        "--model",
        "auto",
        "--split",
        "random",
        "--registry",
        str(reg),
        "--model-name",
        "m",
        "--out-dir",
        str(tmp_path / "runs"),
        "--target-precision",
        "0.8",
    ]
    assert train_cli.main(argv) == 0
    _, m = ModelRegistry(LocalModelStore(reg), "m").current_manifest()
    candidates = m.metrics["candidates"]
    assert set(candidates) == {"hgb", "rf", "logreg"}
    best = max(candidates, key=lambda k: candidates[k]["validation_average_precision"])
    assert m.model_type == best
    assert m.metrics["onnx_parity"]["ok"] is True


def test_registry_cli_verify_exit_codes(
    trained: TrainedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    reg = tmp_path / "reg"
    shutil.copytree(trained.registry_dir, reg)
    base = ["--registry", str(reg), "--model-name", "test-model"]
    assert registry_cli.main([*base, "verify"]) == 0
    assert registry_cli.main([*base, "list"]) == 0
    assert trained.result.manifest.version in capsys.readouterr().out
    version = trained.result.manifest.version
    (reg / "test-model" / version / "model.joblib").write_bytes(b"tampered")
    assert registry_cli.main([*base, "verify"]) == 1
    assert registry_cli.main([*base, "show", version]) == 0
    assert registry_cli.main([*base, "rollback"]) == 1  # nothing to roll back to
