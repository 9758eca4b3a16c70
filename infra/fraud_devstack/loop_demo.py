"""The retraining loop on a drift whose truth is known — embedded, no servers.

    python -m fraud_devstack.loop_demo [--policy drift|weekly|never] [--weeks 14] [--drift-week 9]

SYNTHETIC simulated transactions with every card spending 1.5x from the drift week are replayed
week by week through the stream processor (in-memory state), labels on their 7-day delay; the
scoring and label logs go to a temporary directory. At the end of each week: the monitor tests
the week for drift; the policy retrains from the log (`fraud_training.retrain`) into a shadow
challenger — on drift, every week, or never —; once the challenger has a label-complete week
of shadow scores, the gate (`registry gate --apply`) promotes it or keeps it in shadow. The
table: per week, the served model's realised CP@100 and AP on the week that just became
label-complete, the challenger's on the same transactions, and what happened.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from fraud_core.cli import cli_parser, run_cli
from fraud_core.event_log import Logs
from fraud_core.manifest import ONNX_FILE, SKLEARN_FILE, ModelManifest
from fraud_core.monitoring.job import DAY, MonitorConfig, run_monitor
from fraud_core.monitoring.metrics import average_precision, card_precision_at_k
from fraud_core.monitoring.profile import build_profile
from fraud_core.monitoring.rows import labels_by_id, scored_rows
from fraud_core.provider import ModelProvider
from fraud_core.registry import LocalModelStore, ModelRegistry
from fraud_core.shapes.simulated import SIMULATED
from fraud_core.shapes.simulated.features import SIMULATED_FEATURE_NAMES
from fraud_core.stream.processor import StreamProcessor
from fraud_core.stream.sinks import InMemorySink
from fraud_core.stream.state import InMemoryStreamState
from fraud_devstack.kafka_events import build_event
from fraud_devstack.replay import messages
from fraud_training import registry as registry_cli
from fraud_training import retrain
from fraud_training.console import make_console
from fraud_training.entity_offline import entity_features
from fraud_training.export import to_onnx_bytes
from fraud_training.models import make_model
from fraud_training.simulated_eval import alert_budget_thresholds
from fraud_training.simulator import SimulationConfig, simulate

MODEL = "loop-demo"
BATCH = 1000


def _initial_champion(frame: Any, registry: ModelRegistry, *, budget: int) -> ModelManifest:
    """HistGradientBoosting on weeks 4-5 (card windows full), bands and reference on week 6."""
    from datetime import UTC, datetime

    from fraud_core.manifest import Thresholds, sha256_hex

    X = entity_features(frame).to_numpy(np.float32)
    y = frame["is_fraud"].to_numpy()
    day = (frame["tx_datetime"] - frame["tx_datetime"].min().normalize()).dt.days.to_numpy()
    train, week6 = (day >= 28) & (day < 42), (day >= 42) & (day < 49)
    model = make_model("hgb", seed=0).fit(X[train], y[train])
    scores = model.predict_proba(X[week6])[:, 1]
    cards = frame["customer_id"].to_numpy()
    bands = alert_budget_thresholds(day[week6], cards[week6], y[week6], scores, review_cards_per_day=budget)
    onnx = to_onnx_bytes(model, X[train])
    ids = {"card_id": cards.astype(str), "terminal_id": frame["terminal_id"].to_numpy().astype(str)}
    buffer = io.BytesIO()
    import joblib

    joblib.dump(model, buffer)
    manifest = ModelManifest(
        name=MODEL,
        version=f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{sha256_hex(onnx)[:8]}",
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        model_type="hgb",
        schema_name=SIMULATED.name,
        features=list(SIMULATED_FEATURE_NAMES),
        raw_scaling={},
        explain_baseline=[float(v) for v in np.median(X[train], axis=0)],
        thresholds=Thresholds(review=bands["review"], decline=bands["decline"], rule=bands["rule"]),
        metrics={
            "alerts": bands,
            "validation": {
                "card_precision_at_100": card_precision_at_k(
                    day[week6], cards[week6].astype(str), y[week6], scores
                )[0]
            },
        },
        reference=build_profile(
            SIMULATED_FEATURE_NAMES,
            X[week6],
            scores,
            entities={f: ids[key][week6] for f, key in SIMULATED.feature_entities.items()},
        ),
    )
    return registry.publish(manifest, {ONNX_FILE: onnx, SKLEARN_FILE: buffer.getvalue()})


def _weeks(frame: Any) -> Iterator[tuple[int, list[bytes]]]:
    """(week, the messages delivered in it: transactions and the labels due by then)."""
    start = int(frame["tx_datetime"].min().normalize().timestamp())
    week, batch = 0, list[bytes]()
    for kind, message in messages(frame):
        if kind == "tx":
            w = (int(message["tx_datetime"]) - start) // int(7 * DAY)
            if w != week:
                yield week, batch
                week, batch = w, []
        batch.append(json.dumps(message).encode())
    yield week, batch


def _process(processor: StreamProcessor, values: list[bytes], offset: int) -> int:
    for first in range(0, len(values), BATCH):
        chunk = values[first : first + BATCH]
        event = build_event(
            [{"topic": "loop", "partition": 0, "offset": offset + i, "value": v} for i, v in enumerate(chunk)]
        )
        report = processor.process(event)
        if report.error:
            raise RuntimeError(f"batch at offset {offset} not processed: {report.error}")
        offset += len(chunk)
    return offset


def _realised(logs: Logs, first_day: int, challenger: str | None) -> dict[str, float | None]:
    """Served and shadow CP@100 / AP on the 7 days from ``first_day`` (label-complete by now)."""
    counts: dict[str, int] = dict.fromkeys(
        ("malformed_rows", "other_model_versions", "duplicate_rows", "malformed_labels", "duplicate_labels"),
        0,
    )
    data = scored_rows(logs.scoring.read(), [], None, counts, challenger=challenger)
    labels = labels_by_id(logs.labels.read(), counts)
    day = np.floor(data.event_time / DAY).astype(np.int64)
    week = (day >= first_day) & (day < first_day + 7)
    y = np.array([labels.get(t, False) for t in data.ids[week]], dtype=np.int64)
    out: dict[str, float | None] = {
        "served_cp": card_precision_at_k(day[week], data.card[week], y, data.score[week])[0],
        "served_ap": average_precision(y, data.score[week]),
        "challenger_cp": None,
        "challenger_ap": None,
    }
    shadow = week & np.isfinite(data.challenger)
    if shadow.sum() == week.sum() and week.any():
        out["challenger_cp"] = card_precision_at_k(day[week], data.card[week], y, data.challenger[week])[0]
        out["challenger_ap"] = average_precision(y, data.challenger[week])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("fraud_devstack.loop_demo", __doc__)
    parser.add_argument("--policy", choices=("drift", "weekly", "never"), default="drift")
    parser.add_argument("--weeks", type=int, default=14)
    parser.add_argument("--drift-week", type=int, default=9)
    parser.add_argument("--drift-kind", choices=("spending", "fraud"), default="fraud")
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--terminals", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--review-budget", type=int, default=50, help="cards a day (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the weekly table as JSON")
    args = parser.parse_args(argv)
    console = make_console()
    started = time.perf_counter()
    config = SimulationConfig(
        customers=args.customers, terminals=args.terminals, days=args.weeks * 7, seed=args.seed,
        drift_day=args.drift_week * 7, drift_kind=args.drift_kind,
    )  # fmt: skip
    with console.status("simulating SYNTHETIC transactions and training the first champion"):
        frame = simulate(config)
    with tempfile.TemporaryDirectory() as tmp:
        registry = ModelRegistry(LocalModelStore(Path(tmp) / "registry"), MODEL)
        champion = _initial_champion(frame, registry, budget=args.review_budget)
        logs_uri = str(Path(tmp) / "logs")
        logs = Logs.at(logs_uri)
        state, online, sink = InMemoryStreamState(), SIMULATED.online_state(None), InMemorySink()
        common = ["--registry", registry.store.uri, "--model-name", MODEL]
        start_day = int(frame["tx_datetime"].min().normalize().timestamp() // DAY)
        rows: list[dict[str, Any]] = []
        offset, refusals = 0, 0
        for week, values in _weeks(frame):
            scorer = ModelProvider(registry).get()
            processor = StreamProcessor(scorer, state, sink, online=online, logs=logs)
            with console.status(f"week {week}: {len(values):,} messages through the stream processor"):
                offset = _process(processor, values, offset)
            as_of = (start_day + (week + 1) * 7) * DAY
            row: dict[str, Any] = {"week": week, "served": scorer.version[-8:], "action": ""}
            challenger = registry.challenger()
            if week >= 1:
                row.update(
                    _realised(logs, start_day + (week - 1) * 7, challenger.version if challenger else None)
                )
            if week < 7:  # the first champion is trained on weeks 4-5: monitoring starts after it
                rows.append(row)
                continue
            _, served = registry.current_manifest()
            report = run_monitor(
                logs,
                served,
                MonitorConfig(window_hours=7 * 24, lookback_days=None, as_of=as_of, label_delay_days=7),
            )
            row["drift"] = bool(report["windows"][-1].get("drift"))
            row["alarm"] = bool(report["alarms"])
            actions = []
            quiet = contextlib.redirect_stderr(io.StringIO())
            if challenger is not None and row.get("challenger_cp") is not None:
                with quiet:
                    gate = [*common, "gate", "--log-uri", logs_uri, "--min-days", "5", "--apply"]
                    passed = registry_cli.main(gate) == 0
                decision = registry.history()[-(3 if passed else 1)]
                diff = decision.get("metrics", {}).get("difference", {})
                actions.append(
                    f"gate: {'promoted' if passed else 'kept in shadow'} (CP@100 {diff.get('mean', float('nan')):+.3f})"
                )
                refusals = 0 if passed else refusals + 1
                if not passed and refusals >= 2:
                    registry.unchallenge()
                    actions.append("challenger dropped")
                challenger = registry.challenger()
            wants = args.policy == "weekly" or (args.policy == "drift" and row["alarm"])
            if challenger is None and wants:
                with quiet:
                    retrain.main(
                        [*common, "--log-uri", logs_uri, "--model", "hgb", "--label-delay-days", "7"]
                    )
                actions.append("retrained → challenger")
            row["action"] = "; ".join(actions)
            rows.append(row)
        del champion
    _print(console, rows, args, time.perf_counter() - started)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


def _print(console: Any, rows: list[dict[str, Any]], args: Any, seconds: float) -> None:
    def f(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    table = Table(
        title=f"retraining loop, policy {args.policy!r}: SYNTHETIC, {args.customers:,} cards, "
        f"{args.drift_kind} drift from week {args.drift_week}"
    )
    for col in (
        "week",
        "served",
        "served CP@100",
        "served AP",
        "challenger CP@100",
        "challenger AP",
        "drift",
        "action",
    ):
        table.add_column(col, justify="left" if col in ("served", "action") else "right")
    for r in rows:
        table.add_row(
            str(r["week"]),
            r["served"],
            f(r.get("served_cp")),
            f(r.get("served_ap")),
            f(r.get("challenger_cp")),
            f(r.get("challenger_ap")),
            {True: "yes", False: "no"}.get(r.get("drift"), "-"),  # type: ignore[arg-type]
            r["action"],
        )
    console.print(table)
    console.print(f"metrics of week w-1 (label-complete at the end of week w); {seconds:.0f} s in all")


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
