"""The simulated shape's training pipeline end to end on a small simulated dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fraud_core.cli import run_cli
from fraud_core.provider import load_scorer
from fraud_core.registry import LocalModelStore, ModelRegistry
from fraud_core.shapes.simulated.features import SIMULATED_FEATURE_NAMES
from fraud_training.simulator import SimulationConfig, simulate
from fraud_training.train import main


@pytest.fixture(autouse=True)
def small_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline with a search space sized for a test (the real one fits 300-tree forests)."""
    from fraud_training import simulated_eval

    monkeypatch.setattr(
        simulated_eval,
        "SEARCH",
        (
            simulated_eval.Candidate("rf 20 trees", "rf", {"n_estimators": 20, "min_samples_leaf": 2}),
            simulated_eval.Candidate("hgb 50 rounds", "hgb", {"max_iter": 50}),
        ),
    )


@pytest.fixture(scope="module")
def sixty_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "small.parquet"
    simulate(SimulationConfig(customers=400, terminals=800, days=60, seed=4)).to_parquet(path, index=False)
    return path


def test_handbook_evaluation_report_and_publication(sixty_days: Path, tmp_path: Path) -> None:
    report = tmp_path / "eval.md"
    registry = tmp_path / "reg"
    assert (
        main(
            [
                "--data",
                str(sixty_days),
                "--schema",
                "simulated",
                "--report",
                str(report),
                "--registry",
                str(registry),
                "--review-budget",
                "40",
            ]
        )
        == 0
    )
    results = json.loads(report.with_suffix(".json").read_text())
    # THEN the baseline rows and the selected model have 4 test folds each, selected on validation only
    tested = {n: c for n, c in results["candidates"].items() if "test" in c}
    assert {
        "baseline logistic regression (C=1)",
        "baseline random forest (sklearn defaults)",
        results["selected"],
    } == set(tested)
    assert all(len(c["test"]["folds"]) == 4 for c in tested.values())
    assert all(len(c["features"]) == 15 for n, c in tested.items() if n.startswith("baseline"))
    assert all("validation" in c for n, c in results["candidates"].items() if not n.startswith("baseline"))
    text = report.read_text()
    assert "Handbook" in text and "(selected)" in text and "Ceilings" in text
    # AND the published model serves through the core with decision bands within the budget
    scorer = load_scorer(ModelRegistry(LocalModelStore(registry), "card-fraud-simulated"))
    assert tuple(scorer.feature_names) == SIMULATED_FEATURE_NAMES
    alerts = scorer.manifest.metrics["alerts"]
    assert alerts["expected_review_cards_per_day"] <= 40
    assert 0 < scorer.manifest.thresholds.review <= scorer.manifest.thresholds.decline <= 1


def test_too_few_days_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = tmp_path / "short.parquet"
    simulate(SimulationConfig(customers=100, terminals=200, days=30, seed=1)).to_parquet(short, index=False)
    assert (
        run_cli(
            main,
            [
                "--data",
                str(short),
                "--schema",
                "simulated",
                "--no-publish",
                "--report",
                str(tmp_path / "r.md"),
            ],
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "the protocol needs" in err and "days of data" in err and "Traceback" not in err


def test_missing_columns_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.parquet"
    pd.DataFrame(
        {"transaction_id": [1], "tx_datetime": [pd.Timestamp("2018-04-01")], "amount": [1.0]}
    ).to_parquet(bad)
    assert run_cli(main, ["--data", str(bad), "--schema", "simulated", "--no-publish"]) == 2
    assert "lacks the columns ['customer_id', 'terminal_id', 'is_fraud']" in capsys.readouterr().err
