"""Plots over what ``sl.tl`` wrote."""

from ._den import den_spectrum
from ._embedding import history, projection, ptsne
from ._gne import gne_grid

__all__ = ["ptsne", "history", "projection", "den_spectrum", "gne_grid"]
