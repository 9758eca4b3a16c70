"""Train, evaluate and publish a fraud model.

python -m fraud_training.train --data data/creditcard.csv [--model hgb|rf|logreg|auto]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from rich.console import Console
from rich.table import Table

from fraud_core.cli import cli_parser, run_cli
from fraud_core.manifest import (
    ONNX_FILE,
    SKLEARN_FILE,
    ModelManifest,
    ScalingEntry,
    Thresholds,
    sha256_hex,
)
from fraud_core.registry import ModelRegistry, store_from_uri
from fraud_core.settings import get_settings
from fraud_core.shapes.kaggle import FEATURE_NAMES, KAGGLE
from fraud_core.shapes.simulated import SIMULATED
from fraud_training.console import make_console
from fraud_training.data import LoadedData, Split, SplitName, load_csv, split
from fraud_training.evaluation import choose_thresholds, evaluate, save_curves, text_report
from fraud_training.export import check_parity, to_onnx_bytes
from fraud_training.models import MODEL_NAMES, ModelName, describe, make_model


@dataclass
class TrainConfig:
    data: Path
    model: ModelName | str = "hgb"
    split: SplitName = "time"
    registry: str = field(default_factory=lambda: get_settings().registry_uri)
    model_name: str = field(default_factory=lambda: get_settings().model_name)
    seed: int = 42
    target_precision: float | None = None
    review_recall: float = 0.9
    out_dir: Path = Path("artifacts/runs")
    promote: bool = True
    synthetic: bool = False
    """The data came from our generator: say so in every report."""


@dataclass
class TrainResult:
    manifest: ModelManifest
    run_dir: Path
    report: str
    candidates: dict[str, dict[str, float]]


class ParityError(RuntimeError):
    """The ONNX export does not score like the sklearn model: refuse to publish it."""


def _robust(values: Any) -> ScalingEntry:
    q25, median, q75 = np.percentile(np.asarray(values, dtype=np.float64), [25, 50, 75])
    return ScalingEntry(center=float(median), scale=float(q75 - q25) or 1.0)


def _fit(name: ModelName, parts: Split, seed: int, console: Console) -> tuple[Any, float, float]:
    model = make_model(name, seed=seed)
    start = time.perf_counter()
    with console.status(f"fitting {name} on {len(parts.train.y):,} rows"):
        model.fit(parts.train.X, parts.train.y)
    seconds = time.perf_counter() - start
    from sklearn.metrics import average_precision_score

    val_ap = float(average_precision_score(parts.validation.y, model.predict_proba(parts.validation.X)[:, 1]))
    console.print(f"  {name:<7} fitted in {seconds:6.1f} s   validation AP {val_ap:.4f}   {describe(model)}")
    return model, seconds, val_ap


def train(config: TrainConfig, *, console: Console | None = None) -> TrainResult:
    """Load → split → fit (→ select) → thresholds on validation → test metrics → ONNX + parity → publish."""
    console = console or make_console()
    t0 = time.perf_counter()
    loaded: LoadedData = load_csv(config.data, progress=console.is_terminal)
    n, frauds = len(loaded.frame), int(loaded.frame["Class"].sum())
    console.print(
        f"loaded {config.data}: {n:,} rows, {frauds} frauds ({frauds / n:.3%})"
        + (" [bold yellow]SYNTHETIC DATA[/]" if config.synthetic else "")
    )
    parts = split(loaded.frame, config.split, seed=config.seed)
    console.print(
        f"split={config.split}: "
        + ", ".join(
            f"{k} {v['rows']:,} rows/{v['frauds']} frauds" for k, v in parts.describe().items() if k != "kind"
        )
    )

    names: tuple[ModelName, ...] = MODEL_NAMES if config.model == "auto" else (config.model,)  # type: ignore[assignment]
    candidates: dict[str, dict[str, float]] = {}
    best: tuple[float, ModelName, Any, float] | None = None
    for name in names:
        model, seconds, val_ap = _fit(name, parts, config.seed, console)
        candidates[name] = {"validation_average_precision": val_ap, "fit_seconds": seconds}
        if best is None or val_ap > best[0]:
            best = (val_ap, name, model, seconds)
    assert best is not None
    _, chosen, model, fit_seconds = best
    if len(names) > 1:
        console.print(f"auto: chose [bold]{chosen}[/] (best validation average precision)")

    val_scores = model.predict_proba(parts.validation.X)[:, 1]
    choice = choose_thresholds(
        parts.validation.y,
        val_scores,
        target_precision=config.target_precision,
        review_recall=config.review_recall,
    )
    if choice.warning:
        console.print(f"[yellow]warning:[/] {choice.warning}")
    thresholds = choice.thresholds
    test_scores = model.predict_proba(parts.test.X)[:, 1]
    metrics = {
        "validation": evaluate(parts.validation.y, val_scores, thresholds),
        "test": evaluate(parts.test.y, test_scores, thresholds),
    }
    report = text_report(parts.test.y, test_scores, thresholds)

    with console.status("exporting to ONNX and checking parity on the test part"):
        onnx_bytes = to_onnx_bytes(model, parts.train.X)
        parity = check_parity(model, onnx_bytes, parts.test.X, thresholds)
    if not parity.ok:
        raise ParityError(f"ONNX export differs from sklearn: {parity.to_dict()}")
    metrics["onnx_parity"] = parity.to_dict()

    created = datetime.now(UTC)
    version = f"{created:%Y%m%dT%H%M%SZ}-{sha256_hex(onnx_bytes)[:8]}"
    run_dir = config.out_dir / version
    run_dir.mkdir(parents=True, exist_ok=True)
    title = f"{chosen}, {config.split} split, test" + (" (synthetic data)" if config.synthetic else "")
    curve_paths = save_curves(parts.test.y, test_scores, run_dir, title=title)

    train_raw = parts.train.raw
    manifest = ModelManifest(
        name=config.model_name,
        version=version,
        created_at=created.isoformat(timespec="seconds"),
        model_type=chosen,
        features=list(FEATURE_NAMES),
        raw_scaling={"Time": _robust(train_raw["Time"]), "Amount": _robust(train_raw["Amount"])},
        explain_baseline=[float(v) for v in np.median(parts.train.X, axis=0)],
        thresholds=thresholds,
        metrics={**metrics, "candidates": candidates},
        training={
            "data_file": config.data.name,
            "data_sha256": loaded.sha256,
            "rows": n,
            "frauds": frauds,
            "synthetic": config.synthetic,
            "split": parts.describe(),
            "seed": config.seed,
            "fit_seconds": round(fit_seconds, 2),
            "model": describe(model),
        },
        libraries=_library_versions(),
    )
    report_md = _report_markdown(manifest, report)
    (run_dir / "report.md").write_text(report_md)
    (run_dir / "metrics.json").write_text(json.dumps(manifest.metrics, indent=2))
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    files = {
        ONNX_FILE: onnx_bytes,
        SKLEARN_FILE: buffer.getvalue(),
        "metrics.json": (run_dir / "metrics.json").read_bytes(),
        "report.md": report_md.encode(),
        **{p.name: p.read_bytes() for p in curve_paths},
    }
    (run_dir / ONNX_FILE).write_bytes(onnx_bytes)
    registry = ModelRegistry(store_from_uri(config.registry), config.model_name)
    with console.status(f"publishing {version} to {config.registry}"):
        published = registry.publish(manifest, files, promote=config.promote)
    (run_dir / "manifest.json").write_text(published.model_dump_json(indent=2))
    _print_summary(console, published, report, time.perf_counter() - t0, config)
    return TrainResult(published, run_dir, report, candidates)


def _library_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import skl2onnx
    import sklearn

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "onnx": onnx.__version__,
        "skl2onnx": skl2onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def _report_markdown(manifest: ModelManifest, report: str) -> str:
    test, val = manifest.metrics["test"], manifest.metrics["validation"]
    t: Thresholds = manifest.thresholds
    cm = test["confusion_matrix"]
    synthetic = manifest.training.get("synthetic")
    lines = [
        f"# Model {manifest.name} {manifest.version}",
        "",
        "> **Trained on SYNTHETIC data** generated by `fraud_training.datasets kaggle-like`; "
        "these numbers say nothing about real card fraud."
        if synthetic
        else f"Trained on `{manifest.training['data_file']}` (sha256 `{manifest.training['data_sha256'][:16]}…`).",
        "",
        f"Model `{manifest.model_type}` {manifest.training['model']}, split `{manifest.training['split']['kind']}` "
        f"({manifest.training['split']['train']['rows']:,} train / {manifest.training['split']['validation']['rows']:,} "
        f"validation / {manifest.training['split']['test']['rows']:,} test rows). Thresholds chosen on validation only.",
        "",
        "| part | average precision | ROC AUC | precision | recall | F1 | flagged recall |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {name} | {m['average_precision']:.4f} | {m['roc_auc']:.4f} | {m['precision']:.4f} | "
            f"{m['recall']:.4f} | {m['f1']:.4f} | {m['flagged_recall']:.4f} |"
            for name, m in (("validation", val), ("test", test))
        ),
        "",
        f"Decision bands: decline if score ≥ {t.decline:.6f}, review if ≥ {t.review:.6f} ({t.rule}).",
        "",
        f"Test confusion matrix at the decline threshold: TN {cm['tn']:,}, FP {cm['fp']:,}, FN {cm['fn']:,}, TP {cm['tp']:,}.",
        "",
        f"ONNX parity on the test part: max |Δscore| = {manifest.metrics['onnx_parity']['max_abs_diff']:.2e}, "
        f"decision mismatches = {manifest.metrics['onnx_parity']['decision_mismatches']}.",
        "",
        "```",
        report.rstrip(),
        "```",
        "",
        "![precision-recall](pr_curve.png) ![ROC](roc_curve.png)",
        "",
    ]
    return "\n".join(lines)


def _print_summary(
    console: Console, manifest: ModelManifest, report: str, seconds: float, config: TrainConfig
) -> None:
    test = manifest.metrics["test"]
    console.print()
    console.print("[bold]Classification report[/] (test part, decline threshold):")
    console.print(report, markup=False, highlight=False)
    table = Table(
        title=f"{manifest.name} {manifest.version}" + (" — SYNTHETIC DATA" if config.synthetic else "")
    )
    for col in (
        "model",
        "split",
        "AP",
        "ROC AUC",
        "precision",
        "recall",
        "F1",
        "review ≥",
        "decline ≥",
        "fit s",
    ):
        table.add_column(col, justify="right")
    table.add_row(
        manifest.model_type,
        config.split,
        f"{test['average_precision']:.4f}",
        f"{test['roc_auc']:.4f}",
        f"{test['precision']:.4f}",
        f"{test['recall']:.4f}",
        f"{test['f1']:.4f}",
        f"{manifest.thresholds.review:.4f}",
        f"{manifest.thresholds.decline:.4f}",
        f"{manifest.training['fit_seconds']:.1f}",
    )
    console.print(table)
    promoted = "promoted to current" if config.promote else "not promoted"
    console.print(
        f"published to {config.registry} ({promoted}); report in {config.out_dir / manifest.version}; "
        f"total {seconds:.1f} s"
    )


def build_parser() -> argparse.ArgumentParser:
    p = cli_parser("fraud_training.train", __doc__)
    p.add_argument(
        "--data",
        type=Path,
        default=Path("data/creditcard.csv"),
        help="Kaggle-schema CSV: Time, V1..V28, Amount, Class (default: %(default)s)",
    )
    p.add_argument(
        "--model",
        choices=[*MODEL_NAMES, "auto"],
        default="hgb",
        help="hgb: HistGradientBoosting (default); rf: RandomForest; logreg: logistic regression; "
        "auto: fit all three, keep the best validation average precision",
    )
    p.add_argument(
        "--split",
        choices=["time", "random"],
        default="time",
        help="time: earliest 60%% train / next 20%% validation / last 20%% test (default, no look-ahead); "
        "random: stratified 80/20 as in published notebooks (a quarter of train held out for thresholds)",
    )
    p.add_argument(
        "--registry",
        default=None,
        help="s3://bucket/prefix or a local directory (default: FRAUD_REGISTRY_URI or artifacts/registry)",
    )
    p.add_argument(
        "--model-name",
        default=None,
        help="model name in the registry (default: FRAUD_MODEL_NAME or creditcard-fraud)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=42,
        help="random seed for splits and models (default: %(default)s)",
    )
    p.add_argument(
        "--target-precision",
        type=float,
        default=None,
        help="decline at the lowest threshold reaching this validation precision (default: max F1)",
    )
    p.add_argument(
        "--review-recall",
        type=float,
        default=0.9,
        help="review band starts where validation recall reaches this (default: %(default)s)",
    )
    p.add_argument(
        "--out-dir",
        type=Path,
        default=Path("artifacts/runs"),
        help="where run reports go (default: %(default)s)",
    )
    p.add_argument("--no-promote", action="store_true", help="publish without moving current.json")
    p.add_argument("--no-publish", action="store_true", help="with --schema simulated: evaluate only")
    p.add_argument("--synthetic", action="store_true", help="label reports as trained on synthetic data")
    p.add_argument(
        "--schema",
        choices=[KAGGLE.name, SIMULATED.name],
        default=KAGGLE.name,
        help="kaggle: Time, V1..V28, Amount, Class (default); simulated: entity-keyed transactions "
        "from `datasets simulate`, evaluated with the 7/7/7-day protocol and Card Precision@100",
    )
    p.add_argument(
        "--report",
        type=Path,
        default=Path("docs/simulated-evaluation.md"),
        help="with --schema simulated: where the evaluation table goes (default: %(default)s)",
    )
    return p


def _evaluate_simulated(args: argparse.Namespace, argv: list[str] | None) -> int:
    import pandas as pd

    from fraud_training.entity_eval import evaluate_models, markdown_table

    console = make_console()
    with console.status(f"reading {args.data}"):
        frame = pd.read_parquet(args.data) if args.data.suffix == ".parquet" else pd.read_csv(args.data)
    console.print(
        f"loaded {args.data}: {len(frame):,} SYNTHETIC simulated transactions, fraud {frame['is_fraud'].mean():.2%}"
    )
    models = MODEL_NAMES if args.model == "auto" else (args.model,)
    with console.status("features (point-in-time), prequential validation and test for " + ", ".join(models)):
        results = evaluate_models(frame, seed=args.seed, models=models)
    command = "python -m fraud_training.train " + " ".join(argv if argv is not None else sys.argv[1:])
    table = markdown_table(results, command=command, data=f"`{args.data.name}`, {len(frame):,} transactions")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(table)
    args.report.with_suffix(".json").write_text(json.dumps(results, indent=2))
    console.print(table, markup=False, highlight=False)
    console.print(f"written {args.report} and {args.report.with_suffix('.json')}")
    if not args.no_publish:
        _publish_simulated(frame, results, args, console)
    return 0


def _publish_simulated(
    frame: Any, results: dict[str, Any], args: argparse.Namespace, console: Console
) -> None:
    """Fit the selected model on the final window, check its ONNX export, publish it (schema simulated)."""
    from fraud_training.entity_eval import fit_final

    name = results["selected"]
    with console.status(f"fitting {name} on the final training window and exporting it"):
        final = fit_final(frame, name, start=results["train_start_day"], seed=args.seed)
        choice = choose_thresholds(
            final.validation_labels,
            final.validation_scores,
            target_precision=args.target_precision,
            review_recall=args.review_recall,
        )
        onnx_bytes = to_onnx_bytes(final.model, final.X_train.astype(np.float32))
        parity = check_parity(final.model, onnx_bytes, final.X_test.astype(np.float32), choice.thresholds)
    if not parity.ok:
        raise ParityError(f"ONNX export differs from sklearn: {parity.to_dict()}")
    created = datetime.now(UTC)
    buffer = io.BytesIO()
    joblib.dump(final.model, buffer, compress=3)
    manifest = ModelManifest(
        name=args.model_name or "card-fraud-simulated",
        version=f"{created:%Y%m%dT%H%M%SZ}-{sha256_hex(onnx_bytes)[:8]}",
        created_at=created.isoformat(timespec="seconds"),
        model_type=name,
        schema_name=SIMULATED.name,
        features=list(SIMULATED.feature_names),
        raw_scaling={},
        explain_baseline=[float(v) for v in np.median(final.X_train, axis=0)],
        thresholds=choice.thresholds,
        metrics={
            "test": results["models"][name]["test"],
            "validation": results["models"][name]["validation"],
            "onnx_parity": parity.to_dict(),
        },
        training={
            "data_file": args.data.name,
            "synthetic": True,
            "rows": len(frame),
            "seed": args.seed,
            "train_start_day": results["train_start_day"],
            "model": describe(final.model),
        },
        libraries=_library_versions(),
    )
    registry = ModelRegistry(store_from_uri(args.registry or get_settings().registry_uri), manifest.name)
    published = registry.publish(
        manifest,
        {
            ONNX_FILE: onnx_bytes,
            SKLEARN_FILE: buffer.getvalue(),
            "metrics.json": json.dumps(manifest.metrics, indent=2).encode(),
        },
        promote=not args.no_promote,
    )
    console.print(
        f"published {published.name} {published.version} ({name}, schema simulated) to "
        f"{registry.store.uri}; serve it with FRAUD_MODEL_NAME={published.name}"
    )


def _train_kaggle(args: argparse.Namespace, argv: list[str] | None) -> int:
    settings = get_settings()
    config = TrainConfig(
        data=args.data,
        model=args.model,
        split=args.split,
        registry=args.registry or settings.registry_uri,
        model_name=args.model_name or settings.model_name,
        seed=args.seed,
        target_precision=args.target_precision,
        review_recall=args.review_recall,
        out_dir=args.out_dir,
        promote=not args.no_promote,
        synthetic=args.synthetic,
    )
    train(config)
    return 0


PIPELINES: dict[str, Callable[[argparse.Namespace, list[str] | None], int]] = {
    KAGGLE.name: _train_kaggle,
    SIMULATED.name: _evaluate_simulated,
}
"""The training pipeline of each data shape (`--schema`)."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return PIPELINES[args.schema](args, argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
