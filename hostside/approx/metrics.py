"""What a network's approximate multiplier costs: f3 = N_mult x P_mult of the CGP NAS paper.

N_mult counts the multiplications of the convolution layers per inference (``Cost.n_mult``),
P_mult is the energy of one multiplication of the circuit its ``approx_conv2d`` nodes name
(EvoApproxLib's PDK45 power x delay). The keys land in every trained candidate's metrics, so
the ``mult_energy_mj`` objective (``hostside.precision.search``, which reads ``mult_energy_mj``
first) scores the circuit, and the journal and ``pareto.json`` carry them. Both hooks are
registered with ``hostside.extensions``: the training worker and the reports call them without
importing this package.
"""

from __future__ import annotations

from typing import Any, Dict

from hostside import extensions
from hostside.approx.library import energy_per_mult_pj

PJ_PER_MJ = 1e9


def spec_multiplier(spec: Any) -> str:
    """The circuit of a spec's approximate convolutions ("" for none; one per network)."""
    names = {n.attrs["multiplier"] for n in spec.nodes if n.op == "approx_conv2d"}
    if len(names) > 1:
        raise ValueError(f"network {spec.name!r} mixes multipliers {sorted(names)}")
    return names.pop() if names else ""


def approx_metrics(spec: Any) -> Dict[str, Any]:
    """``multiplier``, ``n_mult``, ``energy_per_mult_pj``, ``mult_energy_mj`` of a network with
    approximate convolutions; {} for any other network."""
    name = spec_multiplier(spec)
    if not name:
        return {}
    pj = energy_per_mult_pj(name)
    n_mult = int(spec.cost.n_mult)
    return {"multiplier": name, "n_mult": n_mult, "energy_per_mult_pj": pj, "mult_energy_mj": n_mult * pj / PJ_PER_MJ}


APPROX_KEYS = ("multiplier", "n_mult", "energy_per_mult_pj", "mult_energy_mj")


def truncated_table(multiplier: str) -> bool:
    """Whether ``multiplier``'s networks trained on a truncated product table: in training,
    circuits whose error matrix has a rank above ``TRAIN_RANK`` use its best rank-16
    approximation (``hostside.approx.conv``); evaluation always reads the exact table."""
    if not multiplier:
        return False
    from hostside.approx.conv import TRAIN_RANK
    from hostside.approx.expansion import expansion

    return expansion(multiplier).rank > TRAIN_RANK


def report_fields(train_metrics: Any) -> Dict[str, Any]:
    """A report entry's approximate-multiplier keys, and whether its training table was truncated."""
    metrics = train_metrics or {}
    fields = {k: metrics[k] for k in APPROX_KEYS if k in metrics}
    if fields.get("multiplier"):
        fields["trained_with_truncated_table"] = truncated_table(fields["multiplier"])
    return fields


extensions.register_spec_metrics(approx_metrics)
extensions.register_report_fields(report_fields)
