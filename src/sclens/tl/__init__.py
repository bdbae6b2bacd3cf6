"""Tools: train maps, project new cells."""

from ._project import project
from ._ptsne import ptsne

__all__ = ["ptsne", "project"]
