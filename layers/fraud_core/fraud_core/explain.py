"""Reasons for a score, by occlusion: how much the score drops when one feature is reset.

For each transaction and each feature we replace that feature by its training median (the
manifest's ``explain_baseline``) and rescore; the contribution is ``score - rescored``. It is
exact for what it measures (the model's own response, one feature at a time), costs one
vectorized model call of ``n_rows * n_features`` rows, and works for any model type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Reason:
    """One feature that pushed the score up."""

    feature: str
    value: float
    contribution: float

    def to_dict(self) -> dict[str, float | str]:
        return {"feature": self.feature, "value": self.value, "contribution": self.contribution}


MIN_CONTRIBUTION = 1e-6


def occlusion_reasons(
    predict: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float64]],
    features: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float64],
    *,
    baseline: npt.NDArray[np.float32],
    names: tuple[str, ...] | list[str],
    top_k: int,
) -> list[tuple[Reason, ...]]:
    """Top ``top_k`` features raising each row's score, most important first."""
    n, width = features.shape
    if n == 0 or top_k == 0:
        return [() for _ in range(n)]
    perturbed = np.repeat(features[:, None, :], width, axis=1)
    diag = np.arange(width)
    perturbed[:, diag, diag] = baseline
    rescored = predict(perturbed.reshape(n * width, width)).reshape(n, width)
    contributions = scores[:, None] - rescored
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :top_k]
    out: list[tuple[Reason, ...]] = []
    for i in range(n):
        out.append(
            tuple(
                Reason(names[j], float(features[i, j]), round(float(contributions[i, j]), 6))
                for j in order[i]
                if contributions[i, j] > MIN_CONTRIBUTION
            )
        )
    return out
