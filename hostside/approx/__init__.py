"""Approximate 8-bit multipliers (EvoApproxLib tables shipped in ``data/``), the exact
table-lookup convolution that uses them, and their energy metrics (CGP NAS with approximate multipliers)."""
