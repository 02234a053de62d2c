"""Precision analysis of one model: accuracy and weight memory per number format.

For every format asked for, the model's accuracy on a split part under the emulated format
(:mod:`hostside.precision.emulate`; ``int8`` is the real onnxruntime-quantized file), its drop
against the float model in percentage points, the weight memory (bits per value x deployed
parameters) and the energy of one multiplication. For the full T(w,t) grid also the
per-model best type: the narrowest storage whose accuracy is within one point of float
(ties: the more accurate), as in the IoT paper's figure 5.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

import hostside.arch.ops  # noqa: F401 - the op modules declare their ONNX types in the table
from hostside.errors import UserError
from hostside.onnx.graph import network_input
from hostside.onnx.load import read_model
from hostside.onnx.optypes import OPS
from hostside.precision.emulate import OnnxEmulator, check_mode
from hostside.precision.energy import energy_per_mult_pj
from hostside.precision.formats import FloatFormat, Format, Int8Format, grid
from hostside.train.datasets import Dataset

BEST_TOLERANCE_POINTS = 1.0
#: Layers with MACs whose third input is a bias (Conv and ConvTranspose B, Gemm C), from the
#: operator table (hostside.onnx.optypes).
_BIAS_AT_2 = frozenset(row.name for row in OPS.values() if row.cost == "macs" and 2 in row.params)
Progress = Callable[[str], None]


def parameter_counts(model_path: Union[str, Path]) -> Dict[str, int]:
    """Deployed parameters of an ONNX file (``hostside.arch.onnx_stats`` conventions) and how
    many of them are biases (Conv B, Gemm C), which INT8 keeps in 32 bits."""
    from hostside.arch.onnx_stats import onnx_stats

    params = int(onnx_stats(model_path)["params"])
    model = read_model(model_path)
    sizes = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    biases = sum(
        sizes.get(node.input[2], 0) for node in model.graph.node
        if node.op_type in _BIAS_AT_2 and len(node.input) > 2
    )
    return {"params": params, "bias_params": min(biases, params)}


def check_model_fits(model_path: Union[str, Path], dataset: Dataset) -> None:
    """Refuse, before any work, a model hostside cannot feed the dataset's images to: not
    one float32 input, or examples of another shape."""
    dims = network_input(read_model(model_path), model_path).type.tensor_type.shape.dim[1:]
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(shape) != len(dataset.input_shape) or any(d is not None and d != s for d, s in zip(shape, dataset.input_shape)):
        raise UserError(f"{model_path}: model input {shape} does not fit dataset {dataset.name!r} "
                        f"{list(dataset.input_shape)}; use the dataset the model was trained on")


def weight_bytes(fmt: Optional[Format], params: int, bias_params: int) -> int:
    """Bytes of the deployed weights in ``fmt`` (None: float32), values packed at ``bits`` each;
    INT8 stores its biases in 32 bits, as onnxruntime's quantized operators need."""
    if fmt is None:
        return 4 * params
    if isinstance(fmt, Int8Format):
        return (params - bias_params) + 4 * bias_params
    return math.ceil(params * fmt.bits / 8)


def best_type(rows: Sequence[Dict[str, Any]], float_accuracy: float,
              tolerance_points: float = BEST_TOLERANCE_POINTS) -> Optional[Dict[str, Any]]:
    """The grid row with the fewest bits whose accuracy is within ``tolerance_points`` of float."""
    floor = float_accuracy - tolerance_points / 100 - 1e-9
    fitting = [r for r in rows if r.get("grid") and r["accuracy"] is not None and r["accuracy"] >= floor]
    if not fitting:
        return None
    return min(fitting, key=lambda r: (r["bits"], -r["accuracy"], r["w"]))


def analyze_model(model_path: Union[str, Path], dataset: Dataset, indices: Sequence[int], formats: Sequence[Format],
                  mode: str = "extrinsic", train_indices: Sequence[int] = (), int8_path: Optional[Path] = None,
                  threads: int = 1, progress: Progress = lambda _m: None) -> Dict[str, Any]:
    """Accuracy on ``dataset[indices]`` and memory of ``model_path`` in each of ``formats``.

    ``train_indices`` calibrate INT8 (needed only when ``formats`` holds ``int8``), which is
    written to ``int8_path``. Returns a JSON-ready dict (accuracies are fractions, NaN as None
    with a ``reason``).
    """
    check_mode(mode)
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) == 0:
        raise UserError("the split part to evaluate on is empty; use another split or --part")
    emulator = OnnxEmulator(model_path, threads=threads)
    emulator.check_input(dataset.input_shape, dataset.name)
    x, y = dataset.x[indices], dataset.y[indices]
    counts = parameter_counts(model_path)
    params, biases = counts["params"], counts["bias_params"]
    reference = emulator.evaluate(x, y, None)
    grid_set = set(grid())
    rows: List[Dict[str, Any]] = []
    started = time.perf_counter()
    emulated = [f for f in formats if not isinstance(f, Int8Format)]
    for done, fmt in enumerate(emulated, 1):
        result = emulator.evaluate(x, y, fmt, mode)
        rows.append(_row(fmt, result.accuracy, result.reason, reference.accuracy, params, biases,
                         fmt in grid_set and isinstance(fmt, FloatFormat)))
        if done % 23 == 0 or (done == len(emulated) and done % 23):
            progress(f"{done}/{len(emulated)} formats emulated ({time.perf_counter() - started:.1f} s)")
    emulation_s = time.perf_counter() - started
    if any(isinstance(f, Int8Format) for f in formats):
        rows.append(_int8_row(model_path, dataset, indices, train_indices, int8_path, reference.accuracy,
                              params, biases, progress))
    result: Dict[str, Any] = {
        "model": str(model_path), "dataset": dataset.name, "images": int(len(indices)), "mode": mode,
        "params": params, "bias_params": biases,
        "float": {"accuracy": reference.accuracy, "weight_bytes": weight_bytes(None, params, biases)},
        "formats": rows, "emulation_seconds": emulation_s,
    }
    if grid_set <= set(emulated):
        result["best"] = best_type(rows, reference.accuracy)
    return result


