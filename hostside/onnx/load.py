"""Loading an ONNX file, its external data included, with every failure as one line.

torch's dynamo exporter (the default since torch 2.9) writes the weights of all but the
smallest models to ``MODEL.onnx.data`` beside ``MODEL.onnx``. Readers that only need shapes
parse the graph alone (the external tensors' dims are in the graph); readers that need the
values load the data too; and a board gets one self-contained file, because the host sends
the model as a single file (``self_contained``).
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterator, List, Union

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from hostside.errors import UserError
from hostside.safe_io import refuse_special_file


def read_model(path: Union[str, Path], weights: bool = False) -> onnx.ModelProto:
    """The model at ``path``; with ``weights`` also the external tensors' values.

    UserError naming the file when it is missing, unreadable, not ONNX, empty or truncated,
    or when its external data file is missing or too short.
    """
    path = Path(path)
    refuse_special_file(path, "ONNX model")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory; give the path of an .onnx file") from None
    except OSError as exc:
        raise UserError(
            f"{path}: cannot read the file ({exc.strerror}); check the path and the file's permissions"
        ) from None
    try:
        model = onnx.load_model_from_string(data)
    except DecodeError as exc:
        raise UserError(
            f"{path}: not a readable ONNX model ({exc}); the file is corrupt, truncated or not ONNX, re-export it"
        ) from None
    if model.ir_version <= 0 or not model.opset_import or not model.graph.node:
        raise UserError(
            f"{path}: not an ONNX model (no IR version, opset or graph nodes); "
            f"the file is empty, truncated or of another format, re-export it"
        )
    if weights and has_external_data(model):
        _load_external_data(path, model)
    return model


def has_external_data(model: onnx.ModelProto) -> bool:
    """Whether some tensor of the model keeps its values in another file."""
    tensors = list(model.graph.initializer) + [
        attr.t for node in model.graph.node for attr in node.attribute if attr.HasField("t")]
    return any(external_data_helper.uses_external_data(t) for t in tensors)


def model_bytes(path: Union[str, Path]) -> int:
    """Bytes of the model on disk: the file and the external data files it names (a file
    that cannot be read counts as its own size: the readers report it)."""
    path = Path(path)
    size = path.stat().st_size
    try:
        model = read_model(path)
    except UserError:
        return size
    for location in _locations(model):
        data = path.parent / location
        if data.is_file():
            size += data.stat().st_size
    return size


def _locations(model: onnx.ModelProto) -> List[str]:
    return sorted({
        entry.value for t in model.graph.initializer if external_data_helper.uses_external_data(t)
        for entry in t.external_data if entry.key == "location"})


def _load_external_data(path: Path, model: onnx.ModelProto) -> None:
    locations = _locations(model)
    where = ", ".join(repr(name) for name in locations) or "an external file"
    try:
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError, onnx.checker.ValidationError) as exc:
        detail = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0]
        raise UserError(
            f"{path}: its weights are kept in {where} beside it, which cannot be read ({detail}); copy that file "
            f"next to the model, or re-export with the weights inside (torch.onnx.export(..., external_data=False))"
        ) from None


@contextlib.contextmanager
def self_contained(path: Union[str, Path]) -> Iterator[Path]:
    """``path`` itself when the model holds all its weights, else a private temporary copy
    with the external data inside (removed on exit): what a board is sent is one file.

    A file that is not readable ONNX is passed on as it is: whoever runs it reports why
    (the board agent's ``invalid_model``); a missing external data file is one UserError.
    """
    path = Path(path)
    try:
        model = read_model(path)
    except UserError:
        yield path
        return
    if not has_external_data(model):
        yield path
        return
    _load_external_data(path, model)
    with tempfile.TemporaryDirectory(prefix="hostside-onnx-") as scratch:
        whole = Path(scratch) / path.name
        onnx.save_model(model, str(whole))
        yield whole
