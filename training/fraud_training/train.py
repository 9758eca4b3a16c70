"""Train, evaluate and publish a fraud model.

python -m fraud_training.train --data data/creditcard.csv [--model hgb|rf|logreg|auto]

Every run publishes a version; it becomes current only with --promote, when the registry has no
current version, or when it beats the serving model's average precision on the same test rows.
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
from fraud_core.model import OnnxModel
from fraud_core.monitoring.profile import build_profile
from fraud_core.registry import ModelRegistry, store_from_uri
from fraud_core.settings import get_settings
from fraud_core.shapes.kaggle import FEATURE_NAMES, KAGGLE
from fraud_core.shapes.simulated import SIMULATED
from fraud_training.console import make_console
from fraud_training.data import (
    LoadedData,
    Split,
    SplitName,
    load_csv,
    split,
)
from fraud_training.evaluation import CURVE_FILES, choose_thresholds, evaluate, save_curves, text_report
from fraud_training.export import Parity, ParityError, compare_scores, to_onnx_bytes
from fraud_training.models import MODEL_NAMES, ModelName, describe, make_model
from fraud_training.registry import (
    PROMOTE_POLICIES,
    PromotePolicy,
    Promotion,
    decide_promotion,
    promotion_message,
    registry_command,
)

__all__ = ["ParityError", "Promotion", "TrainConfig", "TrainResult", "main", "train"]


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
    promote: PromotePolicy = "auto"
    """``auto``: current only if the registry has none or the new version beats the serving
    model's test AP on the same rows; ``always``: force (``--promote``); ``never``: publish only."""
    synthetic: bool = False
    """Label the data synthetic even without a provenance sidecar (our generators write one)."""

    def __post_init__(self) -> None:
        if self.promote not in PROMOTE_POLICIES:
            error = ValueError if isinstance(self.promote, str) else TypeError
            raise error(
                f"TrainConfig.promote must be one of {PROMOTE_POLICIES}, not {self.promote!r} "
                "(the former True is 'always', False is 'never')"
            )