def _row(fmt: Format, accuracy: float, reason: str, float_accuracy: float, params: int, biases: int,
         in_grid: bool) -> Dict[str, Any]:
    finite = not math.isnan(accuracy)
    pj, _ = energy_per_mult_pj(fmt)
    row: Dict[str, Any] = {
        "format": fmt.name, "kind": fmt.kind, "bits": fmt.bits,
        "accuracy": accuracy if finite else None,
        "drop_points": 100 * (float_accuracy - accuracy) if finite else None,
        "weight_bytes": weight_bytes(fmt, params, biases), "mult_pj": pj,
        "reason": reason or None, "grid": in_grid,
    }
    if isinstance(fmt, FloatFormat):
        row.update(w=fmt.w, t=fmt.t)
    return row


def _int8_row(model_path: Union[str, Path], dataset: Dataset, indices: np.ndarray, train_indices: Sequence[int],
              int8_path: Optional[Path], float_accuracy: float, params: int, biases: int,
              progress: Progress) -> Dict[str, Any]:
    from hostside.precision.formats import INT8
    from hostside.precision.quantize import calibration_indices, quantize_int8
    from hostside.train.onnx_eval import evaluate_onnx

    if int8_path is None:
        raise ValueError("int8 needs int8_path, where the quantized model is written")
    calibration = calibration_indices(train_indices)
    progress(f"int8: onnxruntime static quantization calibrated on {len(calibration)} training images")
    quantize_int8(model_path, int8_path, dataset.x[calibration])
    accuracy = evaluate_onnx(int8_path, dataset, indices)
    row = _row(INT8, accuracy, "", float_accuracy, params, biases, False)
    row["onnx"] = str(int8_path)
    return row


def plot_grid(result: Dict[str, Any], path: Union[str, Path], title: str) -> Path:
    """Heatmap of accuracy over exponent width w (rows) and significand width t (columns);
    formats whose logits were NaN are grey, the best type is outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    accuracy = np.full((8, 23), np.nan)
    for row in result["formats"]:
        if row.get("grid") and row["accuracy"] is not None:
            accuracy[row["w"] - 1, row["t"] - 1] = 100 * row["accuracy"]
    fig, ax = plt.subplots(figsize=(13, 4.6))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#bbbbbb")
    finite = accuracy[np.isfinite(accuracy)]
    # The colour scale spans the accuracies that occur, so the few points between types show.
    low = 5 * math.floor(finite.min() / 5) if finite.size else 0
    high = max(low + 5, 5 * math.ceil(finite.max() / 5)) if finite.size else 100
    image = ax.imshow(np.ma.masked_invalid(accuracy), cmap=cmap, vmin=low, vmax=high, origin="lower",
                      extent=(0.5, 23.5, 0.5, 8.5), aspect="auto")
    for (w, t), value in np.ndenumerate(accuracy):
        label = "NaN" if np.isnan(value) else f"{value:.1f}"
        dark = not np.isnan(value) and value < low + 0.6 * (high - low)
        ax.text(t + 1, w + 1, label, ha="center", va="center", fontsize=6, color="white" if dark else "black")
    best = result.get("best")
    if best:
        ax.add_patch(Rectangle((best["t"] - 0.5, best["w"] - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xticks(range(1, 24))
    ax.set_yticks(range(1, 9))
    ax.set_xlabel("t (trailing significand bits)")
    ax.set_ylabel("w (exponent bits)")
    float_pct = 100 * result["float"]["accuracy"]
    subtitle = f"float {float_pct:.2f}%"
    if best:
        subtitle += f"; best type {best['format']} ({best['bits']} bits, {100 * best['accuracy']:.2f}%, red)"
    ax.set_title(f"{title}\naccuracy (%) per T(w,t), {result['mode']} rounding; {subtitle}; grey: NaN", fontsize=9)
    fig.colorbar(image, ax=ax, label="accuracy (%)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
