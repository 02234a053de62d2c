"""The small network every registry-wide test (test_ops.py, test_op_registry.py) builds
around one op's ``example``."""

from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Tuple

from hostside.arch.ops import REGISTRY
from hostside.arch.ops.base import Op
from hostside.arch.spec import ArchSpec


def example_spec(op: Op, attrs: Optional[Mapping[str, Any]] = None) -> ArchSpec:
    """input -> conv -> relu -> [conv stride 2] -> OP -> ... -> linear, around ``op.example``
    (or ``attrs``); the op's node is ``x``."""
    nodes = [{"id": "c1", "op": "conv2d", "inputs": ["input"], "out_channels": 4, "kernel": 3, "padding": 1},
             {"id": "r1", "op": "relu", "inputs": ["c1"]}]
    if op.example_input == "vector":
        nodes += [{"id": "f0", "op": "flatten", "inputs": ["r1"]},
                  {"id": "l0", "op": "linear", "inputs": ["f0"], "out_features": 12}]
        src = ["l0"]
    else:
        src = ["r1"]
    if op.min_inputs > 1:  # a second, smaller and wider tensor, so the merge has to align
        kind = "vector" if op.example_input == "vector" else "map"
        second = {"id": "second", "op": "linear", "inputs": src, "out_features": 16} if kind == "vector" else \
            {"id": "second", "op": "conv2d", "inputs": src, "out_channels": 6, "kernel": 3, "stride": 2, "padding": 1}
        nodes.append(second)
        src = [src[0], "second"]
    nodes.append({"id": "x", "op": op.name, "inputs": src, **(op.example if attrs is None else attrs)})
    nodes += [{"id": "f", "op": "flatten", "inputs": ["x"]},
              {"id": "fc", "op": "linear", "inputs": ["f"], "out_features": 10}]
    return ArchSpec.from_dict({"input_shape": [3, 12, 12], "num_classes": 10, "nodes": nodes})


def example_cases() -> Iterator[Tuple[str, str, Mapping[str, Any]]]:
    """(case id, op name, attributes) for every registered op: its ``example``, and the example
    with each boolean attribute it leaves at its default flipped (a conv without bias, an
    average pool over the real pixels only), so the readers see both spellings."""
    for name, op in REGISTRY.items():
        yield name, name, dict(op.example)
        for key, attr in op.schema.items():
            if attr.kind == "bool" and key not in op.example:
                yield f"{name}-{key}={str(not attr.default).lower()}", name, {**op.example, key: not attr.default}


def assert_costs_agree(spec: ArchSpec, input_shape: Sequence[int], onnx_path: Path) -> None:
    """The analytic cost, the torch module and the exported ONNX file of ``spec`` agree: params,
    output shape at batch 2, outputs, deployed params and MACs."""
    import torch

    from hostside.arch.build import build_module, count_params
    from hostside.arch.export import export_onnx
    from hostside.arch.onnx_stats import onnx_stats

    net = build_module(spec)
    assert count_params(net) == spec.cost.params
    with torch.no_grad():
        assert tuple(net.eval()(torch.zeros(2, *input_shape)).shape) == (2, spec.num_classes)
    report = export_onnx(net, onnx_path, check=True)
    assert report.max_abs_diff < 1e-4
    stats = onnx_stats(report.path)
    assert stats["params"] == spec.cost.deployed_params
    assert stats["macs"] == spec.cost.macs
