"""Plots over what ``sl.tl`` wrote."""

from ._den import den_spectrum
from ._embedding import history, projection, ptsne
from ._forces import forces, group_forces

__all__ = ["ptsne", "history", "projection", "den_spectrum", "forces", "group_forces"]
