"""Audio in and out, in one format: see ``heisenberg.audio.format``."""
