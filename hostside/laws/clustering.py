"""Spectral clustering of the GA's final population: the most different good laws.

The final population holds many laws of similar quality, often near-copies of one another;
clustering their normalised bounds (scikit-learn's ``SpectralClustering`` on a k-nearest-neighbour
affinity graph, which needs no distance scale, so it works the same for 7 or 25 variables) into k
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
    neighbours = max(2, min(10, len(distinct) - 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "graph is not fully connected" for far outliers
        labels = SpectralClustering(n_clusters=n_clusters, affinity="nearest_neighbors", n_neighbors=neighbours,
                                    random_state=seed, assign_labels="kmeans").fit_predict(distinct)
    return labels[inverse].astype(int)


def best_per_cluster(space: NarrowSpace, laws: List[Law], costs: np.ndarray, k: int, seed: int = 0,
                     finalists: int = 1) -> List[Tuple[int, List[Tuple[Law, float]]]]:
    """Per cluster, its ``finalists`` cheapest laws with their GA costs (cheapest first)."""
    labels = cluster_laws(space, laws, k, seed)
    best = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = members[np.argsort(costs[members], kind="stable")][:finalists]
        best.append((int(label), [(laws[int(i)], float(costs[int(i)])) for i in order]))
    return sorted(best, key=lambda item: item[1][0][1])
