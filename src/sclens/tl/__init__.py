"""Tools: train maps, project new cells, generate expression."""

from ._den import den
from ._gne import generate, gne
from ._project import project
from ._ptsne import ptsne

__all__ = ["ptsne", "den", "gne", "generate", "project"]
