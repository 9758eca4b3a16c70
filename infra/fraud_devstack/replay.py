"""Replay simulated transactions to Kafka in time order, with their labels fed back on the delay.

    python -m fraud_devstack.replay --data data/simulated.parquet --days 30 --topic transactions

Each transaction is one message; its label (``{"type": "label", ...}``) follows when the label
delay has passed, placed before the first transaction that may use it. Labels go to the same
topic by default, so one partition orders them with the transactions; ``--labels-topic`` sends
them elsewhere (e.g. fraud-labels, consumed by the same function).
"""

from __future__ import annotations

import heapq
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fraud_core.cli import cli_parser, run_cli
from fraud_core.shapes.simulated.features import DAY, LABEL_DELAY_DAYS
from fraud_devstack.stack import bootstrap_servers


def messages(frame: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """("tx" | "label", message) in delivery order."""
    epochs = frame["tx_datetime"].astype("datetime64[s]").astype("int64").tolist()
    rows = zip(
        frame["transaction_id"].tolist(),
        epochs,
        frame["customer_id"].tolist(),
        frame["terminal_id"].tolist(),
        frame["amount"].tolist(),
        frame["is_fraud"].tolist(),
        strict=True,
    )
    pending: list[tuple[int, int, dict[str, Any]]] = []  # (due time, seq, label)
    for seq, (tid, epoch, card, terminal, amount, fraud) in enumerate(rows):
        while pending and pending[0][0] <= epoch:
            yield "label", heapq.heappop(pending)[2]
        yield (
            "tx",
            {
                "transaction_id": str(tid),
                "tx_datetime": epoch,
                "customer_id": str(card),
                "terminal_id": str(terminal),
                "amount": float(amount),
            },
        )
        label = {
            "type": "label",
            "transaction_id": str(tid),
            "tx_datetime": epoch,
            "terminal_id": str(terminal),
            "is_fraud": int(fraud),
        }
        heapq.heappush(pending, (epoch + LABEL_DELAY_DAYS * DAY, seq, label))


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("fraud_devstack.replay", __doc__)
    parser.add_argument("--data", type=Path, required=True, help="simulated transactions (.parquet or .csv)")
    parser.add_argument("--days", type=int, default=None, help="replay only the first N days (default: all)")
    parser.add_argument("--topic", default="transactions", help="transactions topic (default: %(default)s)")
    parser.add_argument("--labels-topic", default=None, help="labels topic (default: the transactions topic)")
    parser.add_argument(
        "--bootstrap-servers", default=None, help="default: FRAUD_KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092"
    )
    args = parser.parse_args(argv)
    if not args.data.exists():
        raise FileNotFoundError(
            f"{args.data} (generate it with `python -m fraud_training.datasets simulate --out {args.data}`)"
        )

    import pandas as pd

    from fraud_core.errors import SinkUnavailableError
    from fraud_core.stream.sinks import KafkaSink

    servers = bootstrap_servers(args.bootstrap_servers)
    frame = (
        pd.read_parquet(args.data)
        if args.data.suffix == ".parquet"
        else pd.read_csv(args.data, parse_dates=["tx_datetime"])
    )
    frame = frame.sort_values(["tx_datetime", "transaction_id"], kind="stable")
    if args.days is not None:
        frame = frame[
            frame["tx_datetime"] < frame["tx_datetime"].min().normalize() + pd.Timedelta(days=args.days)
        ]
    producer = KafkaSink(servers, timeout_seconds=120, linger_ms=20)
    counts = {"tx": 0, "label": 0}
    start = time.perf_counter()
    for kind, message in messages(frame):
        topic = args.labels_topic if kind == "label" and args.labels_topic else args.topic
        producer.publish(topic, None, json.dumps(message).encode())
        counts[kind] += 1
    failed = 0
    try:
        producer.flush()
    except SinkUnavailableError as exc:
        failed = counts["tx"] + counts["label"] - producer.delivered
        print(exc, file=sys.stderr)
    print(
        f"replayed {counts['tx']:,} transactions and {counts['label']:,} labels to {args.topic} in "
        f"{time.perf_counter() - start:.1f} s; failed {failed}",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
