"""The model manifest: everything serving needs to know about an artifact, and its checksums."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fraud_core.monitoring.profile import ReferenceBins

MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
SKLEARN_FILE = "model.joblib"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileEntry(BaseModel):
    """Checksum and size of one artifact file."""

    model_config = ConfigDict(frozen=True)
    sha256: str
    bytes: int


class ScalingEntry(BaseModel):
    """Robust scaling of one raw field, ``scaled = (raw - center) / scale``, fit on training data."""

    model_config = ConfigDict(frozen=True)
    center: float
    scale: float

    def unscale(self, scaled: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return scaled * self.scale + self.center


class Thresholds(BaseModel):
    """Decision bands: score >= decline → decline, >= review → review, else approve."""

    model_config = ConfigDict(frozen=True)
    review: float = Field(ge=0.0, le=1.0)
    decline: float = Field(ge=0.0, le=1.0)
    rule: str = ""
    """How the thresholds were chosen, for humans."""

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.review > self.decline:
            raise ValueError("review threshold must not exceed decline threshold")
        return self


class ModelManifest(BaseModel):
    """``manifest.json`` of one model version."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    name: str
    version: str
    created_at: str
    model_type: str
    schema_name: str = "kaggle"
    features: list[str]
    raw_scaling: dict[str, ScalingEntry]
    """Robust scaler of raw Time/Amount, fit on the training part, to decode pre-scaled payloads."""
    explain_baseline: list[float]
    """Per-feature training medians, the reference point of occlusion explanations."""
    thresholds: Thresholds
    metrics: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    libraries: dict[str, str] = Field(default_factory=dict)
    files: dict[str, FileEntry] = Field(default_factory=dict)
    reference: dict[str, ReferenceBins] = Field(default_factory=dict)
    """Reference distributions of the score and every feature on held-out data (drift monitoring)."""

    @model_validator(mode="after")
    def _baseline_matches(self) -> ModelManifest:
        if len(self.explain_baseline) != len(self.features):
            raise ValueError("explain_baseline must have one value per feature")
        return self

    def summary(self) -> dict[str, Any]:
        """What an operator wants to see: identity, quality, decision policy, inputs."""
        return {
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at,
            "model_type": self.model_type,
            "schema": self.schema_name,
            "features": self.features,
            "thresholds": self.thresholds.model_dump(),
            "metrics": self.metrics.get("test", self.metrics),
            "training": {k: v for k, v in self.training.items() if k != "columns"},
        }
