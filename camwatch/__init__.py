"""camwatch: notices when a fixed camera's view drifts (moved, covered, blinded, defocused)."""

__version__ = "0.1.0"
