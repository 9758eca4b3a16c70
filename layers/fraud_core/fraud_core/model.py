"""The fast inference runtime: the exported ONNX graph under onnxruntime (no sklearn, no pandas)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from fraud_core.errors import IncompatibleModelError

PROBABILITIES_OUTPUT = "probabilities"


class OnnxModel:
    """Fraud probability for float32 feature rows, from an ONNX classifier graph."""

    def __init__(self, onnx_bytes: bytes, *, n_features: int, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        inputs = self._session.get_inputs()
        outputs = [o.name for o in self._session.get_outputs()]
        if len(inputs) != 1 or PROBABILITIES_OUTPUT not in outputs:
            raise IncompatibleModelError(
                f"ONNX graph must have one input and a {PROBABILITIES_OUTPUT!r} output, "
                f"got inputs {[i.name for i in inputs]} and outputs {outputs}"
            )
        width = inputs[0].shape[-1]
        if isinstance(width, int) and width != n_features:
            raise IncompatibleModelError(f"ONNX graph takes {width} features, manifest lists {n_features}")
        self._input = inputs[0].name
        self._outputs = [PROBABILITIES_OUTPUT]
        self.n_features = n_features

    def predict(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Fraud probability per row (float64 copy of the graph's float32 output)."""
        if features.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        proba = self._session.run(self._outputs, {self._input: features})[0]
        return np.asarray(proba[:, 1], dtype=np.float64)
