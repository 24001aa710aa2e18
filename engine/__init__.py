"""Tradeoff Lab engine: calibrate, evaluate, benchmark and estimate quantized models.

Importing `engine` stays light: torch, transformers and modelopt are imported only where used.
"""

__version__ = "0.1.0"
