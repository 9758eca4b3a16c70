"""Fraud scoring core: feature definitions, model registry and the fast ONNX scorer (the Lambda layer)."""

__version__ = "0.1.0"
