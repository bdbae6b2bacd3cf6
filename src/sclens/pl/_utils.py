"""Helpers shared by the plots."""

from __future__ import annotations

import matplotlib.pyplot as plt
import scanpy as sc


def finish(ax: plt.Axes, show: bool | None):
    """Show the figure (scanpy's ``autoshow`` decides when ``show`` is None) or return the axes."""
    if show or (show is None and sc.settings.autoshow):
        plt.show()
        return None
    return ax
