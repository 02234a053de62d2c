"""Datasets, seeded splits and the training / evaluation loop.

Kept free of imports so ``hostside.train.commands`` (and the CLI) start fast; import the
submodules you need: ``datasets``, ``splits``, ``loop``, ``onnx_eval``, ``worker``.
"""
