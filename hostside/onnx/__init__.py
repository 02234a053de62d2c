"""The one place hostside reads ONNX files.

Users bring files from several exporters (torch's TorchScript and dynamo exporters, our own,
hand-made graphs), with a fixed or a symbolic batch axis, constants as initializers or as
``Constant`` nodes, and weights inside the file or beside it as external data. Every reader
(``arch stats``, the latency features, ``arch import``, ``precision``, ``quantize``,
``runs analyze``, ``measure``) goes through this package so that all of them accept the same
files and refuse the others with the same one-line reasons:

- :mod:`hostside.onnx.optypes`: the table of ONNX operator types (each declared once) and
  what each reader does with one;
- :mod:`hostside.onnx.load`: loading a file (with or without its external data) and writing a
  self-contained private copy for a board;
- :mod:`hostside.onnx.graph`: the checked, shape-inferred intermediate form with the batch set
  to 1 and the constants resolved;
- :mod:`hostside.onnx.runtime`: running a user's model with onnxruntime on batches of any
  size, whatever batch axis the file declares.
"""
