"""Compression of trained networks: K-means++ filter pruning (NeuroPower, after Li et al.)."""
