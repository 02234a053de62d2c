"""Reduced precision: number formats, emulation of a model in a format (extrinsic and
multiplication-only), INT8 deployment, per-format memory and multiplication energy."""
