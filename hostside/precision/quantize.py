"""INT8 deployment: onnxruntime static quantization, then accuracy and on-board latency.

INT8 is the reduced format a Raspberry Pi actually runs faster (NEON integer dot products),
but not on every board or model, so the int8 file is measured by the agent next to the
float file instead of assumed faster. The quantizer is onnxruntime's own (QDQ format, int8
weights per output channel, int8 activations, min/max calibration), so the file is exactly
what onnxruntime on the board optimises into integer kernels.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Union

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from hostside.errors import UserError
from hostside.train.datasets import Dataset

CALIBRATION_SAMPLES = 256
CALIBRATION_BATCH = 32


@dataclass
class QuantizeReport:
    """What was written and how the int8 file compares with the float one."""

    model: str
    int8_model: str
    int8_sha256: str
    calibration_samples: int
    test_images: int
    float_accuracy: float
    int8_accuracy: float
    float_size_bytes: int
    int8_size_bytes: int
    board: Optional[str] = None
    float_latency_ms: Optional[float] = None
    int8_latency_ms: Optional[float] = None
    measurements: Dict[str, Any] = field(default_factory=dict)

    @property
    def speedup(self) -> Optional[float]:
        if self.float_latency_ms and self.int8_latency_ms:
            return self.float_latency_ms / self.int8_latency_ms
        return None

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["speedup"] = self.speedup
        return data


def calibration_indices(train: Sequence[int], samples: int = CALIBRATION_SAMPLES, seed: int = 0) -> np.ndarray:
    """A seeded sample of the split's training part (never its test images)."""
    train = np.asarray(train, dtype=np.int64)
    if len(train) == 0:
        raise UserError("the split's train part is empty, so there is nothing to calibrate int8 scales on; "
                        "give a split with training images")
    if samples < 1:
        raise UserError(f"--calibration-samples {samples}: need at least 1")
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(train)[:samples])


class _Reader(CalibrationDataReader):
    """onnxruntime's CalibrationDataReader protocol over in-memory images."""

    def __init__(self, input_name: str, images: np.ndarray):
        self._batches: Iterator[Dict[str, np.ndarray]] = iter(
            {input_name: np.ascontiguousarray(images[i:i + CALIBRATION_BATCH])}
            for i in range(0, len(images), CALIBRATION_BATCH)
        )

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        return next(self._batches, None)


def quantize_int8(model_path: Union[str, Path], out_path: Union[str, Path], images: np.ndarray) -> str:
    """Write the static-INT8 QDQ version of ``model_path`` to ``out_path``, calibrated on
    ``images`` (raw inputs, as the model takes them); returns its sha256."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(images) == 0:
        raise UserError("no calibration images: the int8 calibration split is empty; give training images")
    model_path, out_path = Path(model_path), Path(out_path)
    try:
        model = onnx.load(str(model_path))
    except Exception as exc:  # DecodeError, OSError, ...
        raise UserError(f"{model_path}: not a readable ONNX file ({exc})") from None
    initializers = {t.name for t in model.graph.initializer}
    input_name = next(v.name for v in model.graph.input if v.name not in initializers)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # onnxruntime's recommended pre-processing (shape inference, graph optimisation)
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model_path), str(prepared))
        quantize_static(
            str(prepared), str(out_path), _Reader(input_name, images.astype(np.float32)),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        )
    return hashlib.sha256(out_path.read_bytes()).hexdigest()


def _median_latency_ms(board: Any, path: Path, runs: int, threads: int) -> Dict[str, Any]:
    result = board.measure(path, runs=runs, threads=threads)
    if result.get("error"):
        error = result["error"]
        raise UserError(f"measuring {path} on {board.name} failed [{error['code']}]: {error['message']}")
    return result


def quantize_and_measure(model_path: Union[str, Path], dataset: Dataset, train: Sequence[int], test: Sequence[int],
                         out_path: Union[str, Path], board_name: Optional[str] = "local", runs: int = 200,
                         threads: int = 1, calibration_samples: int = CALIBRATION_SAMPLES, seed: int = 0,
                         progress: Callable[[str], None] = lambda _m: None) -> QuantizeReport:
    """Quantize, score both files on the test images, and (with a board) measure both."""
    from hostside.train.onnx_eval import evaluate_onnx

    model_path, out_path = Path(model_path), Path(out_path)
    if not model_path.is_file():
        raise UserError(f"{model_path}: no such file; give the .onnx file to quantize")
    if len(test) == 0:
        raise UserError("the split's test part is empty; the int8 accuracy needs test images")
    float_accuracy = evaluate_onnx(model_path, dataset, test)  # also checks the input shape
    calibration = calibration_indices(train, calibration_samples, seed)
    progress(f"calibrating int8 scales on {len(calibration)} training images")
    sha256 = quantize_int8(model_path, out_path, dataset.x[calibration])
    int8_accuracy = evaluate_onnx(out_path, dataset, test)
    report = QuantizeReport(
        str(model_path), str(out_path), sha256, len(calibration), len(test), float_accuracy, int8_accuracy,
        model_path.stat().st_size, out_path.stat().st_size,
    )
    if board_name:
        from hostside.boards import open_board

        with open_board(board_name) as board:
            for label, path in (("float", model_path), ("int8", out_path)):
                progress(f"measuring the {label} model on {board_name} ({runs} runs)")
                report.measurements[label] = _median_latency_ms(board, path, runs, threads)
        report.board = board_name
        report.float_latency_ms = float(report.measurements["float"]["latency_ms"]["median"])
        report.int8_latency_ms = float(report.measurements["int8"]["latency_ms"]["median"])
    return report
