"""Retrain from the scoring log and publish the result as the shadow challenger.

    python -m fraud_training.retrain [--log-uri URI] [--model auto|hgb|rf|logreg] [--days N] [--as-of ISO]

The training set is the scoring log joined with the label log: the feature vectors exactly as
the system computed them when it scored each transaction (point-in-time correct by construction,
nothing recomputed), labels as they had arrived by the cut-off (``--as-of``, default the newest
logged event). A transaction counts only once its label delay has passed; it is a fraud if a
fraud label arrived by the cut-off, legitimate otherwise. The earlier 75 % of those days train,
the later 25 % validate: the model family (``--model auto``: HistGradientBoosting and the random
forest are both fitted on the training days, the better validation AP wins), metrics, the
decision bands (the champion's alert rate there, so the team's volume stays the same) and the
ONNX parity gate. ``--days N`` keeps the most recent N label-complete days: after a drift, what
fraud looks like now. The model is published without
promotion and set as challenger; `registry gate` decides later, on traffic both scored.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt

from fraud_core.cli import cli_parser, run_cli
from fraud_core.errors import FraudCoreError
from fraud_core.event_log import Logs
from fraud_core.manifest import ONNX_FILE, SKLEARN_FILE, ModelManifest, Thresholds, sha256_hex
from fraud_core.model import OnnxModel
from fraud_core.monitoring.job import DAY
from fraud_core.monitoring.metrics import average_precision, card_precision_at_k
from fraud_core.monitoring.profile import build_profile
from fraud_core.monitoring.rows import ENTITY_FIELDS, scored_rows
from fraud_core.registry import open_registry
from fraud_core.settings import get_settings
from fraud_core.shapes import shape_named
from fraud_training.console import make_console
from fraud_training.export import compare_scores, to_onnx_bytes
from fraud_training.models import MODEL_NAMES, ModelName, describe, make_model

AUTO_CANDIDATES: tuple[ModelName, ...] = ("hgb", "rf")


class TrainingSetError(FraudCoreError, ValueError):
    """The logs cannot give a training set (too few label-complete rows or frauds)."""


@dataclass(frozen=True)
class TrainingSet:
    X: npt.NDArray[np.float32]
    y: npt.NDArray[np.int64]
    day: npt.NDArray[np.int64]
    entities: dict[str, npt.NDArray[np.str_]]
    cutoff: float


def training_set(
    logs: Logs,
    features: list[str],
    *,
    label_delay_days: int,
    as_of: float | None = None,
    labels_until: float | None = None,
    days: int | None = None,
) -> TrainingSet:
    """Logged feature vectors of transactions that happened ``label_delay_days`` before ``as_of``
    (event time; default the newest logged event), labelled with what had arrived by
    ``labels_until`` (arrival time, the label log's clock; default now)."""
    counts = dict.fromkeys(("malformed_rows", "other_model_versions", "duplicate_rows"), 0)
    data = scored_rows(logs.scoring.read(), features, None, counts)
    if len(data.ids) == 0:
        raise TrainingSetError(f"no scored transaction in {logs.scoring.store.uri}/{logs.scoring.kind}")
    cutoff = float(np.nanmax(data.event_time)) if as_of is None else as_of
    known_by = time.time() if labels_until is None else labels_until
    latest: dict[str, tuple[float, bool]] = {}
    for row in logs.labels.read():
        tid, at = row.get("transaction_id"), float(row.get("received_at") or 0.0)
        if not isinstance(tid, str) or at > known_by:
            continue  # a label that arrived after the cut-off was not known then
        if tid not in latest or at >= latest[tid][0]:
            latest[tid] = (at, bool(row.get("is_fraud")))
    frauds = {tid for tid, (_, fraud) in latest.items() if fraud}
    complete = cutoff - label_delay_days * DAY
    keep = (data.event_time <= complete) & np.isfinite(data.features).all(axis=1)
    if days is not None:  # the most recent label-complete days only: what the fraud looks like now
        keep &= data.event_time > complete - days * DAY
    y = np.array([tid in frauds for tid in data.ids[keep]], dtype=np.int64)
    if keep.sum() < 100 or y.sum() < 5:
        raise TrainingSetError(
            f"{int(keep.sum())} label-complete transactions and {int(y.sum())} frauds known by the cut-off: "
            "too few to retrain (at least 100 and 5)"
        )
    return TrainingSet(
        X=data.features[keep].astype(np.float32),
        y=y,
        day=np.floor(data.event_time[keep] / DAY).astype(np.int64),
        entities={key: data.entities[key][keep] for key in ENTITY_FIELDS},
        cutoff=cutoff,
    )


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = cli_parser("fraud_training.retrain", __doc__)
    parser.add_argument("--log-uri", default=settings.log_uri, help="default: FRAUD_LOG_URI")
    parser.add_argument("--registry", default=settings.registry_uri)
    parser.add_argument("--model-name", default=settings.model_name)
    parser.add_argument(
        "--model",
        default="auto",
        choices=["auto", *MODEL_NAMES],
        help=f"auto: the better of {' and '.join(AUTO_CANDIDATES)} on validation AP (default: %(default)s)",
    )
    parser.add_argument("--label-delay-days", type=int, default=settings.label_delay_days)
    parser.add_argument("--as-of", type=datetime.fromisoformat, default=None, help="event-time cut-off (ISO)")
    parser.add_argument(
        "--labels-until",
        type=datetime.fromisoformat,
        default=None,
        help="label arrival cut-off (ISO, default now)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--days", type=int, default=None, help="train on the most recent N label-complete days (default: all)"
    )
    args = parser.parse_args(argv)
    console = make_console()
    registry = open_registry(args.registry, args.model_name)
    _, champion = registry.current_manifest()
    logs = Logs.at(args.log_uri or "artifacts/logs")
    data = training_set(
        logs,
        list(champion.features),
        label_delay_days=args.label_delay_days,
        as_of=args.as_of.timestamp() if args.as_of else None,
        labels_until=args.labels_until.timestamp() if args.labels_until else None,
        days=args.days,
    )
    days = np.unique(data.day)
    split = days[int(len(days) * 0.75)] if len(days) > 1 else days[0] + 1
    train, valid = data.day < split, data.day >= split
    if not valid.any() or data.y[train].sum() == 0:
        raise TrainingSetError(f"{len(days)} label-complete days: not enough to train and validate")
    selection: dict[str, float | None] = {}
    fitted: dict[str, tuple[Any, npt.NDArray[np.float64]]] = {}
    for name in AUTO_CANDIDATES if args.model == "auto" else (args.model,):
        candidate = make_model(name, seed=args.seed).fit(data.X[train], data.y[train])
        fitted[name] = (candidate, candidate.predict_proba(data.X[valid])[:, 1])
        selection[name] = average_precision(data.y[valid], fitted[name][1])
    model_type = max(selection, key=lambda name: selection[name] or 0.0)
    model, scores = fitted[model_type]
    onnx_bytes = to_onnx_bytes(model, data.X[train])
    onnx_scores = OnnxModel(onnx_bytes, n_features=data.X.shape[1]).predict(data.X[valid])
    # the champion's alert and decline rates on the validation rows, at the new model's quantiles
    champion_scores = OnnxModel(
        registry.read_verified(champion, ONNX_FILE), n_features=len(champion.features)
    ).predict(data.X[valid])
    rates = [
        float(np.mean(champion_scores >= t))
        for t in (champion.thresholds.review, champion.thresholds.decline)
    ]
    review, decline = (float(np.quantile(scores, 1 - r)) if r > 0 else 1.0 for r in rates)
    thresholds = Thresholds(
        review=min(review, decline),
        decline=decline,
        rule=f"the champion's validation alert rate {rates[0]:.4%} and decline rate {rates[1]:.4%}",
    )
    parity = compare_scores(scores, onnx_scores, thresholds, part="validation")
    parity.require(model_type=model_type)
    created = datetime.now(UTC)
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    cards = data.entities["card_id"][valid]
    cp = (
        card_precision_at_k(data.day[valid], cards, data.y[valid], onnx_scores)[0]
        if cards.astype(bool).all()
        else None
    )
    metrics = {
        "validation": {
            "card_precision_at_100": cp,
            "average_precision": average_precision(data.y[valid], scores),
            "champion_average_precision": average_precision(data.y[valid], champion_scores),
            "rows": int(valid.sum()),
            "frauds": int(data.y[valid].sum()),
        },
        "onnx_parity": parity.to_dict(),
    }
    shape = shape_named(champion.schema_name)
    manifest = ModelManifest(
        name=champion.name,
        version=f"{created:%Y%m%dT%H%M%SZ}-{sha256_hex(onnx_bytes)[:8]}",
        created_at=created.isoformat(timespec="seconds"),
        model_type=model_type,
        schema_name=champion.schema_name,
        features=list(champion.features),
        raw_scaling=champion.raw_scaling,
        explain_baseline=[float(v) for v in np.median(data.X[train], axis=0)],
        thresholds=thresholds,
        metrics=metrics,
        training={
            "source": "scoring log",
            "log_uri": logs.scoring.store.uri,
            "cutoff": datetime.fromtimestamp(data.cutoff, UTC).isoformat(timespec="seconds"),
            "label_delay_days": args.label_delay_days,
            "rows": {"train": int(train.sum()), "validation": int(valid.sum())},
            "frauds": {"train": int(data.y[train].sum()), "validation": int(data.y[valid].sum())},
            "model": describe(model),
            "selection": {"on": "validation average precision", "candidates": selection},
            "retrained_from": champion.version,
        },
        libraries=champion.libraries,
        reference=build_profile(
            list(champion.features),
            data.X[valid],
            onnx_scores,
            entities={
                f: data.entities[key][valid]
                for f, key in shape.feature_entities.items()
                if f in champion.features
            },
        ),
    )
    registry.publish(
        manifest,
        {
            ONNX_FILE: onnx_bytes,
            SKLEARN_FILE: buffer.getvalue(),
            "metrics.json": json.dumps(metrics).encode(),
        },
        promote=False,
    )
    registry.challenge(manifest.version)
    v = metrics["validation"]
    console.print(
        f"retrained {model_type} on {int(train.sum()):,} logged transactions (cut-off "
        f"{manifest.training['cutoff']}); validation AP {_fmt(v['average_precision'])} vs the champion's "
        f"{_fmt(v['champion_average_precision'])} on the same {v['rows']:,} rows"
    )
    console.print(
        f"published {manifest.version} as challenger: `python -m fraud_training.registry gate` decides"
    )
    return 0


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
