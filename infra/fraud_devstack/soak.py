"""Soak: producer → tansu → local runner → stream handler → Redis at a steady rate, for as long
as you ask, with the runner's resident memory and Redis's memory sampled every 10 s.

    python -m fraud_devstack.soak [--minutes 30] [--rate 2000] [--out docs]

Everything runs on its own services (free loopback ports) and a model trained on SYNTHETIC
Kaggle-like data; the runner serves the full default contract (Redis state and results, the
`fraud-scores` and `fraud-alerts` topics, the scoring log, the console's activity) with
short key TTLs (5 min), so Redis reaches its steady state inside the run. Writes
``<out>/soak.png`` (memory and throughput over time), ``<out>/soak.md`` (the summary) and the
samples as JSON next to them.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fraud_core.cli import cli_parser, run_cli

SAMPLE_SECONDS = 10.0
TTL_SECONDS = 300
FLAT_TOLERANCE = 0.10
"""The runner's RSS over the second half must stay within ±10 % of its mean there."""


@dataclass(frozen=True)
class Sample:
    seconds: float
    runner_rss_mib: float
    redis_used_mib: float
    redis_rss_mib: float
    produced: int
    processed: int


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _stats(values: list[float]) -> dict[str, float]:
    mean = sum(values) / len(values)
    return {
        "first": values[0],
        "min": min(values),
        "max": max(values),
        "mean": mean,
        "max_deviation": max(abs(v - mean) for v in values) / mean if mean else 0.0,
    }


