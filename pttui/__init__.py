"""pttui: a terminal app for PyTorch checkpoints that will not load."""

__version__ = "0.1.0"
