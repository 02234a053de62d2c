"""Analytic cost of an ArchSpec, computed without building anything.

Conventions (held to the torch module and the exported ONNX file by the tests):

- ``params``: trainable parameters exactly as ``sum(p.numel() for p in module.parameters())``.
- ``deployed_params``: parameters left after export, where a batchnorm whose input is a conv
  used by nothing else is folded into that conv (the conv gains a bias if it had none); any
  other batchnorm keeps its scale and shift. Equals the float weight/bias elements of the
  exported ONNX file.
- ``macs``: multiply-accumulates of conv and linear layers only (MLPerf Tiny convention:
  no bias adds, pooling, activations or normalisation).
- ``activation_bytes``: peak, for batch 1 in float32, of the sum of the node outputs alive
  at once when the nodes run in order; the input counts; a tensor dies after its last use.
- ``weight_bytes``: deployed parameters stored at fp32 / fp16 / int8 (int8 weights with
  int32 biases, as quantised runtimes store them).

This runs in the pre-training filter for every candidate, so the loop is kept flat and
allocation-light; see ``benchmarks/cost_model.py``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from hostside.arch.spec import ACTIVATIONS, INPUT, ArchSpec, SpecError

Shape = Tuple[int, ...]
FLOAT32_BYTES = 4
_SHAPE_PRESERVING = frozenset(ACTIVATIONS) | {"dropout"}


class LayerCost:
    """Cost of one node; ``output_shape`` excludes the batch dimension."""

    __slots__ = ("id", "op", "output_shape", "params", "deployed_params", "macs", "output_bytes")

    def __init__(self, id: str, op: str, output_shape: Shape, params: int, deployed_params: int, macs: int):
        self.id = id
        self.op = op
        self.output_shape = output_shape
        self.params = params
        self.deployed_params = deployed_params
        self.macs = macs
        n = 1
        for d in output_shape:
            n *= d
        self.output_bytes = n * FLOAT32_BYTES

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "op": self.op,
            "output_shape": list(self.output_shape),
            "params": self.params,
            "deployed_params": self.deployed_params,
            "macs": self.macs,
            "output_bytes": self.output_bytes,
        }


class Cost:
    """Totals and the per-layer breakdown of one ArchSpec."""

    __slots__ = (
        "output_shape", "params", "deployed_params", "deployed_biases", "macs",
        "activation_bytes", "input_bytes", "_rows", "_layers",
    )

    def __init__(self, output_shape: Shape, params: int, deployed_params: int, deployed_biases: int,
                 macs: int, activation_bytes: int, input_bytes: int, rows: List[tuple]):
        self.output_shape = output_shape
        self.params = params
        self.deployed_params = deployed_params
        self.deployed_biases = deployed_biases
        self.macs = macs
        self.activation_bytes = activation_bytes
        self.input_bytes = input_bytes
        # Per-layer objects are built on first access: the filter only needs the totals.
        self._rows = rows
        self._layers: Optional[List[LayerCost]] = None

    @property
    def layers(self) -> List[LayerCost]:
        if self._layers is None:
            self._layers = [LayerCost(*row) for row in self._rows]
        return self._layers

    @property
    def weight_bytes(self) -> Dict[str, int]:
        weights = self.deployed_params - self.deployed_biases
        return {
            "fp32": 4 * self.deployed_params,
            "fp16": 2 * self.deployed_params,
            "int8": weights + 4 * self.deployed_biases,
        }

    def layer_counts(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for layer in self.layers:
            counts[layer.op] = counts.get(layer.op, 0) + 1
        return counts

    def to_dict(self, per_layer: bool = True) -> Dict[str, Any]:
        data: Dict[str, Any] = {
            "params": self.params,
            "deployed_params": self.deployed_params,
            "macs": self.macs,
            "activation_bytes": self.activation_bytes,
            "weight_bytes": self.weight_bytes,
            "output_shape": list(self.output_shape),
            "layers": self.layer_counts(),
        }
        if per_layer:
            data["per_layer"] = [layer.to_dict() for layer in self.layers]
        return data


def _pool_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def _aligned_spatial(node_id: str, op: str, shapes: List[Shape]) -> Tuple[int, int]:
    """Target (H, W) when merging maps: the smallest, which the larger ones are max-pooled
    down to with kernel = stride = the integer ratio (as CGP-based NAS merges branches)."""
    h = min(s[1] for s in shapes)
    w = min(s[2] for s in shapes)
    for s in shapes:
        if s[1] % h or s[2] % w:
            raise SpecError(
                f"node {node_id!r}: {op} inputs of {s[1]}x{s[2]} and {h}x{w} cannot be aligned; "
                f"spatial sizes must be integer multiples of the smallest"
            )
    return h, w


def merge_shape(node_id: str, op: str, shapes: List[Shape]) -> Shape:
    """Output shape of ``add`` (channels zero-padded to the widest) or ``concat`` (channels summed)."""
    ranks = {len(s) for s in shapes}
    if len(ranks) != 1:
        raise SpecError(f"node {node_id!r}: {op} mixes feature vectors and feature maps {[list(s) for s in shapes]}")
    if 1 in ranks:
        if op == "concat":
            return (sum(s[0] for s in shapes),)
        return (max(s[0] for s in shapes),)
    h, w = _aligned_spatial(node_id, op, shapes)
    channels = sum(s[0] for s in shapes) if op == "concat" else max(s[0] for s in shapes)
    return (channels, h, w)


def analyze(spec: ArchSpec) -> Cost:
    """Shapes and cost of every node; raises SpecError naming a node whose shapes do not fit."""
    folded_convs = spec.folded_convs
    shapes: Dict[str, Shape] = {INPUT: spec.input_shape}
    sizes: Dict[str, int] = {}
    c0, h0, w0 = spec.input_shape
    input_bytes = c0 * h0 * w0 * FLOAT32_BYTES
    sizes[INPUT] = input_bytes
    live = peak = input_bytes
    total_params = total_deployed = total_biases = total_macs = 0
    layers: List[tuple] = []

    for node, frees in zip(spec.nodes, spec.frees):
        op = node.op
        a = node.attrs
        nid = node.id
        src = node.inputs[0]
        shape = shapes[src]
        params = deployed = biases = macs = 0
        if op in _SHAPE_PRESERVING:
            out = shape
        elif op == "conv2d":
            if len(shape) != 3:
                raise SpecError(f"node {nid!r}: conv2d needs a feature map, got shape {list(shape)}")
            cin, h, w = shape
            cout = a["out_channels"]
            groups = a["groups"]
            if cin % groups or cout % groups:
                raise SpecError(
                    f"node {nid!r}: groups={groups} must divide in_channels={cin} and out_channels={cout}"
                )
            kh, kw = a["kernel"]
            sh, sw = a["stride"]
            ph, pw = a["padding"]
            dh, dw = a["dilation"]
            ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            if ho < 1 or wo < 1:
                raise SpecError(
                    f"node {nid!r}: conv2d kernel {kh}x{kw} (dilation {dh}x{dw}, padding {ph}x{pw}) "
                    f"does not fit its {h}x{w} input"
                )
            weights = cout * (cin // groups) * kh * kw
            params = weights + (cout if a["bias"] else 0)
            biases = cout if a["bias"] or nid in folded_convs else 0
            deployed = weights + biases
            out = (cout, ho, wo)
            macs = weights * ho * wo
        elif op == "batchnorm":
            params = 2 * shape[0]
            if src not in folded_convs:
                deployed = biases = params
            out = shape
        elif op == "linear":
            if len(shape) != 1:
                raise SpecError(
                    f"node {nid!r}: linear needs a feature vector, got shape {list(shape)}; "
                    f"insert a flatten or global_avgpool before it"
                )
            fin = shape[0]
            fout = a["out_features"]
            has_bias = a["bias"]
            params = deployed = fin * fout + (fout if has_bias else 0)
            biases = fout if has_bias else 0
            macs = fin * fout
            out = (fout,)
        elif op == "maxpool" or op == "avgpool":
            if len(shape) != 3:
                raise SpecError(f"node {nid!r}: {op} needs a feature map, got shape {list(shape)}")
            kh, kw = a["kernel"]
            sh, sw = a["stride"]
            ph, pw = a["padding"]
            if 2 * ph > kh or 2 * pw > kw:
                raise SpecError(f"node {nid!r}: {op} padding {ph}x{pw} must be at most half the kernel {kh}x{kw}")
            ho = _pool_out(shape[1], kh, sh, ph)
            wo = _pool_out(shape[2], kw, sw, pw)
            if ho < 1 or wo < 1:
                raise SpecError(f"node {nid!r}: {op} kernel {kh}x{kw} does not fit its {shape[1]}x{shape[2]} input")
            out = (shape[0], ho, wo)
        elif op == "global_avgpool":
            if len(shape) != 3:
                raise SpecError(f"node {nid!r}: global_avgpool needs a feature map, got shape {list(shape)}")
            out = (shape[0], 1, 1)
        elif op == "flatten":
            out = (shape[0] * shape[1] * shape[2],) if len(shape) == 3 else shape
        elif op == "add" or op == "concat":
            out = merge_shape(nid, op, [shapes[s] for s in node.inputs])
        else:
            raise AssertionError(f"no cost rule for op {op!r}")
        shapes[nid] = out
        layers.append((nid, op, out, params, deployed, macs))
        total_params += params
        total_deployed += deployed
        total_biases += biases
        total_macs += macs
        size = FLOAT32_BYTES
        for d in out:
            size *= d
        sizes[nid] = size
        live += size
        if live > peak:
            peak = live
        for s in frees:
            live -= sizes[s]

    return Cost(shapes[spec.output], total_params, total_deployed, total_biases, total_macs,
                peak, input_bytes, layers)
