"""Paired A/B of the stream handler between two commits, for a machine whose speed drifts.

    python -m bench.ab_stream REV_A [REV_B] [--rounds 20] [--batches 8]

On a shared 2-core VM the same code measured 5.3k-9.1k events/s in runs minutes apart, so two
separate benchmark runs cannot tell a 10 % change from noise. This runs both versions at once,
each in its own worker process (a git worktree of the revision; REV_B defaults to the working
tree) with its own redis-server and tansu, full default contract (Redis state and results,
`fraud-scores` + `fraud-alerts`, scoring log, console activity), and takes turns: each round,
A then B (B then A on odd rounds) process the next ``--batches`` 1,000-event batches. Both see
the same machine at nearly the same moment, so the ratio of each round's pair is the number to
read: its median and range are printed, with each side's median ms per batch and CPU time.

The worker imports ``fraud_core``, ``fraud_stream`` (its heap settings) etc. of its revision, and
``bench`` of this checkout (the data and the event shape are the same on both sides).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def worker(batches_total: int) -> None:
    """Set up the full contract once; on each stdin line K, process the next K batches and print
    'wall_ms_per_batch cpu_ms_per_batch'."""
    from bench.common import stream_events, train_bench_model
    from fraud_core.event_log import Logs
    from fraud_core.online.activity import activity_log
    from fraud_core.online.client import redis_client
    from fraud_core.provider import load_scorer
    from fraud_core.settings import get_settings
    from fraud_core.stream.ports import Topics
    from fraud_core.stream.processor import StreamProcessor
    from fraud_core.stream.sinks import KafkaSink
    from fraud_core.stream.state import RedisStreamState
    from fraud_devstack.services import start_redis, start_tansu
    from fraud_devstack.topics import ensure_topics
    from fraud_stream.wiring import freeze_startup_heap
    from fraud_training.data import to_records

    tmp = Path(tempfile.mkdtemp())
    bench = train_bench_model(tmp, rows=284_807)
    scorer = load_scorer(bench.registry)
    base = to_records(bench.frame)
    records: list[dict[str, Any]] = []
    rep = 0
    while len(records) < batches_total * 1000:  # fresh ids past the frame's length
        records += [
            {**r, "transaction_id": f"{r['transaction_id']}-{rep}", "card_id": f"c_{(i + rep) % 5000}"}
            for i, r in enumerate(base)
        ]
        rep += 1
    redis_service, broker = start_redis(log_dir=tmp), start_tansu(log_dir=tmp)
    try:
        client = redis_client(redis_service.url, timeout_seconds=5)
        suffix = uuid.uuid4().hex[:6]
        topics = Topics(scores=f"s-{suffix}", alerts=f"a-{suffix}", dlq=f"d-{suffix}")
        ensure_topics(broker.url, [topics.scores or "", topics.alerts, topics.dlq])
        processor = StreamProcessor(
            scorer,
            RedisStreamState(client),
            KafkaSink(broker.url),
            topics=topics,
            logs=Logs.at(str(tmp / "logs")),
            activity=activity_log(client, get_settings()),
        )
        batches = stream_events(records[: batches_total * 1000], 1000, run="ab")
        for ev in batches[:2]:  # warm up, then settle the heap as the stream function does
            processor.process(ev)
        freeze_startup_heap()
        position = 2
        print("ready", flush=True)
        for line in sys.stdin:
            k = int(line)
            cpu, wall = time.process_time(), time.perf_counter()
            for ev in batches[position : position + k]:
                report = processor.process(ev)
                assert not report.failures, report.error
            position += k
            print(
                f"{1000 * (time.perf_counter() - wall) / k:.2f} {1000 * (time.process_time() - cpu) / k:.2f}"
            )
            sys.stdout.flush()
    finally:
        broker.stop()
        redis_service.stop()


def _worktree(rev: str, into: Path) -> Path:
    path = into / rev.replace("/", "_")
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(path), rev],
        check=True,
        capture_output=True,
    )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ab_stream", description=__doc__.split("\n")[0])
    parser.add_argument("a", nargs="?", help="revision A (a commit, tag or branch)")
    parser.add_argument("b", nargs="?", help="revision B (default: the working tree)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batches", type=int, default=8, help="1,000-event batches per side and round")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    if not args.a:
        parser.error("revision A is required")
    scratch = Path(tempfile.mkdtemp(prefix="ab-stream-"))
    trees = [_worktree(args.a, scratch), _worktree(args.b, scratch) if args.b else ROOT]
    labels = [args.a, args.b or "working tree"]
    total = args.rounds * args.batches + 5
    procs = []
    try:
        for tree in trees:
            paths = [
                tree / "layers" / "fraud_core",
                tree / "functions" / "stream",
                tree / "infra",
                tree / "training",
                ROOT,
            ]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.ab_stream", "--worker", str(total)],
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            )
        for proc in procs:
            assert proc.stdout is not None
            while (line := proc.stdout.readline()) and not line.startswith("ready"):
                pass
            if not line:
                raise SystemExit("a worker failed to start (run it alone with --worker N to see why)")
        results: list[list[tuple[float, float]]] = [[], []]
        for r in range(args.rounds):
            for side in (0, 1) if r % 2 == 0 else (1, 0):
                proc = procs[side]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(f"{args.batches}\n")
                proc.stdin.flush()
                wall, cpu = map(float, proc.stdout.readline().split())
                results[side].append((wall, cpu))
    finally:
        for proc in procs:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(60)
        for tree in trees:
            if tree != ROOT:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
                )
    for label, rows in zip(labels, results, strict=True):
        wall = statistics.median(w for w, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        print(
            f"{label}: {wall:.1f} ms per batch (median of {len(rows)} turns), CPU {cpu:.1f} ms "
            f"-> {1e6 / wall:,.0f} events/s"
        )
    ratios = [a[0] / b[0] for a, b in zip(results[0], results[1], strict=True)]
    from bench.common import write_results

    path = write_results(
        "ab-stream",
        {
            "a": args.a,
            "b": args.b or "working tree",
            "batch_size": 1000,
            "turns_ms_per_batch": {"a": results[0], "b": results[1]},
            "paired_ratio_median": statistics.median(ratios),
        },
    )
    print(
        f"B is {statistics.median(ratios):.3f}x as fast as A (median of {len(ratios)} paired rounds; "
        f"range {min(ratios):.2f}-{max(ratios):.2f}); results in {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
