"""Plots over what ``sl.tl`` wrote."""

from ._attribution import (
    attribution_faithfulness,
    directional_saliency,
    saliency_image,
    shap_summary,
)
from ._den import den_spectrum
from ._embedding import history, projection, ptsne
from ._forces import forces, group_forces
from ._gne import gne_grid

__all__ = [
    "ptsne",
    "history",
    "projection",
    "den_spectrum",
    "forces",
    "group_forces",
    "gne_grid",
    "directional_saliency",
    "saliency_image",
    "shap_summary",
    "attribution_faithfulness",
]
