"""Reference distributions recorded in the manifest at training time.

Each model feature and the score get quantile bins (inner edges + the reference share of each
bin, bins merged until every one holds at least ``MIN_SHARE`` of the reference); the score also
keeps ``SCORE_QUANTILES`` evenly spaced quantiles, its reference CDF for the KS test.
Bins are right-closed, ``(-inf, e0], (e0, e1], ..., (e_last, inf)``, with every edge halfway
between two distinct reference values; features on the float32 grid of the model's input and
the score as published (8 decimals), as the scoring log keeps them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from fraud_core.scores import published_scores

BINS = 10
MIN_SHARE = 0.01
SCORE_QUANTILES = 1001
SCORE = "fraud_score"
"""The profile's entry for the model's score (feature names never collide with it)."""


class ReferenceBins(BaseModel):
    """One variable's reference distribution."""

    model_config = ConfigDict(frozen=True)
    edges: list[float]
    proportions: list[float]
    count: int = Field(gt=0)
    """Reference sample size (the ``m`` of the drift thresholds)."""
    entities: int | None = None
    """Distinct entities (cards, terminals) behind the reference values of a per-entity feature:
    its effective sample size."""
    quantiles: list[float] = Field(default_factory=list)
    """Evenly spaced quantiles from 0 to 1 (score only), the reference CDF of the KS test."""

    def counts(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """How many of ``values`` fall in each bin."""
        index = np.searchsorted(np.asarray(self.edges), values, side="left")
        return np.bincount(index, minlength=len(self.edges) + 1).astype(np.int64)


def _bin_counts(edges: list[float], values: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.int64]:
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)


def reference_bins(
    values: npt.NDArray[np.floating[Any]], *, bins: int = BINS, quantiles: int = 0
) -> ReferenceBins:
    """Quantile bins of ``values`` (finite ones), small bins merged into a neighbour."""
    given = np.asarray(values, dtype=np.float64)
    values = given[np.isfinite(given)]
    if len(values) == 0:
        raise ValueError("a reference distribution needs at least one finite value")
    distinct = np.unique(values)
    cuts = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1], method="lower"))
    # an edge halfway to the next distinct value: a value equal to an atom never straddles it
    above = np.searchsorted(distinct, cuts, side="right")
    edges = [
        float((c + distinct[i]) / 2) if i < len(distinct) else float(c)
        for c, i in zip(cuts, above, strict=True)
    ]
    counts = _bin_counts(edges, values)
    while edges and counts.min() < MIN_SHARE * len(values):
        small = int(np.argmin(counts))
        # merge the small bin with its smaller neighbour by removing the edge between them
        if small == 0:
            edge = 0
        elif small == len(counts) - 1:
            edge = small - 1
        else:
            edge = small - 1 if counts[small - 1] <= counts[small + 1] else small
        del edges[edge]
        counts = _bin_counts(edges, values)
    qs: list[float] = np.quantile(values, np.linspace(0, 1, quantiles)).tolist() if quantiles else []
    return ReferenceBins(
        edges=edges,
        proportions=[float(c) / len(values) for c in counts],
        count=len(values),
        quantiles=[float(q) for q in qs],
    )


def build_profile(
    names: Sequence[str],
    matrix: npt.NDArray[np.floating[Any]],
    scores: npt.NDArray[np.floating[Any]],
    *,
    entities: Mapping[str, npt.NDArray[Any]] | None = None,
) -> dict[str, ReferenceBins]:
    """The manifest's reference profile: the score (the served ONNX model's, as published) and
    every model feature (columns of ``matrix``). ``entities`` maps a feature to the entity ids
    of the rows (e.g. the card of each transaction) when the feature is aggregated per entity."""
    profile = {SCORE: reference_bins(published_scores(scores), quantiles=SCORE_QUANTILES)}
    # features on the grid the model sees and the scoring log keeps: float32, the ONNX input
    model_input = np.asarray(matrix, dtype=np.float32)
    for i, name in enumerate(names):
        bins = reference_bins(model_input[:, i])
        if entities and name in entities:
            bins = bins.model_copy(update={"entities": len(np.unique(entities[name]))})
        profile[name] = bins
    return profile
