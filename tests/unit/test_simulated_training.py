"""The simulated shape's training pipeline end to end on a small simulated dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraud_core.cli import run_cli
from fraud_core.manifest import Thresholds
from fraud_core.provider import load_scorer
from fraud_core.registry import LocalModelStore, ModelRegistry
from fraud_core.shapes.simulated.features import SIMULATED_FEATURE_NAMES
from fraud_training import simulated_eval
from fraud_training.export import check_parity, to_onnx_bytes
from fraud_training.models import describe
from fraud_training.simulated_eval import Candidate
from fraud_training.simulator import SimulationConfig, simulate
from fraud_training.train import main


@pytest.fixture(autouse=True)
def small_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline with a search space sized for a test (the real one fits 300-tree forests)."""
    rf = simulated_eval.Candidate("rf 20 trees", "rf", {"n_estimators": 20, "min_samples_leaf": 2})
    hgb = simulated_eval.Candidate("hgb 50 rounds", "hgb", {"max_iter": 50})
    average = simulated_eval.Candidate("rf and hgb averaged", "average", members=(rf, hgb))
    monkeypatch.setattr(simulated_eval, "SEARCH", (rf, hgb, average))


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
    # AND the average reuses its members' fits: its fit time per fold is theirs, summed
    validation = {n: c["validation"]["folds"] for n, c in results["candidates"].items() if "validation" in c}
    for fold, rf, hgb in zip(
        validation["rf and hgb averaged"], validation["rf 20 trees"], validation["hgb 50 rounds"], strict=True
    ):
        assert fold["fit_seconds"] == pytest.approx(rf["fit_seconds"] + hgb["fit_seconds"])
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


def test_an_average_scores_as_its_soft_voting_model_and_exports_to_onnx() -> None:
    """Model selection scores an average as the mean of its members' probabilities; what is
    published is the soft-voting ensemble: the two agree, and so does its ONNX export."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(size=3000) > 2).astype(np.int64)
    small = {"n_estimators": 15, "min_samples_leaf": 3, "max_features": 0.5}
    members = (Candidate("rf", "rf", small), Candidate("et", "et", small))
    average = Candidate("average", "average", members=members)
    ensemble = average.make(seed=7).fit(X[:2000], y[:2000])
    by_members = np.mean(
        [m.make(seed=7).fit(X[:2000], y[:2000]).predict_proba(X[2000:])[:, 1] for m in members], axis=0
    )
    np.testing.assert_allclose(ensemble.predict_proba(X[2000:])[:, 1], by_members, rtol=0, atol=1e-12)
    assert describe(ensemble)["members"] == [
        {"type": "RandomForestClassifier", "n_trees": 15},
        {"type": "ExtraTreesClassifier", "n_trees": 15},
    ]
    parity = check_parity(
        ensemble, to_onnx_bytes(ensemble, X[:1]), X[2000:], Thresholds(review=0.2, decline=0.5)
    )
    assert parity.ok, parity.problems()


def test_averages_are_well_formed_and_names_unique() -> None:
    rf = Candidate("rf", "rf", {"n_estimators": 5})
    with pytest.raises(ValueError, match="members belong"):
        Candidate("empty average", "average")
    with pytest.raises(ValueError, match="members belong"):
        Candidate("rf with members", "rf", members=(rf,))
    with pytest.raises(ValueError, match="its members read its features"):
        Candidate("average", "average", features=("amount",), members=(rf,))
    with pytest.raises(ValueError, match="no parameters"):
        Candidate("average", "average", {"n_estimators": 5}, members=(rf,))
    assert Candidate("average", "average", members=(rf,)).model_type == "average(rf)"
    # one name, two models: fits are shared by name, so selection refuses to start
    other = Candidate("rf", "rf", {"n_estimators": 9})
    frame = pd.DataFrame()
    with pytest.raises(ValueError, match="two different candidates are named 'rf'"):
        simulated_eval.evaluate(frame, search=(rf, Candidate("avg", "average", members=(other,))))


def test_an_average_is_selected_only_when_it_is_better_beyond_the_noise() -> None:
    averages = {"avg"}
    # GIVEN an average ahead of the best single model on every validation fold
    steady = {"rf": [0.70, 0.72, 0.71, 0.73], "et": [0.69, 0.71, 0.70, 0.72], "avg": [0.71, 0.73, 0.72, 0.74]}
    name, record = simulated_eval.select(steady, averages=averages)
    # THEN it is selected, and the record says against which single model and by how much
    assert name == "avg"
    assert record["best_single"] == "rf"
    assert record["average_premium"] == pytest.approx(0.01)
    assert record["premium_standard_error"] == pytest.approx(0.0, abs=1e-12)
    # WHEN its lead is smaller than the fold-to-fold noise of the difference
    noisy = {"rf": [0.70, 0.72, 0.71, 0.73], "avg": [0.705, 0.715, 0.72, 0.725]}
    name, record = simulated_eval.select(noisy, averages=averages)
    # THEN the single model is published (the same AP within the noise, cheaper to serve)
    assert name == "rf"
    assert record["best_validation_ap"] == "avg"
    assert 0 < record["average_premium"] < record["premium_standard_error"]
    # AND a single model with the best AP needs no such test
    name, record = simulated_eval.select({"rf": [0.8, 0.8], "avg": [0.7, 0.7]}, averages=averages)
    assert (name, record) == ("rf", {"best_validation_ap": "rf"})
