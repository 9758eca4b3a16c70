"""The score as the system publishes it: what results, topics and the scoring log carry, and what
the monitor's reference distribution is built from (decisions use the unrounded score)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

SCORE_DECIMALS = 8


def published_scores(scores: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    return np.asarray(np.round(np.asarray(scores, dtype=np.float64), SCORE_DECIMALS), dtype=np.float64)
