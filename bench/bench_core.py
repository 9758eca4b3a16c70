"""Training time, and scoring latency/throughput of the ONNX fast path vs plain sklearn.

    python -m bench.bench_core [--rows 284807] [--repeat 3000]

Same model, same rows, same run. Prints a table and writes bench/results/core-*.json.
"""

from __future__ import annotations

import io
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import joblib
from rich.table import Table

from bench.common import latencies_us, throughput, train_bench_model, write_results
from fraud_core.cli import cli_parser, run_cli
from fraud_core.manifest import SKLEARN_FILE
from fraud_core.provider import load_scorer
from fraud_core.scorer import Scorer, Shadow
from fraud_core.shapes.kaggle import LABEL_FIELD, build_feature_matrix
from fraud_training.console import make_console
from fraud_training.data import to_records

BATCH_SIZES = (1, 10, 100, 1_000, 10_000)


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("bench.bench_core", __doc__)
    parser.add_argument(
        "--rows",
        type=int,
        default=284_807,
        help="synthetic rows to train on (default: %(default)s)",
    )
    parser.add_argument(
        "--model",
        default="hgb",
        choices=["hgb", "rf", "logreg"],
        help="model (default: %(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3000,
        help="single-event calls per measurement (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    console = make_console()

    with tempfile.TemporaryDirectory() as tmp:
        with console.status(f"generating {args.rows:,} SYNTHETIC rows and training {args.model}"):
            bench = train_bench_model(Path(tmp), rows=args.rows, model=args.model)
        frame, registry, result, train_total = bench.frame, bench.registry, bench.result, bench.train_seconds
        scorer = load_scorer(registry)
        sk_model = joblib.load(io.BytesIO(registry.read_verified(scorer.manifest, SKLEARN_FILE)))

    test = frame.iloc[int(len(frame) * 0.8) :]
    records = to_records(test.head(10_000))
    X = build_feature_matrix(test.head(10_000))
    one = records[0]
    x1 = X[:1]
    import pandas as pd

    one_frame_cols = list(test.columns.drop(LABEL_FIELD))

    def sklearn_seed_style() -> Any:
        # what the classic service does per request: a one-row DataFrame, then predict_proba
        frame1 = pd.DataFrame([{k: one[k] for k in one_frame_cols}])
        return sk_model.predict_proba(build_feature_matrix(frame1))

    console.print("measuring single-event latency …")
    single = {
        "fast: score_one(dict), no reasons": latencies_us(
            lambda: scorer.score_one(one, explain="none"), repeat=args.repeat
        ),
        "fast: score_one(dict), with reasons": latencies_us(
            lambda: scorer.score_one(one, explain="all"), repeat=args.repeat
        ),
        "fast: ONNX on a ready row": latencies_us(lambda: scorer.score_matrix(x1), repeat=args.repeat),
        "sklearn: predict_proba on a ready row": latencies_us(
            lambda: sk_model.predict_proba(x1), repeat=max(args.repeat // 3, 200)
        ),
        "sklearn: per-request DataFrame + predict_proba": latencies_us(
            sklearn_seed_style, repeat=max(args.repeat // 3, 200)
        ),
    }
    console.print("measuring batch throughput …")
    # a shadow challenger of the same kind (the model itself): the cost of scoring it in the same pass
    shadowed = Scorer(
        scorer.manifest, scorer.model, shadow=Shadow.of(scorer.manifest, scorer.model, scorer.shape)
    )
    batch: dict[str, dict[str, float]] = {}
    for size in BATCH_SIZES:
        recs, Xb = records[:size], X[:size]
        batch[str(size)] = {
            "fast_records_rows_per_s": throughput(partial(scorer.score_batch, recs, explain="none"), size),
            "fast_records_with_challenger_rows_per_s": throughput(
                partial(shadowed.score_batch, recs, explain="none"), size
            ),
            "fast_flagged_reasons_rows_per_s": throughput(
                partial(scorer.score_batch, recs, explain="flagged"), size
            ),
            "fast_matrix_rows_per_s": throughput(partial(scorer.score_matrix, Xb), size),
            "sklearn_matrix_rows_per_s": throughput(partial(sk_model.predict_proba, Xb), size),
        }

    fast_p50 = single["fast: score_one(dict), no reasons"]["p50_us"]
    sk_p50 = single["sklearn: predict_proba on a ready row"]["p50_us"]
    payload = {
        "data": f"SYNTHETIC kaggle-like, {args.rows} rows",
        "model": {
            "type": args.model,
            "version": scorer.version,
            **result.manifest.training["model"],
        },
        "training": {
            "fit_seconds": result.manifest.training["fit_seconds"],
            "total_seconds": round(train_total, 2),
            "test_average_precision": result.manifest.metrics["test"]["average_precision"],
            "test_roc_auc": result.manifest.metrics["test"]["roc_auc"],
        },
        "single_event": single,
        "batch": batch,
        "ratios": {"single_p50_sklearn_over_fast": sk_p50 / fast_p50},
    }
    path = write_results("core", payload)

    t = Table(title=f"training ({args.model}, {args.rows:,} synthetic rows)")
    t.add_column("fit s", justify="right")
    t.add_column("train+eval+export+publish s", justify="right")
    t.add_column("test AP", justify="right")
    t.add_row(
        f"{result.manifest.training['fit_seconds']:.1f}",
        f"{train_total:.1f}",
        f"{result.manifest.metrics['test']['average_precision']:.4f}",
    )
    console.print(t)
    t = Table(title="single event (µs)")
    for c in ("path", "p50", "p99"):
        t.add_column(c, justify="right" if c != "path" else "left")
    for name, lat in single.items():
        t.add_row(name, f"{lat['p50_us']:.1f}", f"{lat['p99_us']:.1f}")
    console.print(t)
    t = Table(title="batch throughput (rows/s)")
    for c in (
        "batch",
        "fast: records",
        "+ shadow challenger",
        "fast: records + flagged reasons",
        "fast: matrix",
        "sklearn: matrix",
        "matrix ratio",
    ):
        t.add_column(c, justify="right")
    for label, m in batch.items():
        t.add_row(
            label,
            f"{m['fast_records_rows_per_s']:,.0f}",
            f"{m['fast_records_with_challenger_rows_per_s']:,.0f}",
            f"{m['fast_flagged_reasons_rows_per_s']:,.0f}",
            f"{m['fast_matrix_rows_per_s']:,.0f}",
            f"{m['sklearn_matrix_rows_per_s']:,.0f}",
            f"{m['fast_matrix_rows_per_s'] / m['sklearn_matrix_rows_per_s']:.1f}×",
        )
    console.print(t)
    console.print(
        f"single-event p50: fast {fast_p50:.1f} µs vs sklearn {sk_p50:.1f} µs → {sk_p50 / fast_p50:.0f}× faster; "
        f"results in {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