def summarise(samples: list[Sample], *, rate: float) -> dict[str, Any]:
    """Memory of the whole run and of its second half, whether the runner's RSS stayed within
    ±10 % of its mean over the second half, and the throughput kept."""
    if len(samples) < 4:
        raise ValueError(f"a soak needs at least 4 samples, got {len(samples)}")
    half = samples[len(samples) // 2 :]
    rss = _stats([s.runner_rss_mib for s in half])
    last, first_half_end = samples[-1], samples[len(samples) // 2 - 1]
    return {
        "samples": len(samples),
        "minutes": last.seconds / 60,
        "target_rate": rate,
        "produced": last.produced,
        "processed": last.processed,
        "processed_per_s": last.processed / last.seconds if last.seconds else 0.0,
        "max_lag": max(s.produced - s.processed for s in samples),
        "runner_rss_mib": {"whole": _stats([s.runner_rss_mib for s in samples]), "second_half": rss},
        "runner_rss_growth_second_half_mib": half[-1].runner_rss_mib - first_half_end.runner_rss_mib,
        "redis_used_mib": {
            "whole": _stats([s.redis_used_mib for s in samples]),
            "second_half": _stats([s.redis_used_mib for s in half]),
        },
        "runner_rss_flat": rss["max_deviation"] <= FLAT_TOLERANCE,
    }


class _Producer(threading.Thread):
    """Sends ``rate`` transactions a second, paced every 10 ms, with fresh ids (the frame cycled)."""

    def __init__(self, bootstrap: str, topic: str, records: list[dict[str, Any]], rate: float) -> None:
        super().__init__(daemon=True)
        from fraud_core.stream.sinks import KafkaSink

        self.sink = KafkaSink(bootstrap, timeout_seconds=30)
        self.topic, self.records, self.rate = topic, records, rate
        self.sent = 0
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        n = len(self.records)
        while not self.stop.is_set():
            due = int((time.perf_counter() - start) * self.rate)
            while self.sent < due:
                i = self.sent
                card = f"c_{i % 5000}"
                msg = {**self.records[i % n], "transaction_id": f"s{i // n}-{i % n}", "card_id": card}
                self.sink.publish(self.topic, card.encode(), json.dumps(msg).encode())
                self.sent += 1
                if self.sent % 1000 == 0:
                    self.sink.flush()
            time.sleep(0.01)
        self.sink.flush()


def plot(samples: list[Sample], summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s.seconds / 60 for s in samples]
    fig, (mem, thr) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=[2, 1])
    mem.plot(minutes, [s.runner_rss_mib for s in samples], label="local runner RSS")
    mem.plot(minutes, [s.redis_used_mib for s in samples], label="Redis used_memory")
    mem.axvline(minutes[len(minutes) // 2], color="grey", linestyle=":", label="second half starts")
    mem.set_ylabel("MiB")
    mem.legend(loc="upper left")
    mem.set_title(
        f"soak: {summary['target_rate']:,.0f} events/s target, {summary['processed']:,} processed "
        f"in {summary['minutes']:.0f} min"
    )
    rates = [samples[0].processed / samples[0].seconds] + [
        (b.processed - a.processed) / (b.seconds - a.seconds) for a, b in itertools.pairwise(samples)
    ]
    thr.plot(minutes, rates, label="processed events/s", color="tab:green")
    thr.set_xlabel("minutes")
    thr.set_ylabel("events/s")
    thr.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(summary: dict[str, Any], png: Path) -> str:
    rss, redis = summary["runner_rss_mib"], summary["redis_used_mib"]
    verdict = "within" if summary["runner_rss_flat"] else "NOT within"
    return f"""# Soak: producer → tansu → local runner → stream handler → Redis

Generated by `make soak` (`python -m fraud_devstack.soak --minutes {summary["minutes"]:.0f} --rate {summary["target_rate"]:.0f}`)
on SYNTHETIC Kaggle-like data, full default contract (Redis state and results, scores and
alerts topics, scoring log, console activity), key TTLs {TTL_SECONDS} s, samples every {SAMPLE_SECONDS:.0f} s.

![soak]({png.name})

| | value |
|---|---|
| duration | {summary["minutes"]:.1f} min, {summary["samples"]} samples |
| produced / processed | {summary["produced"]:,} / {summary["processed"]:,} ({summary["processed_per_s"]:,.0f} events/s) |
| largest lag (produced − processed) | {summary["max_lag"]:,} |
| runner RSS, first sample | {rss["whole"]["first"]:.1f} MiB |
| runner RSS, second half: mean (min–max) | {rss["second_half"]["mean"]:.1f} MiB ({rss["second_half"]["min"]:.1f}–{rss["second_half"]["max"]:.1f}) |
| runner RSS, largest deviation from that mean | {rss["second_half"]["max_deviation"]:.1%} ({verdict} ±{FLAT_TOLERANCE:.0%}) |
| runner RSS change over the second half | {summary["runner_rss_growth_second_half_mib"]:+.1f} MiB |
| Redis used memory, second half: mean (min–max) | {redis["second_half"]["mean"]:.1f} MiB ({redis["second_half"]["min"]:.1f}–{redis["second_half"]["max"]:.1f}) |
"""


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("fraud_devstack.soak", __doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="duration (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=2000.0, help="events per second (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where the PNG and the summary go")
    args = parser.parse_args(argv)

    import redis
    from rich.console import Console

    from fraud_devstack.runner_process import RunnerProcess
    from fraud_devstack.services import start_redis, start_tansu
    from fraud_devstack.topics import ensure_topics
    from fraud_training.data import to_records
    from fraud_training.datasets import write_kaggle_like
    from fraud_training.train import TrainConfig, train

    console = Console(stderr=True)
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    with console.status("generating SYNTHETIC data and training the model"):
        frame, _ = write_kaggle_like(tmp / "data.csv", 284_807)
        train(
            TrainConfig(
                data=tmp / "data.csv",
                model="hgb",
                registry=str(tmp / "reg"),
                model_name="soak",
                out_dir=tmp / "runs",
            ),
            console=Console(quiet=True),
        )
        records = to_records(frame.drop(columns=["Class"]).head(100_000))
    store, broker = start_redis(log_dir=tmp), start_tansu(log_dir=tmp)
    runner: RunnerProcess | None = None
    producer: _Producer | None = None
    samples: list[Sample] = []
    try:
        topics = {
            "tx": "transactions",
            "scores": "fraud-scores",
            "alerts": "fraud-alerts",
            "dlq": "fraud-dlq",
        }
        ensure_topics(broker.url, topics.values())
        env = {
            **os.environ,
            "FRAUD_REGISTRY_URI": str(tmp / "reg"),
            "FRAUD_MODEL_NAME": "soak",
            "FRAUD_REDIS_URL": store.url,
            "FRAUD_KAFKA_BOOTSTRAP_SERVERS": broker.url,
            "FRAUD_SCORES_TOPIC": topics["scores"],
            "FRAUD_ALERTS_TOPIC": topics["alerts"],
            "FRAUD_DLQ_TOPIC": topics["dlq"],
            "FRAUD_LOG_URI": str(tmp / "logs"),
            "FRAUD_RESULT_TTL_SECONDS": str(TTL_SECONDS),
            "FRAUD_DEDUPE_TTL_SECONDS": str(TTL_SECONDS),
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
        runner = RunnerProcess(bootstrap_servers=broker.url, topic=topics["tx"], group_id="soak", env=env)
        client = redis.Redis.from_url(store.url)
        producer = _Producer(broker.url, topics["tx"], records, args.rate)
        producer.start()
        start = time.monotonic()
        end = start + args.minutes * 60
        console.print(
            f"soak: {args.rate:,.0f} events/s for {args.minutes:g} min; samples every {SAMPLE_SECONDS:g} s"
        )
        while (now := time.monotonic()) < end:
            time.sleep(min(SAMPLE_SECONDS, end - now))
            runner.check_alive()
            memory = client.info("memory")
            sample = Sample(
                seconds=time.monotonic() - start,
                runner_rss_mib=_rss_mib(runner.pid),
                redis_used_mib=memory["used_memory"] / 2**20,
                redis_rss_mib=memory["used_memory_rss"] / 2**20,
                produced=producer.sent,
                processed=runner.processed,
            )
            samples.append(sample)
            console.print(
                f"{sample.seconds / 60:5.1f} min  runner {sample.runner_rss_mib:6.1f} MiB  redis "
                f"{sample.redis_used_mib:6.1f} MiB  produced {sample.produced:,}  processed {sample.processed:,}"
            )
    finally:
        if producer is not None:
            producer.stop.set()
            producer.join(timeout=60)
        if runner is not None:
            runner.stop()
        broker.stop()
        store.stop()
    summary = summarise(samples, rate=args.rate)
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "soak.png"
    plot(samples, summary, png)
    (args.out / "soak.md").write_text(report(summary, png))
    (args.out / "soak.json").write_text(
        json.dumps({"summary": summary, "samples": [asdict(s) for s in samples]}, indent=1)
    )
    shutil.rmtree(tmp, ignore_errors=True)
    print(report(summary, png))
    return 0 if summary["runner_rss_flat"] else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
