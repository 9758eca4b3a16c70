"""One feature definition for training and serving."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraud_core.shapes.kaggle import FEATURE_NAMES, KAGGLE, PCA_FIELDS, build_feature_matrix


def test_builds_float32_matrix_in_declared_order() -> None:
    # GIVEN raw columns with distinct values per field
    columns = {
        "Time": [0.0, 90_000.0],
        "Amount": [12.5, 0.0],
        **{v: [float(i), -float(i)] for i, v in enumerate(PCA_FIELDS)},
    }
    # WHEN the features are built
    X = build_feature_matrix(columns)
    # THEN there is one float32 column per feature name, in order
    assert X.dtype == np.float32
    assert X.shape == (2, len(FEATURE_NAMES))
    assert X[0, FEATURE_NAMES.index("V5")] == 4.0
    assert X[1, FEATURE_NAMES.index("Amount")] == 0.0


def test_hour_of_day_wraps_days() -> None:
    X = build_feature_matrix(
        {
            "Time": [3_600.0, 86_400.0 + 7_200.0],
            "Amount": [1.0, 1.0],
            **{v: [0.0, 0.0] for v in PCA_FIELDS},
        }
    )
    assert X[:, FEATURE_NAMES.index("hour_of_day")].tolist() == [1.0, 2.0]


def test_dataframe_and_dict_give_identical_features(tiny_frame: pd.DataFrame) -> None:
    # GIVEN the same rows as a DataFrame (training) and as plain lists (serving)
    head = tiny_frame.head(50)
    as_lists = {c: head[c].tolist() for c in head.columns}
    # THEN both executions of the definition agree bit for bit
    np.testing.assert_array_equal(build_feature_matrix(head), build_feature_matrix(as_lists))


def test_incompatibility_names_unknown_features_only() -> None:
    assert KAGGLE.incompatibility(list(FEATURE_NAMES)) == []
    assert KAGGLE.incompatibility([*FEATURE_NAMES, "card_tx_count_7d"]) == ["card_tx_count_7d"]
    # a subset in another order is servable: the scorer selects the model's columns by name
    assert KAGGLE.incompatibility(list(reversed(FEATURE_NAMES))[:5]) == []
