"""Tools: train maps, cluster, project new cells, generate expression, rank genes."""

from ._ardr import ardr
from ._den import den
from ._directional import directional_saliency
from ._faithfulness import attribution_faithfulness
from ._generate import generate
from ._gne import gne
from ._project import project
from ._ptsne import ptsne
from ._rank_genes import rank_genes

__all__ = [
    "ptsne",
    "den",
    "ardr",
    "gne",
    "generate",
    "project",
    "rank_genes",
    "directional_saliency",
    "attribution_faithfulness",
]