@dataclass
class TrainResult:
    manifest: ModelManifest
    """The published manifest (published always; current only if ``promotion.promoted``)."""
    run_dir: Path
    report: str
    candidates: dict[str, dict[str, float]]
    promotion: Promotion


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
    """Load → split → fit (→ select) → thresholds on validation → ONNX parity → test metrics →
    reports → publish → promote if the policy says so."""
    console = console or make_console()
    t0 = time.perf_counter()
    loaded: LoadedData = load_csv(config.data, progress=console.is_terminal)
    synthetic = config.synthetic or loaded.synthetic
    _print_loaded(console, loaded, synthetic)
    parts = split(loaded.frame, config.split, seed=config.seed)
    console.print(
        f"split={config.split}: "
        + ", ".join(
            f"{k} {v['rows']:,} rows/{v['frauds']} frauds" for k, v in parts.describe().items() if k != "kind"
        )
    )
    chosen, model, fit_seconds, candidates = _fit_candidates(config, parts, console)

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
    # The export is checked right after fitting, on validation first: a model that serving
    # would score differently stops the run before any report, plot or publication.
    start = time.perf_counter()
    with console.status("exporting to ONNX and checking parity on the validation part"):
        onnx_bytes = to_onnx_bytes(model, parts.train.X)
        onnx_model = OnnxModel(onnx_bytes, n_features=len(FEATURE_NAMES))
        parity_val = _parity(onnx_model, val_scores, parts, "validation", thresholds, chosen)
    test_scores = model.predict_proba(parts.test.X)[:, 1]
    parity_test = _parity(onnx_model, test_scores, parts, "test", thresholds, chosen)
    export_seconds = time.perf_counter() - start
    for parity in (parity_val, parity_test):
        console.print(f"ONNX parity {parity.summary()}")
    metrics = {
        "validation": evaluate(parts.validation.y, val_scores, thresholds),
        "test": evaluate(parts.test.y, test_scores, thresholds),
        "onnx_parity": parity_test.to_dict(),
        "onnx_parity_validation": parity_val.to_dict(),
    }
    report = text_report(parts.test.y, test_scores, thresholds)

    created = datetime.now(UTC)
    version = f"{created:%Y%m%dT%H%M%SZ}-{sha256_hex(onnx_bytes)[:8]}"
    # by model name too: two models trained in the same second can share a version string
    run_dir = config.out_dir / config.model_name / version
    run_dir.mkdir(parents=True, exist_ok=True)
    title = f"{chosen}, {config.split} split, test" + (" (synthetic data)" if synthetic else "")
    curve_paths = save_curves(parts.test.y, test_scores, run_dir, title=title, thresholds=thresholds)

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
            "rows": len(loaded.frame),
            "frauds": int(loaded.frame["Class"].sum()),
            "synthetic": synthetic,
            "provenance": loaded.provenance.to_dict() if loaded.provenance else None,
            "provenance_matches": loaded.provenance_matches,
            "split": parts.describe(),
            "seed": config.seed,
            "fit_seconds": round(fit_seconds, 2),
            "onnx_export_and_parity_seconds": round(export_seconds, 2),
            "model": describe(model),
        },
        libraries=_library_versions(),
        # the served (ONNX) model's scores: it rounds tiny probabilities differently from sklearn
        reference=build_profile(FEATURE_NAMES, parts.test.X, onnx_model.predict(parts.test.X)),
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
    with console.status(f"comparing with the current version of {config.model_name} ({config.promote})"):
        promotion = decide_promotion(
            registry,
            config.promote,
            candidate=manifest,
            candidate_average_precision=metrics["test"]["average_precision"],
            X_test=parts.test.X,
            y_test=parts.test.y,
        )
    with console.status(f"publishing {version} to {config.registry}"):
        published = registry.publish(manifest, files, promote=promotion.promoted)
    (run_dir / "manifest.json").write_text(published.model_dump_json(indent=2))
    (run_dir / "promotion.json").write_text(json.dumps(promotion.to_dict(), indent=2))
    _print_summary(console, published, report, config)
    console.print(
        promotion_message(
            promotion,
            version=version,
            command=registry_command(config.registry, config.model_name, "promote", version),
        )
    )
    console.print(f"registry {config.registry}; report in {run_dir}; total {time.perf_counter() - t0:.1f} s")
    return TrainResult(published, run_dir, report, candidates, promotion)


def _print_loaded(console: Console, loaded: LoadedData, synthetic: bool) -> None:
    n, frauds = len(loaded.frame), int(loaded.frame["Class"].sum())
    console.print(
        f"loaded {loaded.path}: {n:,} rows, {frauds} frauds ({frauds / n:.3%})"
        + (" [bold yellow]SYNTHETIC DATA[/]" if synthetic else "")
    )
    if loaded.provenance is not None:
        params = ", ".join(f"{k} {v}" for k, v in loaded.provenance.parameters.items())
        console.print(f"  provenance: generated by `{loaded.provenance.generator}` ({params})")
        if not loaded.provenance_matches:
            console.print(
                f"[yellow]warning:[/] {loaded.path} changed since it was generated (its sha256 differs from "
                f"{loaded.path}.provenance.json); still treated as SYNTHETIC. If it is real data, delete "
                "that provenance file."
            )


def _fit_candidates(
    config: TrainConfig, parts: Split, console: Console
) -> tuple[ModelName, Any, float, dict[str, dict[str, float]]]:
    """Fit the requested model, or every model with ``auto``; keep the best validation AP."""
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
    return chosen, model, fit_seconds, candidates


def _parity(
    onnx_model: OnnxModel,
    reference: Any,
    parts: Split,
    part: str,
    thresholds: Thresholds,
    model_type: str,
) -> Parity:
    """Compare ONNX with sklearn on one part; raise ParityError (what differed, by how much) if it fails."""
    rows = getattr(parts, part)
    parity = compare_scores(
        reference, onnx_model.predict(rows.X), thresholds, part=part, row_ids=rows.source_rows
    )
    parity.require(model_type=model_type)
    return parity


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
    parity = manifest.metrics["onnx_parity"]
    lines = [
        f"# Model {manifest.name} {manifest.version}",
        "",
        _data_sentence(manifest.training),
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
        f"ONNX parity on the test part: max |Δscore| = {parity['max_abs_diff']:.2e} "
        f"(tolerance {parity['tolerance']:.0e}); {parity['borderline_flips']} borderline decision flip(s) "
        f"(sklearn score within the tolerance of a threshold), {parity['other_flips']} other.",
        "",
        "```",
        report.rstrip(),
        "```",
        "",
        " ".join(f"![{name}]({name})" for name in CURVE_FILES),
        "",
    ]
    return "\n".join(lines)


