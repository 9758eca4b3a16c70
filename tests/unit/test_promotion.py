"""Promotion policy: publish always, become current only when forced, first, or better on the same rows."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from sklearn.metrics import average_precision_score

from fraud_core.manifest import ONNX_FILE, ModelManifest, Thresholds
from fraud_core.registry import LocalModelStore, ModelRegistry
from fraud_core.shapes.kaggle import FEATURE_NAMES
from fraud_core.shapes.simulated import SIMULATED
from fraud_training import train as train_cli
from fraud_training.data import Split, split
from fraud_training.export import to_onnx_bytes
from fraud_training.models import make_model
from fraud_training.registry import Promotion, decide_promotion, promotion_message
from fraud_training.train import TrainConfig, train


@pytest.fixture(scope="module")
def parts(tiny_frame: pd.DataFrame) -> Split:
    return split(tiny_frame, "time", seed=0)


@pytest.fixture(scope="module")
def good(parts: Split) -> Any:
    return make_model("logreg", seed=0).fit(parts.train.X, parts.train.y)


@pytest.fixture(scope="module")
def bad(parts: Split) -> Any:
    # trained on shuffled labels: close to chance
    labels = np.random.default_rng(0).permutation(parts.train.y)
    return make_model("logreg", seed=0).fit(parts.train.X, labels)


def _manifest(
    version: str,
    *,
    schema: str = "kaggle",
    features: tuple[str, ...] = FEATURE_NAMES,
    training: dict[str, Any] | None = None,
) -> ModelManifest:
    return ModelManifest(
        training=training or {},
        name="m",
        version=version,
        created_at="2026-01-01T00:00:00+00:00",
        model_type="logreg",
        schema_name=schema,
        features=list(features),
        raw_scaling={},
        explain_baseline=[0.0] * len(features),
        thresholds=Thresholds(review=0.2, decline=0.6),
    )


def _publish(registry: ModelRegistry, version: str, model: Any, parts: Split, **kw: Any) -> None:
    registry.publish(_manifest(version, **kw), {ONNX_FILE: to_onnx_bytes(model, parts.train.X)})


def _ap(model: Any, parts: Split) -> float:
    return float(average_precision_score(parts.test.y, model.predict_proba(parts.test.X)[:, 1]))


def _decide(registry: ModelRegistry, policy: Any, model: Any, parts: Split, **kw: Any) -> Promotion:
    return decide_promotion(
        registry,
        policy,
        candidate=_manifest("candidate", **kw),
        candidate_average_precision=_ap(model, parts),
        X_test=parts.test.X,
        y_test=parts.test.y,
    )


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(LocalModelStore(tmp_path / "reg"), "m")


def test_first_version_is_promoted_automatically(registry: ModelRegistry, bad: Any, parts: Split) -> None:
    promotion = _decide(registry, "auto", bad, parts)
    assert promotion.promoted and promotion.reason == "the registry had no current version"
    assert promotion.serving_version is None


def test_worse_candidate_leaves_the_serving_model(
    registry: ModelRegistry, good: Any, bad: Any, parts: Split
) -> None:
    # GIVEN a good model serving
    _publish(registry, "v-good", good, parts)
    # WHEN a worse candidate is compared on its test rows
    promotion = _decide(registry, "auto", bad, parts)
    # THEN it is not promoted, and the serving model's AP was measured on those same rows
    assert not promotion.promoted and promotion.serving_version == "v-good"
    assert promotion.serving_average_precision == pytest.approx(_ap(good, parts), abs=1e-6)
    assert promotion.compared_rows == len(parts.test.y)
    assert f"{_ap(good, parts):.4f} on the same {len(parts.test.y):,} test rows" in promotion.reason
    message = promotion_message(
        promotion, version="v-new", command="python -m fraud_training.registry promote v-new"
    )
    assert message.startswith(f"published v-new (AP {_ap(bad, parts):.4f}); current stays v-good (AP ")
    assert message.endswith("promote it with `python -m fraud_training.registry promote v-new`")


def test_better_candidate_is_promoted(registry: ModelRegistry, good: Any, bad: Any, parts: Split) -> None:
    _publish(registry, "v-bad", bad, parts)
    promotion = _decide(registry, "auto", good, parts)
    assert promotion.promoted and "beats current v-bad's" in promotion.reason
    assert promotion.serving_average_precision == pytest.approx(_ap(bad, parts), abs=1e-6)


def test_comparison_warns_when_the_serving_model_may_have_seen_the_test_rows(
    registry: ModelRegistry, good: Any, bad: Any, parts: Split
) -> None:
    # GIVEN a serving model split from the same file with another random seed
    split_a = {"kind": "random", "test": {"rows": len(parts.test.y)}}
    _publish(registry, "v-good", good, parts, training={"data_sha256": "f1", "split": split_a, "seed": 1})
    same_rows = _decide(
        registry, "auto", bad, parts, training={"data_sha256": "f1", "split": split_a, "seed": 1}
    )
    other_seed = _decide(
        registry, "auto", bad, parts, training={"data_sha256": "f1", "split": split_a, "seed": 2}
    )
    other_data = _decide(
        registry, "auto", bad, parts, training={"data_sha256": "f2", "split": split_a, "seed": 1}
    )
    assert "flatters" not in same_rows.reason
    assert (
        "trained on another split of the same data and may have seen some of these rows" in other_seed.reason
    )
    assert "trained on other data" in other_data.reason


def test_forced_and_never_ignore_the_comparison(
    registry: ModelRegistry, good: Any, bad: Any, parts: Split
) -> None:
    assert not _decide(registry, "never", good, parts).promoted  # even into an empty registry
    _publish(registry, "v-good", good, parts)
    forced = _decide(registry, "always", bad, parts)
    assert forced.promoted and forced.reason == "--promote was given, replacing v-good"
    with pytest.raises(ValueError, match="promotion policy must be one of"):
        _decide(registry, "sometimes", bad, parts)


def test_serving_model_of_another_schema_is_not_compared(
    registry: ModelRegistry, good: Any, parts: Split
) -> None:
    registry.publish(_manifest("v-sim", schema=SIMULATED.name, features=SIMULATED.feature_names), {"f": b"x"})
    promotion = _decide(registry, "auto", good, parts)
    assert not promotion.promoted and promotion.serving_average_precision is None
    assert "cannot be compared on the same rows" in promotion.reason
    assert "simulated model" in promotion.reason


def test_unloadable_serving_model_is_not_replaced_silently(
    registry: ModelRegistry, good: Any, bad: Any, parts: Split
) -> None:
    _publish(registry, "v-good", good, parts)
    registry.store.write("m/v-good/model.onnx", b"tampered")
    promotion = _decide(registry, "auto", bad, parts)
    assert not promotion.promoted and "cannot be loaded to compare" in promotion.reason


def test_train_config_refuses_the_old_boolean(tiny_csv: Path) -> None:
    with pytest.raises(TypeError, match="former True is 'always'"):
        TrainConfig(data=tiny_csv, promote=True)  # type: ignore[arg-type]


def test_retraining_compares_with_the_serving_model_on_the_same_test_rows(
    tiny_csv: Path, tmp_path: Path
) -> None:
    def run(seed: int, **kw: Any) -> tuple[train_cli.TrainResult, str]:
        console = Console(file=io.StringIO(), width=250)
        config = TrainConfig(
            data=tiny_csv,
            registry=str(tmp_path / "reg"),
            model_name="m",
            out_dir=tmp_path / "runs",
            seed=seed,
            **kw,
        )
        result = train(config, console=console)
        return result, console.file.getvalue()  # type: ignore[attr-defined]

    registry = ModelRegistry(LocalModelStore(tmp_path / "reg"), "m")
    # GIVEN a first version, promoted because nothing was current
    first, _ = run(1)
    assert first.promotion.promoted and registry.pointer().version == first.manifest.version  # type: ignore[union-attr]
    # WHEN a second model is trained (time split: the same test rows)
    second, output = run(2)
    # THEN the serving model was scored on those rows: its AP is the one its own manifest reports
    p = second.promotion
    assert p.serving_version == first.manifest.version
    assert p.serving_average_precision == pytest.approx(
        first.manifest.metrics["test"]["average_precision"], abs=1e-3
    )
    assert p.promoted == (second.manifest.metrics["test"]["average_precision"] > p.serving_average_precision)
    current = registry.pointer().version  # type: ignore[union-attr]
    assert current == (second.manifest.version if p.promoted else first.manifest.version)
    assert set(registry.versions()) == {first.manifest.version, second.manifest.version}
    assert ("it is now current" in output) if p.promoted else ("current stays" in output)
    # AND --no-promote / --promote override the comparison
    never, _ = run(3, model="logreg", promote="never")
    assert not never.promotion.promoted and registry.pointer().version == current  # type: ignore[union-attr]
    forced, _ = run(4, model="rf", promote="always")
    assert forced.promotion.promoted and registry.pointer().version == forced.manifest.version  # type: ignore[union-attr]


def test_cli_flags_map_to_policies() -> None:
    parser = train_cli.build_parser()
    assert train_cli._policy(parser.parse_args([])) == "auto"
    assert train_cli._policy(parser.parse_args(["--promote"])) == "always"
    assert train_cli._policy(parser.parse_args(["--no-promote"])) == "never"
    with pytest.raises(SystemExit):
        parser.parse_args(["--promote", "--no-promote"])
