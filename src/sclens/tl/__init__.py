"""Tools: train maps, project new cells."""

from ._ardr import ardr
from ._den import den
from ._project import project
from ._ptsne import ptsne

__all__ = ["ptsne", "den", "ardr", "project"]
