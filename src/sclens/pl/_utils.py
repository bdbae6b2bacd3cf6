"""Helpers shared by the plots."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import scanpy as sc
from anndata import AnnData

from .._core.data import check_key
from ..tl._docs import doc_params

#: the end of every plot's docstring: ``ax``, ``show`` and what is returned
doc_show = """\
ax
        Axes to draw into (default: a new figure).
    show
        Show the figure (default: scanpy's ``autoshow``); otherwise return the axes.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes`, or ``None`` when the figure is shown."""

__all__ = ["finish", "scatter_by_category", "doc_show", "doc_params"]


def finish(ax: plt.Axes, show: bool | None):
    """Show the figure (scanpy's ``autoshow`` decides when ``show`` is None) or return the axes."""
    if show or (show is None and sc.settings.autoshow):
        plt.show()
        return None
    return ax


def scatter_by_category(ax: plt.Axes, Y: np.ndarray, adata: AnnData, color: str, s: float) -> None:
    """Scatter ``Y`` one colour (tab20) per category of ``adata.obs[color]``, labelled."""
    check_key(adata.obs, color, "adata.obs")
    col = adata.obs[color].astype("category")
    cmap = plt.get_cmap("tab20")
    for c, cat in enumerate(col.cat.categories):
        m = (col == cat).to_numpy()
        ax.scatter(
            Y[m, 0], Y[m, 1], s=s, color=cmap(c % 20), linewidths=0, label=str(cat), rasterized=True
        )
