"""Builders of the ONNX corpus: the files users really bring, made at test time.

torch's two exporters with a fixed batch of 1 and with a dynamic batch, at several opsets
(the dynamo exporter keeps the weights in ``MODEL.onnx.data`` beside the file), the input
scaling inside the model as scalar ``Sub``/``Div``, constants as ``Constant`` nodes,
initializers shared through ``Identity`` (TorchScript does that for layers with equal
weights), an NHWC input behind a ``Transpose``, a uint8 input, two inputs, and our own
exporter's files of ArchSpecs that hold every ArchSpec op between them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, Tuple

import onnx
import torch
from onnx import helper
from torch import nn

DIGITS = (1, 8, 8)


class ScaledNet(nn.Module):
    """A digits CNN that scales its raw input itself, as users' models often do."""

    def __init__(self, nhwc: bool = False, uint8: bool = False, shared: bool = False):
        super().__init__()
        self.nhwc, self.uint8, self.shared = nhwc, uint8, shared
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.twin = nn.Conv2d(4, 4, 3, padding=1)
        self.again = nn.Conv2d(4, 4, 3, padding=1)
        self.again.load_state_dict(self.twin.state_dict())  # equal weights: TorchScript shares them
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uint8:
            x = x.float() / 255.0
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        x = (x - 0.5) / 4.0
        x = torch.relu(self.bn(self.conv(x)))
        if self.shared:
            x = self.again(torch.relu(self.twin(x)))
        x = nn.functional.max_pool2d(x, 2)
        return self.fc(torch.flatten(x, 1))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(a + b, 1))


def net(**kind: bool) -> nn.Module:
    torch.manual_seed(0)
    module = ScaledNet(**kind).eval()
    with torch.no_grad():  # batchnorm statistics that are not the identity, so a lost fold shows
        module.bn.running_mean.uniform_(-0.5, 0.5)
        module.bn.running_var.uniform_(0.5, 2.0)
    return module


def example(module: nn.Module, batch: int) -> Tuple[torch.Tensor, ...]:
    if isinstance(module, TwoInputs):
        return torch.rand(batch, *DIGITS), torch.rand(batch, *DIGITS)
    if module.uint8:
        return (torch.randint(0, 255, (batch, *DIGITS), dtype=torch.uint8),)
    shape = (DIGITS[1], DIGITS[2], DIGITS[0]) if module.nhwc else DIGITS
    return (torch.rand(batch, *shape),)


def torchscript(module: nn.Module, path: Path, opset: int, fixed: bool) -> Path:
    """``torch.onnx.export(..., dynamo=False)``: fixed batch 1, or a dynamic batch axis."""
    args = example(module, 1)
    names = [f"x{i}" for i in range(len(args))]
    axes = None if fixed else {name: {0: "batch"} for name in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset, input_names=names,
                          dynamic_axes=axes)
    return path


def dynamo(module: nn.Module, path: Path, opset: int, fixed: bool) -> Path:
    """``torch.onnx.export(..., dynamo=True)``, weights in ``path.data`` (torch 2.13's default
    for this exporter; asked for explicitly so a later default cannot hide the case)."""
    args = example(module, 1 if fixed else 2)  # torch.export specialises a batch of 1
    shapes = None if fixed else tuple({0: torch.export.Dim("batch")} for _ in args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=True, opset_version=opset, external_data=True,
                          dynamic_shapes=shapes, verbose=False)
    return path


def constants_as_nodes(source: Path, path: Path) -> Path:
    """The same model with every initializer written as a ``Constant`` node instead."""
    model = onnx.load(str(source))
    graph = model.graph
    nodes = [helper.make_node("Constant", [], [t.name], name=f"const_{t.name}", value=t) for t in graph.initializer]
    names = {t.name for t in graph.initializer}
    kept_inputs = [v for v in graph.input if v.name not in names]
    del graph.initializer[:]
    del graph.input[:]
    graph.input.extend(kept_inputs)
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + body)
    onnx.save(model, str(path))
    return path


def spec_files(folder: Path) -> Dict[str, Tuple[Path, Path]]:
    """name -> (spec JSON, our export of it) for ArchSpecs that hold every ArchSpec op."""
    from hostside.arch.build import build_module
    from hostside.arch.export import export_onnx
    from hostside.arch.ops import REGISTRY
    from hostside.arch.spec import ArchSpec

    specs: Dict[str, Dict[str, Any]] = {
        # Every op arch import maps back.
        "spec_importable": {"input_shape": list(DIGITS), "num_classes": 10, "nodes": [
            {"id": "c1", "op": "conv2d", "inputs": ["input"], "out_channels": 8, "kernel": 3, "padding": 1},
            {"id": "b1", "op": "batchnorm", "inputs": ["c1"]},
            {"id": "r1", "op": "relu", "inputs": ["b1"]},
            {"id": "c2", "op": "conv2d", "inputs": ["r1"], "out_channels": 8, "kernel": 3, "padding": 1,
             "groups": 8},
            {"id": "e", "op": "elu", "inputs": ["c2"]},
            {"id": "c3", "op": "conv2d", "inputs": ["e"], "out_channels": 8, "kernel": 1},
            {"id": "s", "op": "selu", "inputs": ["c3"]},
            {"id": "a", "op": "add", "inputs": ["s", "r1"]},
            {"id": "sg", "op": "sigmoid", "inputs": ["a"]},
            {"id": "t", "op": "tanh", "inputs": ["a"]},
            {"id": "cat", "op": "concat", "inputs": ["sg", "t"]},
            {"id": "h", "op": "hardswish", "inputs": ["cat"]},
            {"id": "r6", "op": "relu6", "inputs": ["h"]},
            {"id": "lr", "op": "leaky_relu", "inputs": ["r6"], "alpha": 0.2},
            {"id": "si", "op": "silu", "inputs": ["lr"]},
            {"id": "mp", "op": "maxpool", "inputs": ["si"], "kernel": 2},
            {"id": "ap", "op": "avgpool", "inputs": ["mp"], "kernel": 2},
            {"id": "id", "op": "identity", "inputs": ["ap"]},
            {"id": "g", "op": "global_avgpool", "inputs": ["id"]},
            {"id": "f", "op": "flatten", "inputs": ["g"]},
            {"id": "d", "op": "dropout", "inputs": ["f"], "p": 0.1},
            {"id": "fc", "op": "linear", "inputs": ["d"], "out_features": 10},
        ]},
        # The ops ONNX spells with operators ArchSpec has no import for.
        "spec_rest": {"input_shape": list(DIGITS), "num_classes": 10, "nodes": [
            {"id": "c1", "op": "conv2d", "inputs": ["input"], "out_channels": 4, "kernel": 3, "padding": 1},
            {"id": "pw", "op": "piecewise", "inputs": ["c1"], "left": "elu", "right": "tanh"},
            {"id": "ax", "op": "approx_conv2d", "inputs": ["pw"], **REGISTRY["approx_conv2d"].example},
            {"id": "f", "op": "flatten", "inputs": ["ax"]},
            {"id": "fc", "op": "linear", "inputs": ["f"], "out_features": 10},
        ]},
    }
    covered = {node["op"] for spec in specs.values() for node in spec["nodes"]}
    assert covered == set(REGISTRY), f"ops missing from the corpus: {set(REGISTRY) - covered}"
    files = {}
    for name, data in specs.items():
        spec = ArchSpec.from_dict(data)
        torch.manual_seed(0)
        spec_path = folder / f"{name}.json"
        spec.save(spec_path)
        files[name] = (spec_path, export_onnx(build_module(spec), folder / f"{name}.onnx", check=False).path)
    return files
