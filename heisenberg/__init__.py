"""Heisenberg: a local, hands-free voice + vision assistant."""

__version__ = "0.1.0"
