"""Host side of the hardware-aware architecture search: spaces, search, training, boards."""

__version__ = "0.1.0"
