"""Spectral clustering of the GA's final population: the most different good laws.

The final population holds many laws of similar quality, often near-copies of one another;
clustering their normalised bounds (scikit-learn's ``SpectralClustering``, an RBF affinity with
the median-distance bandwidth so the scale does not depend on the number of variables) into k
groups and keeping the cheapest law of each gives k laws that sample different regions.
"""

from __future__ import annotations

import warnings
from typing import List, Tuple

import numpy as np

from hostside.laws.law import Law
from hostside.spaces.narrow import NarrowSpace


def cluster_laws(space: NarrowSpace, laws: List[Law], k: int, seed: int = 0) -> np.ndarray:
    """A cluster label per law (``min(k, distinct laws)`` clusters)."""
    from sklearn.cluster import SpectralClustering

    x = np.array([law.normalised(space) for law in laws])
    distinct, inverse = np.unique(x, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    n_clusters = min(k, len(distinct))
    if n_clusters <= 1:
        return np.zeros(len(laws), dtype=int)
    if n_clusters == len(distinct):
        return inverse.astype(int)
    d2 = ((distinct[:, None, :] - distinct[None, :, :]) ** 2).sum(-1)
    median = float(np.median(d2[np.triu_indices(len(distinct), 1)]))
    gamma = 1.0 / median if median > 0 else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "graph is not fully connected" for far outliers
        labels = SpectralClustering(n_clusters=n_clusters, affinity="rbf", gamma=gamma, random_state=seed,
                                    assign_labels="kmeans").fit_predict(distinct)
    return labels[inverse].astype(int)


def best_per_cluster(space: NarrowSpace, laws: List[Law], costs: np.ndarray, k: int, seed: int = 0
                     ) -> List[Tuple[int, Law, float]]:
    """(cluster, cheapest law of the cluster, its cost), cheapest cluster first."""
    labels = cluster_laws(space, laws, k, seed)
    best = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        i = int(members[np.argmin(costs[members])])
        best.append((int(label), laws[i], float(costs[i])))
    return sorted(best, key=lambda item: item[2])
