"""Plots over what ``sl.tl`` wrote."""

from ._embedding import history, projection, ptsne

__all__ = ["ptsne", "history", "projection"]
