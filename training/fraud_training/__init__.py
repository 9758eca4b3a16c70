"""Offline side: datasets, training, evaluation, ONNX export and the registry CLI."""
