"""Runtime rule sets: how one runtime on one instruction set turns a network into kernels.

Why data and not code: the same ArchSpec launches different kernels under onnxruntime on an
AVX-512 server (blocked NCHWc convs, channels padded to 16, reorders where layouts change),
under onnxruntime on a Cortex-A72 (every conv an im2col + GEMM) or under TFLite on a phone
(only ReLU / ReLU6 fused into the conv). ``features._features`` follows one ``RuleSet``; a
calibration records which one it was fitted with (``feature_params.rule_set``), so a Cortex-A72
calibration never predicts with x86 layout rules and the reverse.

The x86 rule sets are the NCHWc rules checked against onnxruntime's per-operator profiles
(see ``features``); the ARM and TFLite ones have no blocked layout: there the vector's
``nchwc_*`` and ``reorder_*`` features stay zero and every conv is a GEMM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from hostside.errors import UserError

_ORT_FUSED = frozenset({"relu", "relu6", "sigmoid", "tanh"})


@dataclass(frozen=True)
class RuleSet:
    """The kernel rules of one runtime on one instruction set.

    ``block``: SIMD block of the blocked (NCHWc) conv layout, 0 for none. ``fused_activations``:
    activations a plain conv absorbs; ``fused_activations_blocked``: those a blocked conv
    absorbs; ``in_kernel_activations``: the fused ones applied inside the conv kernel (the
    others pass over the output once more). ``plain_only_activations``: activations without a
    blocked kernel (their input is reordered back to plain). ``pad_linear_outputs``: the GEMM of
    a linear layer computes whole SIMD blocks of outputs. ``fuse_residual_add``: an add of two
    blocked tensors, one a conv output, runs inside that conv."""

    name: str
    runtime: str
    isa: str
    block: int = 0
    fused_activations: frozenset = _ORT_FUSED
    fused_activations_blocked: frozenset = _ORT_FUSED | {"hardswish"}
    in_kernel_activations: frozenset = frozenset({"relu"})
    plain_only_activations: frozenset = frozenset({"elu", "selu"})
    pad_linear_outputs: bool = True
    fuse_residual_add: bool = True
    description: str = ""

    def to_json(self) -> Dict[str, Any]:
        return {"name": self.name, "runtime": self.runtime, "isa": self.isa, "block": self.block}


_GENERIC = "every conv an im2col + GEMM, activations fused as onnxruntime's ConvActivationFusion does"
RULE_SETS: Dict[str, RuleSet] = {r.name: r for r in (
    RuleSet("onnxruntime-x86_64-avx2", "onnxruntime", "x86_64", block=8,
            description="onnxruntime's NCHWc layout with 8-float blocks (AVX2)"),
    RuleSet("onnxruntime-x86_64-avx512", "onnxruntime", "x86_64", block=16,
            description="onnxruntime's NCHWc layout with 16-float blocks (AVX-512)"),
    RuleSet("onnxruntime-x86_64-gemm", "onnxruntime", "x86_64", description=f"x86 without NCHWc: {_GENERIC}"),
    RuleSet("onnxruntime-arm64", "onnxruntime", "arm64", description=f"MLAS on AArch64 NEON: {_GENERIC}"),
    RuleSet("onnxruntime-armv7", "onnxruntime", "armv7", description=f"MLAS on 32-bit ARM NEON: {_GENERIC}"),
    RuleSet("tflite-arm64", "tflite", "arm64", fused_activations=frozenset({"relu", "relu6"}),
            fused_activations_blocked=frozenset({"relu", "relu6"}),
            in_kernel_activations=frozenset({"relu", "relu6"}),
            description="TFLite (ruy GEMM): every conv a GEMM, only ReLU / ReLU6 fused into it"),
)}
#: The rule set an old calibration's ``nchwc_block`` meant (they were all fitted on x86 rules).
_BY_BLOCK = {0: "onnxruntime-x86_64-gemm", 8: "onnxruntime-x86_64-avx2", 16: "onnxruntime-x86_64-avx512"}
#: Rule sets a calibration chooses among by cross-validation, per (runtime, ISA): on x86 the
#: block size the board's onnxruntime uses is not visible from outside, so the fit tells.
CANDIDATES: Dict[Tuple[str, str], Tuple[str, ...]] = {
    ("onnxruntime", "x86_64"): ("onnxruntime-x86_64-gemm", "onnxruntime-x86_64-avx2", "onnxruntime-x86_64-avx512"),
    ("onnxruntime", "arm64"): ("onnxruntime-arm64",),
    ("onnxruntime", "armv7"): ("onnxruntime-armv7",),
    ("tflite", "arm64"): ("tflite-arm64",),
    ("tflite", "armv7"): ("tflite-arm64",),
}
RUNTIMES = tuple(sorted({r for r, _ in CANDIDATES}))
ISAS = tuple(sorted({i for _, i in CANDIDATES}))
_MACHINE_ISA = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64", "armv8l": "armv7",
                "armv7l": "armv7", "armv7": "armv7", "armv6l": "armv7"}

RuleLike = Union[int, str, RuleSet]


def rule_set(rules: RuleLike) -> RuleSet:
    """A RuleSet from itself, its name, or an x86 NCHWc block size (0, 8, 16: older callers)."""
    if isinstance(rules, RuleSet):
        return rules
    if isinstance(rules, int) and not isinstance(rules, bool):
        if rules not in _BY_BLOCK:
            raise ValueError(f"no rule set has NCHWc block {rules}; blocks: {sorted(_BY_BLOCK)}")
        return RULE_SETS[_BY_BLOCK[rules]]
    if rules not in RULE_SETS:
        raise UserError(f"unknown runtime rule set {rules!r}; known: {', '.join(RULE_SETS)}")
    return RULE_SETS[rules]


def isa_of(machine: Optional[str]) -> Optional[str]:
    """The instruction set family of a ``platform.machine()`` string, None when unknown."""
    return _MACHINE_ISA.get((machine or "").lower())


def board_runtime_isa(board_info: Mapping[str, Any]) -> Tuple[Optional[str], Optional[str]]:
    """(runtime, ISA) of a board from its agent ``info`` (or a calibration's ``board``)."""
    info = board_info.get("info", board_info)
    runtime = "onnxruntime" if (info.get("onnxruntime") or {}).get("version") else info.get("runtime")
    return runtime, isa_of(info.get("architecture") or board_info.get("architecture"))


def candidates_for(runtime: Optional[str], isa: Optional[str]) -> Tuple[str, ...]:
    """The rule sets to choose among for a board; UserError for a pair no rule set covers."""
    key = (runtime or "onnxruntime", isa or "x86_64")
    if key not in CANDIDATES:
        known = ", ".join(f"--runtime {r} --isa {i}" for r, i in CANDIDATES)
        raise UserError(f"no runtime rule set for runtime {key[0]!r} on ISA {key[1]!r}; known: {known}")
    return CANDIDATES[key]


def calibration_rule_set(feature_params: Mapping[str, Any]) -> RuleSet:
    """The rule set a calibration file was fitted with (older files only name a block)."""
    name = feature_params.get("rule_set")
    return rule_set(name) if name is not None else rule_set(int(feature_params["nchwc_block"]))
