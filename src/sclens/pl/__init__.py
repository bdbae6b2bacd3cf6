"""Plots over what ``sl.tl`` wrote."""

from ._attribution import directional_saliency, saliency_image, shap_summary
from ._den import den_spectrum
from ._embedding import history, projection, ptsne

__all__ = [
    "ptsne",
    "history",
    "projection",
    "den_spectrum",
    "directional_saliency",
    "saliency_image",
    "shap_summary",
]
