"""The main job end to end on embedded defaults — no servers, no Docker.

    python -m fraud_devstack.demo        (what `make demo` runs)

data (real data/creditcard.csv if present, else SYNTHETIC Kaggle-like data) → train → publish to
the local registry → load the model the way the services do → score sample transactions.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from fraud_core.cli import cli_parser, run_cli
from fraud_core.provider import ModelProvider
from fraud_core.registry import open_registry
from fraud_core.settings import get_settings
from fraud_core.shapes.kaggle import LABEL_FIELD, PCA_FIELDS
from fraud_devstack.lambda_context import LocalLambdaContext
from fraud_training.console import make_console
from fraud_training.datasets import write_kaggle_like
from fraud_training.train import TrainConfig, train

REAL_DATA = Path("data/creditcard.csv")
SYNTHETIC_DATA = Path("data/kaggle_like.csv")


def _sample(frame: Any, *, legit: int, fraud: int, seed: int) -> list[dict[str, Any]]:
    """A few transactions from the test part (the latest 20 %), frauds included, as JSON-like dicts."""
    test = frame.iloc[int(len(frame) * 0.8) :]
    rng = np.random.default_rng(seed)
    picks = [
        *rng.choice(test.index[test[LABEL_FIELD] == 0], legit, replace=False),
        *rng.choice(test.index[test[LABEL_FIELD] == 1], fraud, replace=False),
    ]
    rng.shuffle(picks)
    return [{"transaction_id": f"t_{i}", **{k: float(v) for k, v in test.loc[i].items()}} for i in picks]


EVENTS = Path(__file__).resolve().parents[2] / "events"


def _score_through_lambda_handler(sample: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """POST the sample to /v1/score/batch through the API Lambda handler (Powertools → Mangum →
    FastAPI), with an API Gateway HTTP API event built from events/apigw-v2-score.json."""
    import json
    import os

    # The handler's JSON logs and EMF metrics are for CloudWatch; keep the demo's terminal readable.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    from fraud_api.handler import lambda_handler

    event = json.loads((EVENTS / "apigw-v2-score.json").read_text())
    body = json.dumps({"transactions": sample})
    event.update(rawPath="/v1/score/batch", routeKey="POST /v1/score/batch", body=body)
    event["requestContext"]["http"]["path"] = "/v1/score/batch"
    event["headers"]["content-length"] = str(len(body))
    with contextlib.redirect_stdout(io.StringIO()):  # EMF metric documents, meant for CloudWatch
        response = lambda_handler(event, LocalLambdaContext())
    if response["statusCode"] != 200:
        raise RuntimeError(f"API Lambda answered {response['statusCode']}: {response['body'][:500]}")
    return {r["transaction_id"]: r for r in json.loads(response["body"])["results"]}


def _stream_through_lambda_handler(sample: list[dict[str, Any]], console: Any) -> None:
    """Wrap the sample (plus one poison record) in a Kafka event, invoke the stream handler twice:
    the second delivery shows that redelivery is deduplicated."""
    import json

    from fraud_core.stream.sinks import InMemorySink
    from fraud_devstack.kafka_events import build_event
    from fraud_stream import wiring
    from fraud_stream.handler import lambda_handler

    messages = [
        {
            "topic": "transactions",
            "partition": i % 2,
            "offset": i,
            "key": str(r["transaction_id"]).encode(),
            "value": json.dumps(r).encode(),
        }
        for i, r in enumerate(sample)
    ]
    messages.append(
        {"topic": "transactions", "partition": 0, "offset": len(sample), "key": b"bad", "value": b"{oops"}
    )
    event = build_event(messages)
    for attempt in ("first delivery", "redelivery of the same batch"):
        with contextlib.redirect_stdout(io.StringIO()):
            response = lambda_handler(event, LocalLambdaContext())
        sink = wiring.get_sink()
        counts = {t: len(v) for t, v in sink.topics.items()} if isinstance(sink, InMemorySink) else {}
        console.print(
            f"{attempt}: batchItemFailures={response['batchItemFailures']} → published so far {counts}"
        )
    published: InMemorySink = sink if isinstance(sink, InMemorySink) else InMemorySink()
    scores = published.values("fraud-scores")
    console.print(
        f"the redelivery changed nothing (Kafka delivers at least once; the stream deduplicates by "
        f"transaction_id). The first 3 of the {len(scores)} results published to fraud-scores:"
    )
    for line in scores[:3]:
        shown = {k: line[k] for k in ("transaction_id", "fraud_score", "decision")}
        console.print(f"Processed: {shown}")
    dlq = published.values("fraud-dlq")
    if dlq:
        console.print(
            f"the poison record went to fraud-dlq, its neighbours were scored: offset {dlq[0]['offset']}: {dlq[0]['reason']}"
        )


def _monitor(frame: Any, manifest: Any, console: Any) -> None:
    """Score the test part (the latest 20 %) through the stream Lambda handler in batches, feed
    back every label by transaction id, and run the monitor job over the scoring and label logs."""
    import json
    import math

    from fraud_core.event_log import Logs
    from fraud_core.monitoring.job import DAY, MonitorConfig, run_monitor
    from fraud_devstack.kafka_events import build_event
    from fraud_stream.handler import lambda_handler
    from fraud_training.monitor import print_report

    test = frame.iloc[int(len(frame) * 0.8) :]
    records = [
        {"transaction_id": f"m{i}", **{k: float(v) for k, v in row.items() if k != LABEL_FIELD}}
        for i, row in zip(test.index, test.to_dict("records"), strict=True)
    ]
    labels = [
        {"type": "label", "transaction_id": f"m{i}", "is_fraud": int(y)}
        for i, y in zip(test.index, test[LABEL_FIELD], strict=True)
    ]
    messages = [json.dumps(m).encode() for m in (*records, *labels)]
    for start in range(0, len(messages), 1000):
        event = build_event(
            [
                {"topic": "demo-monitoring", "partition": 0, "offset": start + i, "value": value}
                for i, value in enumerate(messages[start : start + 1000])
            ]
        )
        with contextlib.redirect_stdout(io.StringIO()):
            lambda_handler(event, LocalLambdaContext())
    settings = get_settings()
    last = float(test["Time"].max())
    # every label of the demo is in: measure realised performance on every day (label delay 0)
    config = MonitorConfig(label_delay_days=0, lookback_days=1, as_of=math.ceil(last / DAY) * DAY)
    report = run_monitor(Logs.at(settings.log_uri or "artifacts/logs"), manifest, config)
    console.print(
        f"{len(records):,} transactions and {len(labels):,} labels through the stream handler, logged "
        f"under {settings.log_uri}; the monitor (python -m fraud_training.monitor run) over them:"
    )
    print_report(console, report)


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("fraud_devstack.demo", __doc__)
    parser.add_argument(
        "--rows",
        type=int,
        default=284_807,
        help="synthetic rows when no real data (default: %(default)s)",
    )
    parser.add_argument(
        "--model",
        default="hgb",
        choices=["hgb", "rf", "logreg", "auto"],
        help="model to train (default: %(default)s)",
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=12,
        help="transactions to score at the end (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    console = make_console()
    settings = get_settings()

    if REAL_DATA.exists():
        data, synthetic = REAL_DATA, False
        console.rule(f"1. data: real Kaggle file {REAL_DATA}")
    else:
        data, synthetic = SYNTHETIC_DATA, True
        console.rule(f"1. data: {REAL_DATA} absent → SYNTHETIC Kaggle-like data")
        if not data.exists():
            with console.status(f"generating {args.rows:,} synthetic transactions"):
                write_kaggle_like(data, args.rows)
        console.print(f"{data} (seeded generator; not real card data; provenance in {data}.provenance.json)")

    console.rule(
        "2. train → evaluate → export ONNX → publish (current only if better than the serving model)"
    )
    result = train(TrainConfig(data=data, model=args.model), console=console)
    console.print(f"promotion: {result.promotion.reason}")

    console.rule(
        "3. score sample transactions: core scorer, and the API Lambda handler with an API Gateway event"
    )
    provider = ModelProvider(open_registry(settings.registry_uri, settings.model_name))
    scorer = provider.get()
    import pandas as pd

    sample = _sample(
        pd.read_csv(data),
        legit=max(args.sample - args.sample // 3, 1),
        fraud=max(args.sample // 3, 1),
        seed=1,
    )
    labels = {r["transaction_id"]: int(r.pop(LABEL_FIELD)) for r in sample}
    results = scorer.score_batch(sample, explain="all")
    via_api = _score_through_lambda_handler(sample)
    table = Table(
        title=f"model {scorer.version} ({scorer.manifest.model_type})"
        + (" — SYNTHETIC DATA" if synthetic else "")
    )
    for col in (
        "transaction",
        "Amount",
        "actual",
        "fraud_score",
        "via API Lambda",
        "decision",
        "top reasons (occlusion Δscore)",
    ):
        table.add_column(col)
    colours = {"approve": "green", "review": "yellow", "decline": "red"}
    for record, res in zip(sample, results, strict=True):
        reasons = ", ".join(f"{r.feature}={r.value:.2f} ({r.contribution:+.2g})" for r in res.reasons) or "—"
        actual = "fraud" if labels[record["transaction_id"]] else "legit"
        api = via_api[str(res.transaction_id)]
        same = (
            "✓" if api["fraud_score"] == res.fraud_score and api["decision"] == res.decision else "✗ differs"
        )
        table.add_row(
            str(res.transaction_id),
            f"{record['Amount']:.2f}",
            actual,
            f"{res.fraud_score:.2e}",
            f"{api['fraud_score']:.2e} {same}",
            f"[{colours[res.decision]}]{res.decision}[/]",
            reasons,
        )
    console.print(table)

    # The classic /predict payload (pre-scaled Time/Amount) scores identically via the manifest's scaler.
    first = max(zip(sample, results, strict=True), key=lambda pair: pair[1].fraud_score)[0]
    raw_score = next(r.fraud_score for r in results if r.transaction_id == first["transaction_id"])
    scaling = scorer.manifest.raw_scaling
    classic = {
        **{v: first[v] for v in PCA_FIELDS},
        "scaled_amount": (first["Amount"] - scaling["Amount"].center) / scaling["Amount"].scale,
        "scaled_time": (first["Time"] - scaling["Time"].center) / scaling["Time"].scale,
    }
    classic_score = scorer.score_one(classic, explain="none").fraud_score
    console.print(
        f"classic pre-scaled payload for {first['transaction_id']}: fraud_score {classic_score:.6f} "
        f"(raw payload: {raw_score:.6f})"
    )
    console.rule(
        "4. stream the sample through the Kafka Lambda handler (self-managed Kafka event, in-process)"
    )
    _stream_through_lambda_handler(sample, console)

    console.rule("5. monitor: the test part through the stream handler, its labels, then the monitor job")
    _monitor(pd.read_csv(data), scorer.manifest, console)

    test = result.manifest.metrics["test"]
    console.print(
        f"test part: average precision {test['average_precision']:.4f}, ROC AUC {test['roc_auc']:.4f}, "
        f"precision {test['precision']:.4f}, recall {test['recall']:.4f} at decline ≥ {scorer.manifest.thresholds.decline:.4f}"
        + (" — on SYNTHETIC data" if synthetic else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
