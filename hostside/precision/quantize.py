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
from hostside.onnx.graph import network_input
from hostside.onnx.load import model_bytes, read_model
from hostside.safe_io import check_file
from hostside.onnx.runtime import chunks, fixed_batch
from hostside.train.datasets import Dataset

CALIBRATION_SAMPLES = 256
CALIBRATION_BATCH = 32
#: The first opset whose DequantizeLinear takes an ``axis`` (per-channel scales).
QDQ_MIN_OPSET = 13


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

    def __init__(self, input_name: str, images: np.ndarray, fixed: Optional[int] = None):
        self._batches: Iterator[Dict[str, np.ndarray]] = iter(
            {input_name: part} for part, _ in chunks(images, CALIBRATION_BATCH, fixed))

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
    model = read_model(model_path, weights=True)
    first = network_input(model, model_path)
    fixed = fixed_batch([d.dim_value if d.HasField("dim_value") else None for d in first.type.tensor_type.shape.dim])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.onnx"  # one file, at an opset with per-channel DequantizeLinear
        onnx.save_model(_at_least_opset(model, model_path, QDQ_MIN_OPSET), str(source))
        # onnxruntime's recommended pre-processing (shape inference, graph optimisation)
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        quantize_static(
            str(prepared), str(out_path), _Reader(first.name, images.astype(np.float32), fixed),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        )
    return hashlib.sha256(out_path.read_bytes()).hexdigest()


def _at_least_opset(model: Any, where: Path, opset: int) -> Any:
    """The model at ``opset`` or later, converted by onnx's version converter: per-channel
    int8 weights need DequantizeLinear's ``axis``, which older opsets lack (the quantizer
    would write a file onnxruntime refuses)."""
    import onnx
    from onnx import version_converter

    current = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if current >= opset:
        return model
    try:
        return version_converter.convert_version(model, opset)
    except Exception as exc:  # the converter raises RuntimeError and its own untyped errors
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{where}: opset {current} is too old for per-channel int8 and onnx cannot convert it to "
                        f"opset {opset} ({first_line}); re-export the model with opset_version={opset} or later"
                        ) from None


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
    check_file(model_path, "ONNX model to quantize")
    if len(test) == 0:
        raise UserError("the split's test part is empty; the int8 accuracy needs test images")
    float_accuracy = evaluate_onnx(model_path, dataset, test)  # also checks the input shape
    calibration = calibration_indices(train, calibration_samples, seed)
    progress(f"calibrating int8 scales on {len(calibration)} training images")
    sha256 = quantize_int8(model_path, out_path, dataset.x[calibration])
    int8_accuracy = evaluate_onnx(out_path, dataset, test)
    report = QuantizeReport(
        str(model_path), str(out_path), sha256, len(calibration), len(test), float_accuracy, int8_accuracy,
        model_bytes(model_path), model_bytes(out_path),
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
