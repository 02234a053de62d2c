"""Sampling laws for narrow spaces, learned by a genetic algorithm and clustered spectrally.

A law is one uniform range U[l_x, h_x] per variable of a narrow space; the GA moves the ranges so
that the sampled networks' metric (params, MACs, activation or weight bytes, predicted latency)
falls inside a target interval, spectral clustering keeps the most different good laws, and the
Pareto elaboration repeats that over a grid of targets to judge tens of thousands of networks
without training. Public API: ``Law``, ``make_metric``, ``learn_laws``, ``save_laws`` /
``load_laws``, ``elaborate``.
"""
