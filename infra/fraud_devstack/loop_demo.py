"""The retraining loop on a drift whose truth is known.

    python -m fraud_devstack.loop_demo [--stack] [--policy drift,weekly] [--weeks 16] [--drift-week 9]

SYNTHETIC simulated transactions are replayed week by week, labels on their 7-day delay, either
through the real local stack (``--stack``, what `make loop-demo` runs: per policy its own
redis-server, tansu broker and local runner with the stream Lambda handler, which picks up each
promotion from the registry) or through the stream processor in process (in-memory state, no
servers); the scoring and label logs go to a temporary directory. From the drift week on, compromised cards make small test purchases (amounts x0.2)
instead of large ones (``--drift-kind fraud``; ``spending``: every card spends 1.5x). At the end
of each week: the monitor tests the week; the policy retrains from the log
(`fraud_training.retrain --model auto --days 14`) into a shadow challenger — on a monitoring
alarm (``drift``) or every week (``weekly``, the comparison row) or never —; once the challenger
has five label-complete days of shadow scores, the gate (`registry gate --metric ap --apply`)
promotes it or refuses it, and a refused challenger is replaced at the policy's next retrain.
The gate's primary metric is AP here because with 1,000 cards a day has about 20 compromised
cards: Card Precision@100 then only asks whether each is in the top 100, which the stale model
still gets right (it is the guardrail instead: the challenger may not be worse by 0.02).

Each policy runs on the same transactions; per week, the served model's realised CP@100 and AP
on the week that just became label-complete, the challenger's on the same transactions, and
what happened; then a summary: before the drift, after it with the stale model, after the loop.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
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


class _Stack:
    """This replay's own Redis, tansu broker and local runner (``--stack``): each week goes
    through the broker to the stream handler as in production — Redis state and windows,
    labels on the same single-partition topic, in stream order — and the runner picks up every
    promotion and challenger through the registry, as a deployed function does."""

    REFRESH_SECONDS = 1.0

    def __init__(self, tmp: Path, registry: ModelRegistry, logs_uri: str) -> None:
        from fraud_core.stream.sinks import KafkaSink
        from fraud_devstack.runner_process import RunnerProcess
        from fraud_devstack.services import start_redis, start_tansu
        from fraud_devstack.topics import ensure_topics

        self.redis = start_redis(log_dir=tmp)
        self.broker = start_tansu(log_dir=tmp)
        ensure_topics(self.broker.url, ["loop", "loop-alerts", "loop-dlq"], partitions=1)
        env = {
            **os.environ,
            "FRAUD_REGISTRY_URI": registry.store.uri,
            "FRAUD_MODEL_NAME": MODEL,
            "FRAUD_MODEL_REFRESH_SECONDS": str(self.REFRESH_SECONDS),
            "FRAUD_REDIS_URL": self.redis.url,
            "FRAUD_KAFKA_BOOTSTRAP_SERVERS": self.broker.url,
            "FRAUD_SCORES_TOPIC": "",
            "FRAUD_ALERTS_TOPIC": "loop-alerts",
            "FRAUD_DLQ_TOPIC": "loop-dlq",
            "FRAUD_LOG_URI": logs_uri,
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
        self.runner = RunnerProcess(bootstrap_servers=self.broker.url, topic="loop", group_id="loop", env=env)
        self.sink = KafkaSink(self.broker.url, timeout_seconds=60)
        self.sent = 0

    def deliver(self, values: list[bytes]) -> None:
        """Produce the week's messages and wait until the runner has processed all of them."""
        time.sleep(2.5 * self.REFRESH_SECONDS)  # the runner re-reads the registry's pointers first
        for value in values:
            self.sink.publish("loop", None, value)
        self.sink.flush()
        self.sent += len(values)
        self.runner.wait_for(self.sent)

    def close(self) -> None:
        self.runner.stop()
        self.sink.close()
        self.broker.stop()
        self.redis.stop()


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


