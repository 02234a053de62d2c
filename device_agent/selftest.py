"""One tiny inference proving that this board's Python, numpy and onnxruntime work together.

Run in its own process by ``hostside boards install``/``check``: some onnxruntime releases die
with "Illegal instruction" on a Raspberry Pi 4, which only a real inference reveals. The model
is embedded (135 bytes, y = relu(x * [1, -2, 0.5, 3]), IR 4 / opset 9 so that old releases
load it) because the board has no ``onnx`` package to build one; it was written with
``onnx.helper`` and checked with ``onnx.checker``.
"""

from __future__ import annotations

import base64
import platform
from typing import Any, Dict

_MODEL_B64 = (
    "CAQSDGRldmljZV9hZ2VudDpvCg4KAXgKAXcSAXQiA011bAoMCgF0EgF5IgRSZWx1EghzZWxmdGVzdCobCAEIBBABIhAA"
    "AIA/AAAAwAAAAD8AAEBAQgF3WhMKAXgSDgoMCAESCAoCCAEKAggEYhMKAXkSDgoMCAESCAoCCAEKAggEQgQKABAJ"
)
_EXPECTED = [1.0, 0.0, 0.5, 3.0]


def run() -> Dict[str, Any]:
    """Import numpy and onnxruntime and run the embedded model; never raises."""
    facts: Dict[str, Any] = {"python": platform.python_version(), "architecture": platform.machine(), "ok": False}
    try:
        import numpy as np
    except Exception as exc:
        facts.update(missing="numpy", message=f"numpy cannot be imported: {exc}")
        return facts
    facts["numpy"] = np.__version__
    try:
        import onnxruntime as ort
    except Exception as exc:
        facts.update(missing="onnxruntime", message=f"onnxruntime cannot be imported: {exc}")
        return facts
    facts["onnxruntime"] = ort.__version__
    try:
        session = ort.InferenceSession(base64.b64decode(_MODEL_B64), providers=["CPUExecutionProvider"])
        (output,) = session.run(None, {"x": np.ones((1, 4), dtype=np.float32)})
    except Exception as exc:
        facts.update(missing="onnxruntime", message=f"onnxruntime cannot run a tiny model: {exc}")
        return facts
    if [float(v) for v in output.ravel()] != _EXPECTED:
        facts.update(missing="onnxruntime", message=f"onnxruntime computed {output.ravel().tolist()}, expected {_EXPECTED}")
        return facts
    facts["ok"] = True
    return facts
