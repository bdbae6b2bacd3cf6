"""Tools: train maps, project new cells."""

from ._den import den
from ._project import project
from ._ptsne import ptsne
from ._rank_genes import directional_saliency, rank_genes

__all__ = ["ptsne", "den", "project", "rank_genes", "directional_saliency"]
