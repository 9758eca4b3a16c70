"""Training CLI, reports and the registry CLI on tiny synthetic data."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from fraud_core.cli import run_cli
from fraud_core.errors import FraudCoreError
from fraud_core.manifest import ModelManifest
from fraud_core.registry import LocalModelStore, ModelRegistry
from fraud_core.shapes.kaggle import LABEL_FIELD, PCA_FIELDS
from fraud_training import registry as registry_cli
from fraud_training import train as train_cli
from fraud_training.data import DatasetError, load_csv, read_provenance, split
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


def test_datasets_cli_writes_csv_with_its_provenance(tmp_path: Path) -> None:
    out = tmp_path / "k.csv"
    assert datasets_main(["kaggle-like", "--rows", "500", "--seed", "4", "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 500
    provenance = json.loads((tmp_path / "k.csv.provenance.json").read_text())
    assert provenance["synthetic"] is True
    assert provenance["generator"] == "fraud_training.datasets kaggle-like"
    assert provenance["parameters"]["rows"] == 500 and provenance["parameters"]["seed"] == 4
    assert provenance["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_generator_refuses_the_real_files_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "creditcard.csv"
    assert run_cli(datasets_main, ["kaggle-like", "--rows", "500", "--out", str(out)]) == 2
    assert "refusing to write SYNTHETIC data" in capsys.readouterr().err and not out.exists()


def test_simulated_data_gets_a_provenance_too(tmp_path: Path) -> None:
    out = tmp_path / "sim.parquet"
    argv = ["simulate", "--customers", "20", "--terminals", "40", "--days", "2", "--out", str(out)]
    assert datasets_main(argv) == 0
    loaded = read_provenance(out)
    assert loaded is not None and loaded.synthetic and loaded.generator == "fraud_training.datasets simulate"
    assert loaded.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()


def test_generated_data_trains_a_model_marked_synthetic_without_a_flag(tmp_path: Path) -> None:
    # GIVEN data from our generator, and a byte-identical copy without its provenance file
    data = tmp_path / "gen" / "kaggle_like.csv"
    argv = ["kaggle-like", "--rows", "6000", "--fraud-rate", "0.03", "--seed", "3", "--out", str(data)]
    assert datasets_main(argv) == 0
    (tmp_path / "copy").mkdir()
    copy = tmp_path / "copy" / "other.csv"
    shutil.copy(data, copy)

    def trained_on(path: Path) -> ModelManifest:
        config = train_cli.TrainConfig(
            data=path,
            model="logreg",
            registry=str(tmp_path / "reg"),
            model_name=path.stem,
            out_dir=tmp_path / "runs",
        )
        return train_cli.train(config, console=Console(quiet=True)).manifest

    # WHEN training on each, without --synthetic
    generated, unmarked = trained_on(data), trained_on(copy)
    # THEN the manifest of the generated file says synthetic, with where it came from
    assert generated.training["synthetic"] is True and generated.training["provenance_matches"] is True
    assert generated.training["provenance"]["generator"] == "fraud_training.datasets kaggle-like"
    report = (tmp_path / "runs" / generated.name / generated.version / "report.md").read_text()
    assert "SYNTHETIC" in report and "fraud_training.datasets kaggle-like" in report
    # AND a file nobody vouches for is not called synthetic
    assert unmarked.training["synthetic"] is False and unmarked.training["provenance"] is None


def test_edited_generated_file_stays_synthetic_but_says_it_changed(tmp_path: Path) -> None:
    data = tmp_path / "k.csv"
    assert datasets_main(["kaggle-like", "--rows", "3000", "--fraud-rate", "0.03", "--out", str(data)]) == 0
    with data.open("a") as fh:
        fh.write(",".join(["0"] * 30) + ",1.0,0\n")
    loaded = load_csv(data, progress=False)
    assert loaded.synthetic is True and loaded.provenance_matches is False


def test_missing_data_is_one_sentence_pointing_at_synthetic_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "data" / "creditcard.csv"
    assert run_cli(train_cli.main, ["--data", str(missing), "--registry", str(tmp_path / "reg")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"error: {missing} does not exist: download the real Kaggle file there")
    # the synthetic data goes to its own file, never into creditcard.csv
    assert "kaggle-like --out data/kaggle_like.csv" in err and "--out " + str(missing) not in err
    assert "--data data/kaggle_like.csv" in err


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
    with pytest.raises(
        DatasetError, match=r"does not exist: generate SYNTHETIC data there with .*--out .*nope\.csv"
    ):
        load_csv(tmp_path / "nope.csv", progress=False)
    assert issubclass(DatasetError, FraudCoreError)


def test_trained_artifact_has_reports_and_complete_manifest(trained: TrainedModel) -> None:
    m = trained.result.manifest
    run = trained.result.run_dir
    for name in (
        "report.md",
        "metrics.json",
        "pr_curve.png",
        "roc_curve.png",
        "roc_curve_log.png",
        "model.onnx",
        "manifest.json",
        "promotion.json",
    ):
        assert (run / name).stat().st_size > 0
    assert set(m.files) >= {
        "model.onnx",
        "model.joblib",
        "metrics.json",
        "report.md",
        "pr_curve.png",
        "roc_curve.png",
        "roc_curve_log.png",
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
    capsys.readouterr()
    assert run_cli(registry_cli.main, [*base, "rollback"]) == 2  # nothing to roll back to
    assert "no earlier version to roll back to" in capsys.readouterr().err
