"""`python -m fraud_training.registry`: list, diff, rollback, option placement and error sentences."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraud_core.cli import run_cli
from fraud_core.manifest import ModelManifest, Thresholds
from fraud_core.registry import LocalModelStore, ModelRegistry
from fraud_training import registry as registry_cli

SHA_REAL = "ab" * 32
SHA_SYNTH = "cd" * 32


def _manifest(version: str, *, ap: float, synthetic: bool, split: str, features: list[str]) -> ModelManifest:
    return ModelManifest(
        name="m",
        version=version,
        created_at="2026-01-01T00:00:00+00:00",
        model_type="rf" if synthetic else "hgb",
        features=features,
        raw_scaling={},
        explain_baseline=[0.0] * len(features),
        thresholds=Thresholds(review=0.1, decline=0.5),
        metrics={"test": {"average_precision": ap, "roc_auc": 0.9}},
        training={
            "data_file": "kaggle_like.csv" if synthetic else "creditcard.csv",
            "data_sha256": SHA_SYNTH if synthetic else SHA_REAL,
            "synthetic": synthetic,
            "split": {"kind": split, "test": {"rows": 100}},
        },
        libraries={"scikit-learn": "1.5" if synthetic else "1.6"},
    )


@pytest.fixture
def reg_dir(tmp_path: Path) -> Path:
    """v1 (real, time split), v2 and v3 (synthetic, random split), promoted in that order."""
    registry = ModelRegistry(LocalModelStore(tmp_path / "reg"), "m")
    registry.publish(
        _manifest("v1", ap=0.64, synthetic=False, split="time", features=["a", "b"]), {"f": b"1"}
    )
    registry.publish(
        _manifest("v2", ap=0.51, synthetic=True, split="random", features=["a", "c"]), {"f": b"2"}
    )
    registry.publish(
        _manifest("v3", ap=0.70, synthetic=True, split="random", features=["a", "c"]), {"f": b"3"}
    )
    return tmp_path / "reg"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run_cli(registry_cli.main, argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_shows_split_data_metric_and_pointer(reg_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["list", "--registry", str(reg_dir), "--model-name", "m"], capsys)
    assert code == 0
    rows = {line.split("│")[2].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert set(rows) >= {"v1", "v2", "v3"}
    assert "→ current" in rows["v3"] and "rollback 1" in rows["v2"] and "rollback 2" in rows["v1"]
    assert "time" in rows["v1"] and f"real {SHA_REAL[:12]} creditcard.csv" in rows["v1"]
    assert "random" in rows["v2"] and f"synthetic {SHA_SYNTH[:12]} kaggle_like.csv" in rows["v2"]
    assert "0.5100" in rows["v2"] and "0.7000" in rows["v3"]


def test_registry_option_goes_before_or_after_the_verb(
    reg_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _run(["--registry", str(reg_dir), "--model-name", "m", "list"], capsys)
    after = _run(["list", "--registry", str(reg_dir), "--model-name", "m"], capsys)
    mixed = _run(["--registry", str(reg_dir), "list", "--model-name", "m"], capsys)
    assert before[0] == after[0] == mixed[0] == 0
    assert before[1] == after[1] == mixed[1] and "v3" in before[1]


def test_missing_registry_directory_is_an_error_not_an_empty_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(["list", "--registry", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"error: registry directory {tmp_path / 'nowhere'} does not exist;")
    assert len(err.strip().splitlines()) == 1


def test_unknown_model_name_names_the_models_there(reg_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["list", "--registry", str(reg_dir), "--model-name", "typo"], capsys)
    assert code == 2 and f"no versions of model typo in {reg_dir} (models there: m)" in err


def test_unknown_version_reads_as_a_sentence(reg_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for verb in ("promote", "show", "verify"):
        code, _, err = _run([verb, "2099", "--registry", str(reg_dir), "--model-name", "m"], capsys)
        assert code == 2
        assert err.startswith(
            f"error: version 2099 does not exist in {reg_dir}/m; "
            "`python -m fraud_training.registry list` shows the versions"
        ), err
        assert "manifest.json" not in err


def test_rollback_twice_goes_two_versions_back(reg_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--registry", str(reg_dir), "--model-name", "m"]
    registry = ModelRegistry(LocalModelStore(reg_dir), "m")
    assert _run([*base, "rollback"], capsys)[0] == 0
    assert registry.pointer().version == "v2"  # type: ignore[union-attr]
    code, _, err = _run([*base, "rollback"], capsys)
    assert code == 0 and "current → v1 (was v2)" in err
    assert registry.pointer().version == "v1"  # type: ignore[union-attr]
    code, _, err = _run([*base, "rollback"], capsys)
    assert code == 2 and "no earlier version to roll back to" in err
    assert registry.pointer().version == "v1"  # type: ignore[union-attr]


def test_diff_compares_metrics_data_features_and_libraries(
    reg_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(["diff", "v1", "v2", "--registry", str(reg_dir), "--model-name", "m"], capsys)
    assert code == 0
    rows = {line.split("│")[2].strip(): line for line in out.splitlines() if line.count("│") >= 5}
    assert "≠" in rows["test AP"] and "-0.1300" in rows["test AP"]
    assert "0.6400" in rows["test AP"] and "0.5100" in rows["test AP"]
    assert "≠" not in rows["test ROC AUC"] and "+0" not in rows["test ROC AUC"]
    assert "real" in rows["data"] and "synthetic" in rows["data"] and "≠" in rows["data"]
    assert SHA_REAL[:16] in rows["data sha256"] and "random" in rows["split"]
    assert "2 (+c, -b)" in rows["features"] and "≠" in rows["features"]
    assert "1.6" in rows["scikit-learn"] and "1.5" in rows["scikit-learn"]
    assert "≠" in rows["model type"]
    # B defaults to the current version
    assert "v1 → v3" in _run(["diff", "v1", "--registry", str(reg_dir), "--model-name", "m"], capsys)[1]
