"""The on-board measurement agent. Imports only the standard library, numpy and onnxruntime."""

__version__ = "0.1.0"