def _data_sentence(training: dict[str, Any]) -> str:
    sha = f"sha256 `{str(training.get('data_sha256', ''))[:16]}…`"
    if not training.get("synthetic"):
        return f"Trained on `{training['data_file']}` ({sha})."
    provenance = training.get("provenance") or {}
    origin = (
        f"generated by `{provenance['generator']}`" if provenance else "marked synthetic with `--synthetic`"
    )
    params = ", ".join(f"{k} {v}" for k, v in provenance.get("parameters", {}).items())
    return (
        f"> **Trained on SYNTHETIC data**: `{training['data_file']}` ({sha}), {origin}"
        + (f" ({params})" if params else "")
        + "; these numbers say nothing about real card fraud."
    )


def _print_summary(console: Console, manifest: ModelManifest, report: str, config: TrainConfig) -> None:
    test = manifest.metrics["test"]
    console.print()
    console.print("[bold]Classification report[/] (test part, decline threshold):")
    console.print(report, markup=False, highlight=False)
    table = Table(
        title=f"{manifest.name} {manifest.version}"
        + (" — SYNTHETIC DATA" if manifest.training.get("synthetic") else "")
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
    promotion = p.add_mutually_exclusive_group()
    promotion.add_argument(
        "--promote",
        action="store_true",
        help="make the new version current whatever the comparison says (default: only when the registry "
        "has no current version, or when it beats the current model's average precision on the same "
        "test rows)",
    )
    promotion.add_argument(
        "--no-promote",
        action="store_true",
        help="publish without moving current.json, whatever the comparison",
    )
    p.add_argument("--no-publish", action="store_true", help="with --schema simulated: evaluate only")
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="label reports as trained on synthetic data (automatic for files written by "
        "`fraud_training.datasets`, which leave a <file>.provenance.json beside them)",
    )
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
        default=None,
        help="with --schema simulated: where the evaluation table goes (default: <out-dir>/simulated-evaluation.md; "
        "docs/simulated-evaluation.md is regenerated only when named here)",
    )
    p.add_argument(
        "--protocol",
        choices=["handbook"],
        default="handbook",
        help="with --schema simulated: the Fraud Detection Handbook's protocol (test-set filter, its "
        "Card Precision@100, 4 test folds, model selection on validation folds) (default: %(default)s)",
    )
    p.add_argument(
        "--review-budget",
        type=int,
        default=100,
        help="with --schema simulated: cards a day the team can review; the review band is set on "
        "validation to stay within it (default: %(default)s, the Handbook's k)",
    )
    p.add_argument(
        "--decline-precision",
        type=float,
        default=0.9,
        help="with --schema simulated: decline at the lowest threshold reaching this validation precision "
        "(default: %(default)s; none when unreachable)",
    )
    return p


def _train_simulated(args: argparse.Namespace, argv: list[str] | None) -> int:
    from fraud_training import train_simulated

    return train_simulated.run(args, argv, policy=_policy(args), library_versions=_library_versions())


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
        promote=_policy(args),
        synthetic=args.synthetic,
    )
    train(config)
    return 0


def _policy(args: argparse.Namespace) -> PromotePolicy:
    return "always" if args.promote else "never" if args.no_promote else "auto"


PIPELINES: dict[str, Callable[[argparse.Namespace, list[str] | None], int]] = {
    KAGGLE.name: _train_kaggle,
    SIMULATED.name: _train_simulated,
}
"""The training pipeline of each data shape (`--schema`)."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return PIPELINES[args.schema](args, argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
