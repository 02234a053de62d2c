"""What a network's approximate multiplier costs: f3 = N_mult x P_mult of the CGP NAS paper.

N_mult counts the multiplications of the convolution layers per inference (``Cost.n_mult``),
P_mult is the energy of one multiplication of the circuit its ``approx_conv2d`` nodes name
(EvoApproxLib's PDK45 power x delay). The keys land in every trained candidate's metrics, so
the ``mult_energy`` objective (``hostside.precision.search``, which reads ``mult_energy_mj``
first) scores the circuit, and the journal and ``pareto.json`` carry them.
"""

from __future__ import annotations

from typing import Any, Dict

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


def approx_fields(train_metrics: Any) -> Dict[str, Any]:
    """The approximate-multiplier keys a trained candidate's metrics carry (for reports)."""
    metrics = train_metrics or {}
    return {k: metrics[k] for k in APPROX_KEYS if k in metrics}
