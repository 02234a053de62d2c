"""K-means++ filter pruning with fine-tuning (NeuroPower section 4.3, after Li et al. 2016).

Per prunable convolution, scikit-learn's K-means++ groups the filters (each flattened to one
vector) into ``floor(cluster_factor * filters)`` clusters (at least one); the filter nearest each
centre stays, the others go: filters that compute nearly the same feature are redundant. The
network is then rebuilt with fewer output channels and every layer downstream has its input
channels cut to match: batchnorm statistics and affine terms, following convolutions' input
slices, concatenations (each part keeps its own offset) and the first fully connected layer
after a flatten (its columns per channel). A convolution whose output reaches an ``add``, a
grouped convolution or the network output keeps all filters: its channels must line up with
something the pruning cannot change.

Each iteration prunes every prunable convolution once, in network order, skipping a layer when
its cut would take the removed share of parameters over ``max_prune``; the network is then
fine-tuned for ``fine_tune_epochs`` and evaluated. The loop ends after ``iterations`` or when
no layer can be cut any more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Set, Tuple

import numpy as np

from hostside.arch.ops import REGISTRY
from hostside.arch.spec import ArchSpec
from hostside.errors import UserError

State = Dict[str, np.ndarray]
_PASS_THROUGH = ("batchnorm", "maxpool", "avgpool", "global_avgpool", "dropout")


@dataclass(frozen=True)
class PruneSettings:
    cluster_factor: float = 0.9
    iterations: int = 10
    max_prune: float = 0.30
    fine_tune_epochs: int = 5
    seed: int = 0

    def validate(self) -> None:
        if not 0 < self.max_prune < 1:
            raise UserError(f"--max-prune {self.max_prune!r} is not allowed; give the largest share of parameters to "
                            f"remove as a fraction in (0, 1), e.g. 0.3")
        if not 0 < self.cluster_factor < 1:
            raise UserError(f"--cluster-factor {self.cluster_factor!r} is not allowed; give a fraction in (0, 1), "
                            f"e.g. 0.9 (clusters per filter)")
        if self.iterations < 1:
            raise UserError(f"--iterations {self.iterations!r} is not allowed; give an integer >= 1")
        if self.fine_tune_epochs < 0:
            raise UserError(f"--fine-tune-epochs {self.fine_tune_epochs!r} is not allowed; give an integer >= 0")


def _passes_channels(op: str) -> bool:
    return REGISTRY[op].shape_preserving or op in _PASS_THROUGH


def prunable_convs(spec: ArchSpec) -> List[str]:
    """Ids of the convolutions whose filters may be removed (see the module docstring)."""
    consumers: Dict[str, List[Any]] = {}
    for node in spec.nodes:
        for src in node.inputs:
            consumers.setdefault(src, []).append(node)

    def free(tensor: str, seen: Set[str]) -> bool:
        if tensor == spec.output:
            return False
        for node in consumers.get(tensor, []):
            if node.id in seen:
                continue
            seen.add(node.id)
            if node.op == "conv2d" and node.attrs["groups"] == 1:
                continue
            if node.op == "flatten":
                if any(c.op != "linear" for c in consumers.get(node.id, [])):
                    return False
                continue
            if node.op == "concat" or _passes_channels(node.op):
                if not free(node.id, seen):
                    return False
                continue
            return False
        return True

    return [n.id for n in spec.nodes if n.op == "conv2d" and n.attrs["groups"] == 1 and free(n.id, set())]


def kmeans_keep(weight: np.ndarray, cluster_factor: float, seed: int) -> np.ndarray:
    """Sorted indices of the filters kept: per K-means++ cluster, the one nearest its centre."""
    from sklearn.cluster import KMeans

    n = weight.shape[0]
    k = max(1, math.floor(cluster_factor * n))
    if k >= n:
        return np.arange(n)
    vectors = weight.reshape(n, -1).astype(np.float64)
    model = KMeans(n_clusters=k, init="k-means++", n_init=1, random_state=seed).fit(vectors)
    keep = set()
    for cluster in range(k):
        members = np.flatnonzero(model.labels_ == cluster)
        if len(members):
            distances = np.linalg.norm(vectors[members] - model.cluster_centers_[cluster], axis=1)
            keep.add(int(members[np.argmin(distances)]))
    return np.array(sorted(keep))


def apply_keep(spec: ArchSpec, state: Mapping[str, np.ndarray], keep: Mapping[str, np.ndarray]) -> Tuple[ArchSpec, State]:
    """The network with only the ``keep`` filters of each named conv, and its sliced weights."""
    shapes = {layer.id: layer.output_shape for layer in spec.cost.layers}
    shapes["input"] = spec.input_shape
    kept: Dict[str, np.ndarray] = {"input": np.arange(spec.input_shape[0])}
    out = {k: v for k, v in state.items() if k.startswith("input/")}
    data = spec.to_dict()
    by_id = {n["id"]: n for n in data["nodes"]}
    for node in spec.nodes:
        src = node.inputs[0]
        params = {k.split("/", 1)[1]: v for k, v in state.items() if k.split("/", 1)[0] == node.id}
        if node.op in ("conv2d", "approx_conv2d"):
            w = params["weight"]
            if node.attrs["groups"] == 1:
                w = w[:, kept[src]]
            chosen = keep.get(node.id)
            if chosen is None:
                chosen = np.arange(w.shape[0])
            params["weight"] = w[chosen]
            if "bias" in params:
                params["bias"] = params["bias"][chosen]
            kept[node.id] = np.asarray(chosen)
            by_id[node.id]["out_channels"] = int(len(chosen))
        elif node.op == "concat":
            parts, offset = [], 0
            for s in node.inputs:
                parts.append(kept[s] + offset)
                offset += shapes[s][0]
            kept[node.id] = np.concatenate(parts)
        elif node.op == "flatten":
            shape = shapes[src]
            if len(shape) == 3:
                hw = shape[1] * shape[2]
                kept[node.id] = (kept[src][:, None] * hw + np.arange(hw)[None, :]).ravel()
            else:
                kept[node.id] = kept[src]
        elif node.op == "linear":
            params["weight"] = params["weight"][:, kept[src]]
            kept[node.id] = np.arange(node.attrs["out_features"])
        elif _passes_channels(node.op):
            for key, value in list(params.items()):
                if value.ndim == 1 and key != "num_batches_tracked":
                    params[key] = value[kept[src]]
            kept[node.id] = kept[src]
        else:
            if any(len(kept[s]) != shapes[s][0] for s in node.inputs):
                raise UserError(f"node {node.id!r} ({node.op}) reads pruned channels; the pruning cannot fix its "
                                f"inputs (internal error: it should not have been pruned)")
            kept[node.id] = np.arange(shapes[node.id][0]) if len(shapes[node.id]) else np.arange(0)
        out.update({f"{node.id}/{k}": np.array(v, copy=True, order="C") for k, v in params.items()})
    return ArchSpec.from_dict(data), out


def prune_step(spec: ArchSpec, state: Mapping[str, np.ndarray], settings: PruneSettings, original_params: int,
               iteration: int) -> Tuple[ArchSpec, State, List[str]]:
    """One pruning iteration over the prunable convs; (spec, state, ids of the convs cut)."""
    cut: List[str] = []
    for conv in prunable_convs(spec):
        weight = state[f"{conv}/weight"]
        keep = kmeans_keep(weight, settings.cluster_factor, settings.seed + iteration)
        if len(keep) == weight.shape[0]:
            continue
        trial_spec, trial_state = apply_keep(spec, state, {conv: keep})
        if 1 - trial_spec.cost.params / original_params > settings.max_prune + 1e-12:
            continue
        spec, state = trial_spec, trial_state
        cut.append(conv)
    return spec, state, cut
