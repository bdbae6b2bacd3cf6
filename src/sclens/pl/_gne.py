"""What a GNE decoder generates over its map."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData

from .._core.data import check_key
from ..tl._generate import generate
from ._utils import finish, scatter_by_category

__all__ = ["gne_grid"]


def gne_grid(
    adata: AnnData,
    genes: Sequence[str] | str | None = None,
    *,
    model_key: str = "gne",
    n: int = 32,
    color: str | None = None,
    image_shape: tuple[int, int] | None = None,
    show: bool | None = None,
):
    """Decode a regular ``n x n`` grid over the map and show what the decoder generates.

    With ``genes``: the cells' scatter, then one image per gene of its decoded expression over the
    map (same axes as the scatter). With ``image_shape`` (each cell is an image, e.g. 8 x 8 pixels
    of ``sklearn.datasets.load_digits`` as 64 genes): the scatter and a mosaic of the decoded
    images at the grid points, as in the GNE paper's figure.

    Parameters
    ----------
    adata
        AnnData with a 2-D GNE map (``sl.tl.gne``).
    genes
        Genes to show (model genes); not needed with ``image_shape``.
    model_key
        Key of the GNE map.
    n
        Grid points per axis.
    color
        ``.obs`` column colouring the scatter.
    image_shape
        ``(height, width)``: decode the grid into images of this shape (``height * width`` genes).
    show
        Show the figure; ``None``: scanpy's ``autoshow``.

    Returns
    -------
    The axes (scatter first), or ``None`` when shown.
    """
    check_key(adata.obsm, f"X_{model_key}", "adata.obsm", "Run `sl.tl.gne(adata)` first.")
    Y = np.asarray(adata.obsm[f"X_{model_key}"])
    if Y.shape[1] != 2:
        raise ValueError(f"gne_grid needs a 2-D map; adata.obsm['X_{model_key}'] has {Y.shape[1]}.")
    if int(n) < 2:
        raise ValueError(f"n must be >= 2, got {n}.")
    genes = [genes] if isinstance(genes, str) else list(genes or [])
    if not genes and image_shape is None:
        raise ValueError("Pass `genes` to show, or `image_shape` for image data.")
    lo, hi = Y.min(0), Y.max(0)
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    xs, ys = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
    gx, gy = np.meshgrid(xs, ys)  # row r of the grid is y = ys[r]
    decoded = generate(adata, np.column_stack([gx.ravel(), gy.ravel()]), model_key=model_key)
    names = list(decoded.var_names)
    missing = [g for g in genes if g not in names]
    if missing:
        raise KeyError(
            f"{missing[:5]} not among the model's {len(names)} genes (e.g. {names[:3]})."
        )
    if image_shape is not None and int(np.prod(image_shape)) != len(names):
        raise ValueError(
            f"image_shape {tuple(image_shape)} holds {int(np.prod(image_shape))} pixels; "
            f"the model has {len(names)} genes."
        )
    n_panels = 1 + (1 if image_shape is not None else len(genes))
    fig, axes = plt.subplots(1, n_panels, figsize=(4 * n_panels, 4), squeeze=False)
    axes = axes[0]
    extent = (lo[0], hi[0], lo[1], hi[1])

    ax = axes[0]
    if color is None:
        ax.scatter(Y[:, 0], Y[:, 1], s=3, c="0.4", linewidths=0, rasterized=True)
    else:
        scatter_by_category(ax, Y, adata, color, s=3)
        ax.legend(frameon=False, markerscale=3, fontsize=6, loc="best")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_title(f"{model_key} map")

    X = np.asarray(decoded.X)
    if image_shape is not None:
        h, w = image_shape
        tiles = X.reshape(n, n, h, w)[::-1]  # top row of the mosaic = largest y
        mosaic = tiles.transpose(0, 2, 1, 3).reshape(n * h, n * w)
        axes[1].imshow(mosaic, cmap="gray_r", extent=extent, aspect="auto")
        axes[1].set_title("decoded images over the map")
    else:
        for ax, g in zip(axes[1:], genes, strict=True):
            im = ax.imshow(
                X[:, names.index(g)].reshape(n, n),
                origin="lower",
                extent=extent,
                aspect="auto",
                cmap="viridis",
            )
            fig.colorbar(im, ax=ax, shrink=0.8)
            ax.set_title(f"{g} (decoded)")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return finish(axes, show)
