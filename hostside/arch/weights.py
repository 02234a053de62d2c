"""Trainable network state as versioned ``.npz`` files, and weight inheritance by node id.

A state is a flat ``{"<node id>/<tensor>": ndarray}`` mapping (``conv3/weight``,
``bn3/running_mean``), taken from the torch module *unfolded*, batchnorm and all, so it can
be trained further; the ONNX file (batchnorm folded) is the deployable form, this is the
trainable one. Files are NumPy ``.npz`` read with ``allow_pickle=False`` and carry a format
marker and version, and every file is referenced from the journal by its sha256.

The input normalisation a state was trained under travels with it as ``input/mean`` and
``input/std`` (one value per channel; ``input`` is a reserved node id): weights only fit the
scale they were trained on, and a model imported from a torch export takes raw pixels
(mean 0, std 1). ``load_state`` leaves these keys to the training loop.

Inheritance follows EA4CNN's rule: every tensor of the child that has a counterpart in a
parent (the same node id, the same number of axes) is copied over the overlapping slice;
superfluous parent weights are cut off, missing ones keep the child's fresh initialisation.
Because the mapping is by node id, not position, the spaces keep node ids stable across
layer insertion and removal (see ``hostside.spaces.base``).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence, Tuple, Union

import numpy as np

from hostside.errors import UserError

State = Dict[str, np.ndarray]
FORMAT_KEY = "__hostside_weights__"
VERSION = 1
#: Tensors that are statistics, not learnt parameters: inherited like the others, but left out
#: of the inherited fraction (it is the share of *parameters* a child starts with).
STATISTICS = ("running_mean", "running_var", "num_batches_tracked")
NORMALISATION = ("input/mean", "input/std")


def _node_modules(module: Any):
    """(node id, torch module) pairs of a ``hostside.arch.build.SpecNet``, in spec order."""
    return zip((node.id for node in module.spec.nodes), module.layers)


def state_of(module: Any) -> State:
    """The module's full trainable state (parameters and batchnorm statistics) by node id."""
    state: State = {}
    for node_id, layer in _node_modules(module):
        for name, tensor in layer.state_dict().items():
            state[f"{node_id}/{name}"] = tensor.detach().cpu().numpy().copy()
    return state


def load_state(module: Any, state: Mapping[str, np.ndarray], where: str = "initial weights") -> None:
    """Load ``state`` into ``module`` exactly; the first tensor that is missing, extra or of
    another shape is one ``UserError`` naming it."""
    import torch

    expected = state_of(module)
    state = {k: v for k, v in state.items() if k not in NORMALISATION}
    for key, tensor in expected.items():
        if key not in state:
            raise UserError(f"{where}: tensor {key!r} is missing; the weights belong to another network")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise UserError(f"{where}: tensor {key!r} has shape {list(state[key].shape)}, the network needs "
                            f"{list(tensor.shape)}; the weights belong to another network")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise UserError(f"{where}: tensor {extra[0]!r} has no place in this network; the weights belong to another network")
    for node_id, layer in _node_modules(module):
        own = layer.state_dict()
        layer.load_state_dict({name: torch.from_numpy(np.ascontiguousarray(state[f"{node_id}/{name}"])).to(own[name].dtype)
                               for name in own})


def state_bytes(state: Mapping[str, np.ndarray]) -> bytes:
    """The ``.npz`` encoding of a state (what is written to disk and shipped to workers)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{FORMAT_KEY: np.array(VERSION)}, **{k: np.asarray(v) for k, v in state.items()})
    return buffer.getvalue()


def state_from_bytes(data: bytes, where: str = "weights") -> State:
    return _read(io.BytesIO(data), where)


def save_state(state: Mapping[str, np.ndarray], path: Union[str, Path]) -> str:
    """Write ``state`` to ``path`` (.npz); returns the file's sha256."""
    data = state_bytes(state)
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def load_weights(path: Union[str, Path]) -> State:
    """Read a weights file; anything that is not one is a ``UserError`` naming the file."""
    try:
        with open(path, "rb") as handle:
            return _read(io.BytesIO(handle.read()), str(path))
    except OSError as exc:
        raise UserError(f"{path}: cannot read the weights file ({exc.strerror})") from None


def _read(handle: io.BytesIO, where: str) -> State:
    try:
        with np.load(handle, allow_pickle=False) as archive:
            if FORMAT_KEY not in archive.files:
                raise UserError(f"{where}: not a hostside weights file (no {FORMAT_KEY} entry)")
            version = int(archive[FORMAT_KEY])
            if version != VERSION:
                raise UserError(f"{where}: weights format version {version} is not supported (this is {VERSION})")
            return {k: archive[k] for k in archive.files if k != FORMAT_KEY}
    except (ValueError, OSError) as exc:  # not a zip / an object array (pickle refused)
        raise UserError(f"{where}: not a readable .npz weights file ({exc})") from None


def sha256_of(path: Union[str, Path]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _is_parameter(key: str) -> bool:
    return key not in NORMALISATION and key.rsplit("/", 1)[-1] not in STATISTICS


def with_normalisation(state: Mapping[str, np.ndarray], mean: Sequence[float], std: Sequence[float]) -> State:
    """The state with the normalisation it was trained under (float64: the exact values used)."""
    return {**state, "input/mean": np.asarray(mean, dtype=np.float64), "input/std": np.asarray(std, dtype=np.float64)}


def normalisation(state: Mapping[str, np.ndarray]):
    """(mean, std) lists the state was trained under, or None when it does not say."""
    if not all(k in state for k in NORMALISATION):
        return None
    return [float(v) for v in np.ravel(state["input/mean"])], [float(v) for v in np.ravel(state["input/std"])]


def inherit(child: Mapping[str, np.ndarray], parents: Sequence[Mapping[str, np.ndarray]]
            ) -> Tuple[State, float, Dict[str, Any]]:
    """The child's initial state inherited from ``parents`` (in priority order).

    ``child`` is the child's freshly initialised state (it supplies every tensor no parent
    has). Returns the state, the fraction of the child's parameter elements copied from a
    parent, and a per-tensor account ``{key: {"from": parent index or None, "copied": n,
    "total": n}}`` for tests and the journal.
    """
    state: State = {}
    account: Dict[str, Any] = {}
    copied_params = total_params = 0
    for key, fresh in child.items():
        tensor = np.array(fresh, copy=True)
        source = None
        copied = 0
        for index, parent in enumerate(parents):
            theirs = parent.get(key)
            if theirs is None or theirs.ndim != tensor.ndim:
                continue
            if tensor.ndim == 0:
                tensor[...] = theirs
                copied = 1
            else:
                overlap = tuple(slice(0, min(a, b)) for a, b in zip(tensor.shape, theirs.shape))
                tensor[overlap] = theirs[overlap]
                copied = int(np.prod([s.stop for s in overlap]))
            source = index
            break
        state[key] = tensor
        account[key] = {"from": source, "copied": copied, "total": int(tensor.size)}
        if _is_parameter(key):
            copied_params += copied
            total_params += int(tensor.size)
    for key in NORMALISATION:  # the child keeps the scale its first parent was trained under
        source = next((i for i, parent in enumerate(parents) if key in parent and key not in child), None)
        if source is not None:
            state[key] = np.array(parents[source][key], copy=True)
            account[key] = {"from": source, "copied": int(state[key].size), "total": int(state[key].size)}
    fraction = copied_params / total_params if total_params else 0.0
    return state, fraction, account
