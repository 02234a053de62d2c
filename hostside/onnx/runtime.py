"""Running a user's model with onnxruntime on many images, whatever batch axis it declares.

A plain ``torch.onnx.export(model, torch.randn(1, ...), f)`` fixes the batch at 1, and the
graph inside may depend on it (a ``Reshape`` to ``[1, 256]``), so re-declaring the axis
symbolic is not safe. The images are therefore fed in chunks the file accepts: ``batch``
rows at a time where the axis is symbolic, exactly the fixed batch where it is fixed (the
last chunk padded, the padding's outputs dropped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from hostside.errors import UserError


def open_session(path: Union[str, Path, bytes], threads: int = 1, where: Optional[str] = None) -> Any:
    """An onnxruntime CPU session on the model (a path, with its external data beside it, or
    serialized bytes); one UserError line when onnxruntime cannot load it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = path if isinstance(path, bytes) else str(path)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable models
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{where or path}: onnxruntime cannot load it ({detail}); export the model again") from None


def fixed_batch(dims: Sequence[Any]) -> Optional[int]:
    """The batch size an input of these dims (onnxruntime's or ONNX's, batch first) accepts
    only, or None when its batch axis is symbolic."""
    first = dims[0] if len(dims) else None
    return first if isinstance(first, int) and first > 0 else None


def chunks(x: np.ndarray, batch: int, fixed: Optional[int]) -> Iterator[Tuple[np.ndarray, int]]:
    """(chunk, real rows) covering ``x`` in order: ``batch`` rows each, or exactly ``fixed``
    rows each with the last one padded by zeros."""
    size = fixed or batch
    for start in range(0, len(x), size):
        part = np.ascontiguousarray(x[start:start + size])
        real = len(part)
        if fixed and real < fixed:
            part = np.concatenate([part, np.zeros((fixed - real, *part.shape[1:]), part.dtype)])
        yield part, real


def run_in_chunks(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int,
                  fixed: Optional[int]) -> Iterator[Tuple[slice, np.ndarray]]:
    """(rows of ``x``, outputs of ``run`` for them) chunk by chunk (see ``chunks``)."""
    start = 0
    for part, real in chunks(x, batch, fixed):
        yield slice(start, start + real), run(part)[:real]
        start += real


def predict(session: Any, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """The first output of the model for every row of ``x``, fed in chunks it accepts."""
    first = session.get_inputs()[0]
    fixed = fixed_batch(first.shape)

    def run(part: np.ndarray) -> np.ndarray:
        return session.run(None, {first.name: part})[0]

    outputs = [out for _, out in run_in_chunks(run, x, batch, fixed)]
    if not outputs:
        raise UserError("no images to run the model on; give a non-empty split")
    return np.concatenate(outputs)
