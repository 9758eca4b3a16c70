"""Seeded synthetic datasets for when the real Kaggle file is absent.

``kaggle-like`` writes the Kaggle *Credit Card Fraud Detection* schema
(``Time, V1..V28, Amount, Class``) with its class ratio (0.17 %). The data is SYNTHETIC: the
classes overlap on purpose (weak "camouflaged" frauds, unusual but legitimate customers), so
models land in a realistic range instead of separating it perfectly.

Every file written here gets a ``<file>.provenance.json`` sidecar (generator, parameters,
sha256, synthetic=true), which training reads: a model trained on generated data says so in its
manifest and reports without any flag.

    python -m fraud_training.datasets kaggle-like --rows 284807 --out data/kaggle_like.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from fraud_core.cli import cli_parser, run_cli
from fraud_core.shapes.kaggle import LABEL_FIELD, PCA_FIELDS, SECONDS_PER_DAY
from fraud_training.data import (
    REAL_KAGGLE_FILE,
    SYNTHETIC_KAGGLE_FILE,
    DatasetError,
    Provenance,
    write_provenance,
)

KAGGLE_ROWS = 284_807
KAGGLE_FRAUD_RATE = 492 / 284_807
# Mean shift of fraud per PCA component, in units of that component's std (0 = no signal).
# Loosely shaped like the real file, where V14, V12, V10, V17, V4 and V11 carry most signal.
_FRAUD_SHIFT = {
    "V1": -1.2,
    "V2": 1.0,
    "V3": -1.6,
    "V4": 1.8,
    "V5": -0.6,
    "V6": -0.4,
    "V7": -1.4,
    "V9": -0.9,
    "V10": -2.0,
    "V11": 1.6,
    "V12": -2.2,
    "V14": -2.4,
    "V16": -1.5,
    "V17": -1.9,
    "V18": -0.8,
    "V19": 0.3,
    "V21": 0.4,
    "V27": 0.3,
}


def kaggle_like(
    rows: int = KAGGLE_ROWS, *, seed: int = 7, fraud_rate: float = KAGGLE_FRAUD_RATE
) -> pd.DataFrame:
    """A synthetic DataFrame in the Kaggle schema, sorted by ``Time`` (two days)."""
    if rows < 100:
        raise ValueError("rows must be at least 100")
    rng = np.random.default_rng(seed)
    n_fraud = max(2, round(rows * fraud_rate))
    label = np.zeros(rows, dtype=np.int64)
    label[rng.choice(rows, n_fraud, replace=False)] = 1
    fraud = label == 1

    # PCA-like components: decreasing variance, heavy-ish tails (Student t), uncorrelated.
    stds = np.linspace(1.95, 0.33, len(PCA_FIELDS))
    comps = rng.standard_t(df=5, size=(rows, len(PCA_FIELDS))) * stds * np.sqrt(3 / 5)
    # Frauds differ by a per-transaction strength: many are obvious, some barely distinguishable.
    strength = rng.beta(2.0, 1.2, size=n_fraud)
    shift = np.array([_FRAUD_SHIFT.get(v, 0.0) for v in PCA_FIELDS]) * stds
    comps[fraud] = comps[fraud] * 1.5 + strength[:, None] * shift * 2.2
    # A few legitimate customers look odd on the same components (the false positives).
    odd = (~fraud) & (rng.random(rows) < 0.004)
    comps[odd] += rng.uniform(0.3, 1.2, size=(int(odd.sum()), 1)) * shift * 1.6

    # Amounts: legit log-normal around 20; fraud mixes card-testing cents and large spends.
    amount = rng.lognormal(mean=3.0, sigma=1.3, size=rows)
    testing = rng.random(n_fraud) < 0.35
    amount[fraud] = np.where(testing, rng.uniform(0.0, 2.0, n_fraud), rng.lognormal(4.2, 1.4, n_fraud))
    amount = np.round(np.minimum(amount, 25_000.0), 2).astype(np.float64)

    # Time: two days; legit follows a day/night cycle, fraud is spread evenly around the clock.
    day = rng.integers(0, 2, size=rows)
    hour = np.where(fraud, rng.uniform(0, 24, rows), np.clip(rng.normal(14.0, 4.5, rows), 0.0, 23.999))
    time = np.floor(day * SECONDS_PER_DAY + hour * 3600.0)

    frame = pd.DataFrame(comps, columns=list(PCA_FIELDS))
    frame.insert(0, "Time", time)
    frame["Amount"] = amount
    frame[LABEL_FIELD] = label
    return frame.sort_values("Time", kind="stable").reset_index(drop=True)


def write_kaggle_like(
    out: Path, rows: int = KAGGLE_ROWS, *, seed: int = 7, fraud_rate: float = KAGGLE_FRAUD_RATE
) -> tuple[pd.DataFrame, Provenance]:
    """Generate :func:`kaggle_like` data into the CSV ``out`` with its provenance sidecar."""
    if out.name == REAL_KAGGLE_FILE:
        # `make demo` and the stack treat that name as the real Kaggle file.
        raise DatasetError(
            f"refusing to write SYNTHETIC data to {out}: {REAL_KAGGLE_FILE} is where the real Kaggle file "
            f"goes; use --out {SYNTHETIC_KAGGLE_FILE}"
        )
    frame = kaggle_like(rows, seed=seed, fraud_rate=fraud_rate)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    provenance = write_provenance(
        out,
        generator="fraud_training.datasets kaggle-like",
        parameters={"rows": rows, "seed": seed, "fraud_rate": fraud_rate},
    )
    return frame, provenance


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("fraud_training.datasets", "Generate SYNTHETIC datasets (never real card data).")
    sub = parser.add_subparsers(dest="command", required=True)
    kl = sub.add_parser("kaggle-like", help="synthetic data in the Kaggle creditcard.csv schema")
    kl.add_argument(
        "--rows",
        type=int,
        default=KAGGLE_ROWS,
        help="number of transactions (default: %(default)s, as in the real file)",
    )
    kl.add_argument("--seed", type=int, default=7, help="random seed (default: %(default)s)")
    kl.add_argument(
        "--fraud-rate",
        type=float,
        default=KAGGLE_FRAUD_RATE,
        help="share of frauds (default: the real file's 0.17%%)",
    )
    kl.add_argument(
        "--out",
        type=Path,
        required=True,
        help="CSV file to write, e.g. data/kaggle_like.csv (never data/creditcard.csv, the real file's "
        "place); <file>.provenance.json is written beside it",
    )
    sim = sub.add_parser(
        "simulate", help="entity-keyed card transactions (cards, terminals, 3 fraud scenarios)"
    )
    sim.add_argument("--customers", type=int, default=5_000, help="cards (default: %(default)s)")
    sim.add_argument("--terminals", type=int, default=10_000, help="terminals (default: %(default)s)")
    sim.add_argument("--days", type=int, default=183, help="days from --start-date (default: %(default)s)")
    sim.add_argument("--start-date", default="2018-04-01", help="first day (default: %(default)s)")
    sim.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    sim.add_argument(
        "--drift-day",
        type=int,
        default=None,
        help="from this day on the data drifts (see --drift-kind), a known change to test the monitor",
    )
    sim.add_argument(
        "--drift-kind",
        choices=("spending", "fraud"),
        default="spending",
        help="spending: every card spends 1.5x; fraud: compromised cards' frauds become small (x0.2) "
        "instead of x5 (default: %(default)s)",
    )
    sim.add_argument(
        "--reference-seeds",
        action="store_true",
        help="reproduce the Handbook's published default dataset draw for draw (its seeding scheme; "
        "1,754,155 transactions and 14,681 frauds with the defaults; about a minute); --seed is ignored",
    )
    sim.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output file: .parquet or .csv; <file>.provenance.json is written beside it",
    )
    args = parser.parse_args(argv)
    if args.command == "simulate":
        return _simulate(args)

    from fraud_training.console import make_console

    console = make_console()
    with console.status(f"generating {args.rows:,} synthetic transactions into {args.out}"):
        frame, _ = write_kaggle_like(args.out, args.rows, seed=args.seed, fraud_rate=args.fraud_rate)
    frauds = int(frame[LABEL_FIELD].sum())
    console.print(
        f"[bold]SYNTHETIC[/] Kaggle-schema data: {len(frame):,} rows, {frauds} frauds "
        f"({frauds / len(frame):.3%}), seed {args.seed} → {args.out} (provenance in {args.out}.provenance.json)"
    )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from fraud_training.console import make_console
    from fraud_training.simulator import SimulationConfig, simulate, simulate_reference

    console = make_console()
    if args.drift_day is not None and args.reference_seeds:
        raise DatasetError("--drift-day changes the data: it cannot reproduce the reference dataset")
    config = SimulationConfig(
        args.customers,
        args.terminals,
        args.days,
        args.start_date,
        seed=args.seed,
        drift_day=args.drift_day,
        drift_kind=args.drift_kind,
    )
    steps = ["customers and terminals", "transactions", "fraud scenarios"]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("simulating", total=len(steps) + 1)

        def advance(step: str) -> None:
            progress.update(task, advance=1, description=step)

        frame = (simulate_reference if args.reference_seeds else simulate)(config, progress=advance)
        progress.update(task, description=f"writing {args.out}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix == ".parquet":
            frame.to_parquet(args.out, index=False)
        else:
            frame.to_csv(args.out, index=False)
        write_provenance(
            args.out,
            generator="fraud_training.datasets simulate",
            parameters={
                "customers": args.customers,
                "terminals": args.terminals,
                "days": args.days,
                "start_date": args.start_date,
                "seed": None if args.reference_seeds else args.seed,
                "reference_seeds": args.reference_seeds,
                "drift_day": args.drift_day,
                "drift_kind": args.drift_kind if args.drift_day is not None else None,
            },
        )
        progress.advance(task)
    console.print(
        f"[bold]SYNTHETIC[/] simulated transactions: {len(frame):,} rows, {args.customers:,} cards, "
        f"{args.terminals:,} terminals, {args.days} days, fraud {frame['is_fraud'].mean():.2%} → {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