def _loop(frame: Any, policy: str, args: Any) -> tuple[list[dict[str, Any]], float]:
    """One replay of ``frame`` under ``policy``: the weekly rows and the seconds it took."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        registry = ModelRegistry(LocalModelStore(Path(tmp) / "registry"), MODEL)
        _initial_champion(frame, registry, budget=args.review_budget)
        logs_uri = str(Path(tmp) / "logs")
        logs = Logs.at(logs_uri)
        state, online, sink = InMemoryStreamState(), SIMULATED.online_state(None), InMemorySink()
        stack = _Stack(Path(tmp), registry, logs_uri) if args.stack else None
        common = ["--registry", registry.store.uri, "--model-name", MODEL]
        start_day = int(frame["tx_datetime"].min().normalize().timestamp() // DAY)
        rows: list[dict[str, Any]] = []
        offset = 0
        quiet = contextlib.redirect_stderr(io.StringIO())
        try:
            for week, values in _weeks(frame):
                scorer = ModelProvider(registry).get()
                if stack is not None:
                    stack.deliver(values)
                else:
                    processor = StreamProcessor(scorer, state, sink, online=online, logs=logs)
                    offset = _process(processor, values, offset)
                as_of = (start_day + (week + 1) * 7) * DAY
                row: dict[str, Any] = {"week": week, "served": scorer.version, "action": ""}
                challenger = registry.challenger()
                if week >= 1:
                    row.update(
                        _realised(
                            logs, start_day + (week - 1) * 7, challenger.version if challenger else None
                        )
                    )
                rows.append(row)
                if week < 7:  # the first champion is trained on weeks 4-5: monitoring starts after it
                    continue
                _, served = registry.current_manifest()
                report = run_monitor(
                    logs,
                    served,
                    MonitorConfig(window_hours=7 * 24, lookback_days=None, as_of=as_of, label_delay_days=7),
                )
                row["drift"] = bool(report["windows"][-1].get("drift"))
                row["alarm"] = bool(report["alarms"])
                actions, refused = [], False
                if challenger is not None and row.get("challenger_cp") is not None:
                    gate = [*common, "gate", "--log-uri", logs_uri, "--metric", args.gate_metric]
                    with quiet:
                        passed = registry_cli.main([*gate, "--min-days", "5", "--apply"]) == 0
                    decision = next(e for e in reversed(registry.history()) if e["action"] == "gate")
                    diff = decision.get("metrics", {}).get("difference", {})
                    verdict = "promoted" if passed else "refused"
                    actions.append(
                        f"gate: {verdict} ({args.gate_metric.upper()} {diff.get('mean', float('nan')):+.3f})"
                    )
                    row["gate"], refused = verdict, not passed
                wants = policy == "weekly" or (policy == "drift" and row["alarm"])
                if wants and (registry.challenger() is None or refused):
                    with quiet:
                        retrain.main(
                            [*common, "--log-uri", logs_uri, "--model", "auto", "--days", str(args.window_days),
                             "--label-delay-days", "7"]
                        )  # fmt: skip
                    pointer = registry.challenger()
                    made = registry.manifest(pointer.version) if pointer else None
                    actions.append(f"retrained ({made.model_type if made else '?'}) → challenger")
                row["action"] = "; ".join(actions)
        finally:
            if stack is not None:
                stack.close()
    return rows, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("fraud_devstack.loop_demo", __doc__)
    parser.add_argument(
        "--policy",
        default="drift,weekly,never",
        help="comma-separated, each replayed on the same data: drift, weekly, never (default: %(default)s)",
    )
    parser.add_argument("--weeks", type=int, default=16)
    parser.add_argument("--drift-week", type=int, default=9)
    parser.add_argument("--drift-kind", choices=("spending", "fraud"), default="fraud")
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--terminals", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--review-budget", type=int, default=50, help="cards a day (default: %(default)s)")
    parser.add_argument("--window-days", type=int, default=14, help="retrain on the most recent N days")
    parser.add_argument("--gate-metric", choices=("ap", "cp"), default="ap")
    parser.add_argument("--json", type=Path, default=None, help="also write the weekly tables as JSON")
    parser.add_argument(
        "--stack",
        action="store_true",
        help="replay through the real local stack (each policy: its own redis-server, tansu and local "
        "runner) instead of the stream processor in process",
    )
    args = parser.parse_args(argv)
    policies = [p.strip() for p in args.policy.split(",") if p.strip()]
    if unknown := set(policies) - {"drift", "weekly", "never"}:
        parser.error(f"unknown policy {sorted(unknown)}: choose from drift, weekly, never")
    console = make_console()
    config = SimulationConfig(
        customers=args.customers, terminals=args.terminals, days=args.weeks * 7, seed=args.seed,
        drift_day=args.drift_week * 7, drift_kind=args.drift_kind,
    )  # fmt: skip
    with console.status("simulating SYNTHETIC transactions"):
        frame = simulate(config)
    results: dict[str, Any] = {}
    # one process a policy: the replays are independent and each keeps about one core busy
    context = multiprocessing.get_context("spawn")
    with (
        console.status(f"replaying {args.weeks} weeks under {', '.join(policies)} (one process each)"),
        ProcessPoolExecutor(max_workers=len(policies), mp_context=context) as pool,
    ):
        runs = {policy: pool.submit(_loop, frame, policy, args) for policy in policies}
        for policy, run in runs.items():
            rows, seconds = run.result()
            results[policy] = {"rows": rows, "seconds": seconds, "summary": _summary(rows, args.drift_week)}
    if "never" in results:  # the counterfactual: the stale model on the very same weeks
        stale = {r["week"]: r.get("served_ap") for r in results["never"]["rows"]}
        for result in results.values():
            result["summary"]["ap_gain_vs_never"] = _gain(result["rows"], result["summary"], stale)
    for policy, result in results.items():
        _print(console, result["rows"], policy, args, result["seconds"])
    _print_summary(console, results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _summary(rows: list[dict[str, Any]], drift_week: int) -> dict[str, Any]:
    """Mean served CP@100/AP over label-complete weeks: before the drift (from week 7), after it
    with the first champion, and after the first promotion; the last week's; when the gate first
    promoted."""
    first = rows[0]["served"]
    phases: dict[str, list[dict[str, Any]]] = {"before": [], "stale": [], "after": []}
    for previous, row in itertools.pairwise(rows):
        reported, model = previous["week"], previous["served"]  # row w reports week w - 1
        if reported < 7 or row.get("served_cp") is None:
            continue
        phase = "before" if reported < drift_week else "stale" if model == first else "after"
        phases[phase].append(row)
    promoted = [r["week"] for r in rows if r.get("gate") == "promoted"]

    def mean(part: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in part if r.get(key) is not None]
        return float(np.mean(values)) if values else None

    return {
        **{f"{phase}_{m}": mean(part, f"served_{m}") for phase, part in phases.items() for m in ("cp", "ap")},
        "weeks": {phase: [r["week"] - 1 for r in part] for phase, part in phases.items()},
        "last_week": rows[-1]["week"] - 1,
        "last_cp": rows[-1].get("served_cp"),
        "last_ap": rows[-1].get("served_ap"),
        "first_promotion_week": promoted[0] if promoted else None,
        "retrains": sum("retrained" in r["action"] for r in rows),
    }


def _gain(
    rows: list[dict[str, Any]], summary: dict[str, Any], stale: dict[int, float | None]
) -> float | None:
    """Mean served AP minus the never-retrained model's on the same weeks, over the weeks after
    the first promotion."""
    after = {week + 1 for week in summary["weeks"]["after"]}  # rows report the week before
    gains = [
        r["served_ap"] - stale[r["week"]]
        for r in rows
        if r["week"] in after and r.get("served_ap") is not None and stale.get(r["week"]) is not None
    ]
    return float(np.mean(gains)) if gains else None


def _print_summary(console: Any, results: dict[str, Any], args: Any) -> None:
    def f(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    table = Table(title=f"recovery from the {args.drift_kind} drift of week {args.drift_week} (served model)")
    for col in ("policy", "before: CP@100 / AP", "stale model: CP@100 / AP", "after the loop: CP@100 / AP",
                "last week: CP@100 / AP", "AP vs never, same weeks", "promoted (end of week)", "retrains",
                "replay"):  # fmt: skip
        table.add_column(col, justify="left" if col == "policy" else "right")
    for policy, result in results.items():
        s = result["summary"]
        table.add_row(
            policy,
            f"{f(s['before_cp'])} / {f(s['before_ap'])}",
            f"{f(s['stale_cp'])} / {f(s['stale_ap'])}",
            f"{f(s['after_cp'])} / {f(s['after_ap'])}",
            f"{f(s['last_cp'])} / {f(s['last_ap'])} (week {s['last_week']})",
            "-" if s.get("ap_gain_vs_never") is None else f"{s['ap_gain_vs_never']:+.3f}",
            str(s["first_promotion_week"] if s["first_promotion_week"] is not None else "never"),
            str(s["retrains"]),
            f"{result['seconds']:.0f} s",
        )
    console.print(table)


def _print(console: Any, rows: list[dict[str, Any]], policy: str, args: Any, seconds: float) -> None:
    def f(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    table = Table(
        title=f"retraining loop, policy {policy!r}: SYNTHETIC, {args.customers:,} cards, "
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
            r["served"][-8:],
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
