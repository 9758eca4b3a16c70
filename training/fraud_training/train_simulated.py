"""The simulated shape's training pipeline: Handbook evaluation, the report, and publication.

    python -m fraud_training.train --data data/simulated.parquet --schema simulated

Evaluates the baseline rows and the model-selection candidates with the Handbook's protocol
(`fraud_training.simulated_eval`), writes the report (`artifacts/` unless `--report` says
otherwise), then fits the selected model on the newest test fold's training week, exports it to
ONNX with the parity gate, sets decision bands under the review budget, and publishes it.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

import joblib
import numpy as np
import pandas as pd
from rich.console import Console

from fraud_core.manifest import ONNX_FILE, SKLEARN_FILE, ModelManifest, Thresholds, sha256_hex
from fraud_core.model import OnnxModel
from fraud_core.monitoring.profile import build_profile
from fraud_core.registry import ModelRegistry, store_from_uri
from fraud_core.settings import get_settings
from fraud_core.shapes.simulated import SIMULATED
from fraud_training.console import make_console
from fraud_training.data import DatasetError, file_sha256, read_provenance
from fraud_training.export import compare_scores, to_onnx_bytes
from fraud_training.handbook import DELTA_DELAY, DELTA_TEST, DELTA_TRAIN, fold_split
from fraud_training.models import describe
from fraud_training.registry import decide_promotion, promotion_message, registry_command
from fraud_training.simulated_eval import alert_budget_thresholds, candidate_named, evaluate, load

HANDBOOK_PUBLISHED = (
    "The Handbook's own results (Le Borgne et al., ch. 5, model selection, test mean over 4 folds, its "
    "default dataset): XGBoost / random forest AP 0.687-0.694, CP@100 0.303-0.304, AUC about 0.87."
)


def run(
    args: argparse.Namespace, argv: list[str] | None, *, policy: Any, library_versions: dict[str, str]
) -> int:
    console = make_console()
    if not args.data.is_file():
        raise DatasetError(
            f"{args.data} does not exist: generate SYNTHETIC simulated transactions with "
            f"`python -m fraud_training.datasets simulate --out {args.data}` (--reference-seeds for the "
            "Handbook's own dataset)"
        )
    with console.status(f"reading {args.data}"):
        frame = pd.read_parquet(args.data) if args.data.suffix == ".parquet" else pd.read_csv(args.data)
    console.print(f"loaded {args.data}: {len(frame):,} SYNTHETIC simulated transactions")
    started = time.perf_counter()
    with console.status("features, validation folds, test folds") as status:
        results = evaluate(frame, seed=args.seed, progress=lambda s: status.update(s))
    results["seconds"] = time.perf_counter() - started
    command = "python -m fraud_training.train " + " ".join(argv if argv is not None else sys.argv[1:])
    report = args.report or args.out_dir / "simulated-evaluation.md"
    table = markdown(results, command=command, data=f"`{args.data.name}`, {len(frame):,} transactions")
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(table)
    report.with_suffix(".json").write_text(json.dumps(results, indent=2))
    console.print(table, markup=False, highlight=False)
    console.print(f"written {report} and {report.with_suffix('.json')}")
    if not args.no_publish:
        publish(frame, results, args, console, policy=policy, library_versions=library_versions)
    return 0


def _mean(pair: Any, digits: int = 3) -> str:
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def markdown(results: dict[str, Any], *, command: str, data: str) -> str:
    """The evaluation table: baseline rows, the selected model, per fold and mean ± std."""
    starts = ", ".join(results["test_train_starts"])
    lines = [
        "# Evaluation on simulated card transactions (the Handbook's protocol)",
        "",
        f"Data: {data} (SYNTHETIC: `fraud_training.simulator`). Reproduce: `{command}`",
        "",
        "Protocol (`fraud_training.handbook`): train 7 days, 7-day label delay, test 7 days; the test set "
        "drops cards with a fraud in the training week and, each test day, cards with a fraud known by "
        "then; Card Precision@100 per day on the remaining cards, detected cards leaving later days. "
        f"4 test folds training from {starts}; model selection on 4 validation folds 14 days earlier "
        "(mean average precision; as in the Handbook, folds a week apart make the two newest validation "
        "folds the same weeks as the two oldest test folds); model choice on validation only, the test "
        "results read once.",
        "",
        "| model | features | test AUC | test AP | test CP@100 | validation AP | fit time |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in results["candidates"].items():
        if "test" not in c:
            continue
        mark = " (selected)" if name == results["selected"] else ""
        features = f"{len(c['features'])}" + (" (Handbook baseline)" if len(c["features"]) == 15 else "")
        validation = _mean(c["validation"]["average_precision"], 4) if "validation" in c else "—"
        # per distinct fold: a fold that both validates and tests was fitted once
        fitted = {f["train_start"]: f["fit_seconds"] for f in c.get("validation", {}).get("folds", [])}
        fitted.update({f["train_start"]: f["fit_seconds"] for f in c["test"]["folds"]})
        seconds = sum(fitted.values())
        t = c["test"]
        lines.append(
            f"| {name}{mark} | {features} | {_mean(t['roc_auc'])} | {_mean(t['average_precision'], 4)} | "
            f"{_mean(t['card_precision_at_100'])} | {validation} | {seconds:.0f} s |"
        )
    ceilings = results.get("ceilings", {})
    if ceilings:
        lines += [
            "",
            f"Ceilings on the same test sets: CP@100 of a perfect ranking {_mean(ceilings['card_precision_at_100_perfect'])}; "
            f"of a ranking perfect only for the frauds detectable from what is known at scoring time "
            f"{_mean(ceilings['card_precision_at_100_detectable'])} (AP {_mean(ceilings['average_precision_detectable'])}).",
        ]
    lines += ["", HANDBOOK_PUBLISHED, "", "Per test fold (AP / CP@100):", ""]
    for name, c in results["candidates"].items():
        if "test" in c:
            folds = "; ".join(
                f"{f['train_start']}: {f['average_precision']:.3f} / {f['card_precision_at_100']:.3f}"
                for f in c["test"]["folds"]
            )
            lines.append(f"* {name}: {folds}")
    lines += [
        "",
        "Search space (validation mean AP): "
        + "; ".join(
            f"{n} {_mean(c['validation']['average_precision'], 4)}"
            for n, c in results["candidates"].items()
            if "validation" in c
        )
        + f". Features computed in {results['feature_seconds']:.0f} s; whole run {results.get('seconds', 0):.0f} s.",
    ]
    choice = results.get("selection", {})
    if "average_premium" in choice:
        verdict = "selected" if results["selected"] == choice["best_validation_ap"] else "not selected"
        lines += [
            "",
            f"Selection: {choice['best_validation_ap']} has the best validation AP, {choice['average_premium']:+.4f} "
            f"over the best single model ({choice['best_single']}), with a standard error of "
            f"{choice['premium_standard_error']:.4f} on the per-fold differences: {verdict} (an average, "
            "which costs its members' sum to serve, is selected only when its premium exceeds that error).",
        ]
    return "\n".join(lines) + "\n"


def publish(
    frame: pd.DataFrame,
    results: dict[str, Any],
    args: argparse.Namespace,
    console: Console,
    *,
    policy: Any,
    library_versions: dict[str, str],
) -> None:
    """Fit the selected model on the newest test fold's training week; thresholds from the week
    before (validation, all transactions); ONNX with the parity gate; publish under the policy."""
    from sklearn.metrics import average_precision_score

    candidate = candidate_named(results["selected"])
    data = load(frame)
    start = results["folds"]["test"][0]
    X = data.matrix(candidate.features)
    with console.status(f"fitting {candidate.name} for publication"):
        split = fold_split(data.day, data.card, data.y, train_start_day=start)
        probe_split = fold_split(
            data.day, data.card, data.y, train_start_day=start - DELTA_DELAY - DELTA_TEST
        )
        probe = candidate.make(args.seed).fit(X[probe_split.train], data.y[probe_split.train])
        # The alert volume the team will see: every transaction of the validation week.
        week = (data.day >= start - DELTA_TEST) & (data.day < start)
        bands = alert_budget_thresholds(
            data.day[week],
            data.card[week],
            data.y[week],
            probe.predict_proba(X[week])[:, 1],
            review_cards_per_day=args.review_budget,
            decline_precision=args.decline_precision,
        )
        model = candidate.make(args.seed).fit(X[split.train], data.y[split.train])
        X_test, y_test = X[split.test], data.y[split.test]
        test_scores = model.predict_proba(X_test)[:, 1]
        onnx_bytes = to_onnx_bytes(model, X[split.train])
        thresholds = Thresholds(review=bands["review"], decline=bands["decline"], rule=bands["rule"])
        served_model = OnnxModel(onnx_bytes, n_features=X.shape[1])
        onnx_scores = served_model.predict(X_test)
        # drift reference: every transaction of the test week (live traffic, unfiltered), held out
        served = (data.day >= start + DELTA_TRAIN + DELTA_DELAY) & (
            data.day < start + DELTA_TRAIN + DELTA_DELAY + DELTA_TEST
        )
        ids = {"card_id": data.card[served], "terminal_id": data.terminal[served]}
        reference = build_profile(
            candidate.features,
            X[served],
            served_model.predict(X[served]),
            entities={f: ids[key] for f, key in SIMULATED.feature_entities.items()},
        )
        parity = compare_scores(test_scores, onnx_scores, thresholds, part="test")
    parity.require(model_type=candidate.model_type)
    console.print(f"ONNX parity {parity.summary()}")
    console.print(
        f"decision bands: review ≥ {bands['review']:.4f} → {bands['expected_review_cards_per_day']:.0f} cards a day "
        f"(budget {args.review_budget}); decline ≥ {bands['decline']:.4f} → "
        f"{bands['expected_decline_transactions_per_day']:.1f} transactions a day"
    )
    if bands["warning"]:
        console.print(f"[yellow]warning:[/] {bands['warning']}")
    if bands["expected_review_cards_per_day"] > args.review_budget:
        console.print(f"[yellow]warning:[/] the review band flags more than {args.review_budget} cards a day")
    created = datetime.now(UTC)
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    provenance = read_provenance(args.data)
    selected = results["candidates"][candidate.name]
    manifest = ModelManifest(
        name=args.model_name or "card-fraud-simulated",
        version=f"{created:%Y%m%dT%H%M%SZ}-{sha256_hex(onnx_bytes)[:8]}",
        created_at=created.isoformat(timespec="seconds"),
        model_type=candidate.model_type,
        schema_name=SIMULATED.name,
        features=list(candidate.features),
        raw_scaling={},
        explain_baseline=[float(v) for v in np.median(X[split.train], axis=0)],
        thresholds=thresholds,
        metrics={
            "test": {
                m: selected["test"][m][0] for m in ("roc_auc", "average_precision", "card_precision_at_100")
            },
            "test_folds": selected["test"]["folds"],
            "validation": selected["validation"],
            "alerts": bands,
            "onnx_parity": parity.to_dict(),
        },
        training={
            "data_file": args.data.name,
            "data_sha256": file_sha256(args.data),
            "synthetic": True,
            "provenance": provenance.to_dict() if provenance else None,
            "rows": len(frame),
            "split": {
                "kind": "handbook 7/7/7 days",
                "train_start": str((data.first_day + pd.Timedelta(days=start)).date()),
            },
            "candidate": candidate.name,
            "seed": args.seed,
            "model": describe(model),
        },
        libraries=library_versions,
        reference=reference,
    )
    registry = ModelRegistry(store_from_uri(args.registry or get_settings().registry_uri), manifest.name)
    promotion = decide_promotion(
        registry,
        policy,
        candidate=manifest,
        candidate_average_precision=float(average_precision_score(y_test, test_scores)),
        X_test=X_test,
        y_test=y_test,
    )
    published = registry.publish(
        manifest,
        {
            ONNX_FILE: onnx_bytes,
            SKLEARN_FILE: buffer.getvalue(),
            "metrics.json": json.dumps(manifest.metrics, indent=2).encode(),
        },
        promote=promotion.promoted,
    )
    command = registry_command(registry.store.uri, registry.model_name, "promote", published.version)
    console.print(
        f"{candidate.name}, schema simulated, in {registry.store.uri}: "
        + promotion_message(promotion, version=published.version, command=command)
    )
    console.print(f"serve it with FRAUD_MODEL_NAME={published.name}")
