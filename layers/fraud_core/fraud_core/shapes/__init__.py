"""Data shape plug-ins, and the one place that maps a manifest's ``schema_name`` to its plug-in.

To add a shape: write ``fraud_core/shapes/<name>/`` exposing a :class:`DataShape` instance
(fields and constraint table, request model, feature builder, online state), and add it to
:data:`SHAPES` below. Nothing else in the serving code changes.
"""

from __future__ import annotations

from fraud_core.errors import IncompatibleModelError
from fraud_core.shapes.base import DataShape, FeatureMatrix, Prepared
from fraud_core.shapes.kaggle import KAGGLE
from fraud_core.shapes.simulated import SIMULATED

__all__ = ["SHAPES", "DataShape", "FeatureMatrix", "Prepared", "shape_named"]

SHAPES: dict[str, DataShape] = {shape.name: shape for shape in (KAGGLE, SIMULATED)}


def shape_named(name: str) -> DataShape:
    """The plug-in for a manifest's ``schema_name``; IncompatibleModelError for an unknown one."""
    try:
        return SHAPES[name]
    except KeyError:
        raise IncompatibleModelError(
            f"unknown data shape {name!r}: this core serves {sorted(SHAPES)}"
        ) from None
