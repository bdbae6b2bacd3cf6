"""Maps, loss curves, and a query shown over its reference."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import scanpy as sc
from anndata import AnnData

from .._core.data import check_key
from ._utils import doc_params, doc_show, finish, scatter_by_category

__all__ = ["ptsne", "history", "projection"]


def ptsne(adata: AnnData, *, key: str = "ptsne", **kwargs):
    """Scatter of a parametric t-SNE map (a thin wrapper of :func:`scanpy.pl.embedding`).

    Parameters
    ----------
    adata
        AnnData after :func:`sclens.tl.ptsne` (or any map with ``obsm['X_' + key]``).
    key
        ``key_added`` of that run.
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (``color``, ``ax``, ``show``, ...).

    Returns
    -------
    What :func:`scanpy.pl.embedding` returns.
    """
    check_key(adata.obsm, f"X_{key}", "adata.obsm", "Run `sl.tl.ptsne(adata)` first.")
    return sc.pl.embedding(adata, basis=key, **kwargs)


@doc_params(doc_show=doc_show)
def history(
    adata: AnnData, key: str = "ptsne", *, ax: plt.Axes | None = None, show: bool | None = None
):
    """Training loss per epoch, one colour per phase (pretraining, exaggeration, ...).

    Parameters
    ----------
    adata
        AnnData after a training tool (``adata.uns[key]['history']``).
    key
        ``key_added`` of that run.
    {doc_show}
    """
    check_key(adata.uns, key, "adata.uns")
    check_key(adata.uns[key], "history", f"adata.uns[{key!r}]")
    h = adata.uns[key]["history"]
    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    phases = np.asarray(h["phase"]).astype(str)
    loss = np.asarray(h["loss"], dtype=float)
    step = np.arange(len(loss))
    for phase in dict.fromkeys(phases):
        m = phases == phase
        ax.plot(step[m], loss[m], label=phase)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(f"{key} training")
    ax.legend(frameon=False)
    return finish(ax, show)


@doc_params(doc_show=doc_show)
def projection(
    adata: AnnData,
    ref: AnnData,
    *,
    key: str = "ptsne",
    color: str | None = None,
    ax: plt.Axes | None = None,
    show: bool | None = None,
):
    """The query's cells (coloured by ``color``) over the reference map in grey.

    Parameters
    ----------
    adata
        Query cells after :func:`sclens.tl.project`.
    ref
        The reference AnnData the map was trained on.
    key
        The map's key: ``obsm['X_' + key]`` in both objects.
    color
        Categorical ``adata.obs`` column to colour the query cells by (default: all red).
    {doc_show}
    """
    check_key(ref.obsm, f"X_{key}", "ref.obsm")
    check_key(
        adata.obsm,
        f"X_{key}",
        "adata.obsm",
        f"Run `sl.tl.project(adata, ref, model_key={key!r})` first.",
    )
    ax = ax or plt.subplots(figsize=(5, 5))[1]
    R, Q = np.asarray(ref.obsm[f"X_{key}"]), np.asarray(adata.obsm[f"X_{key}"])
    ax.scatter(
        R[:, 0], R[:, 1], s=4, c="lightgrey", linewidths=0, label="reference", rasterized=True
    )
    if color is None:
        ax.scatter(Q[:, 0], Q[:, 1], s=6, c="tab:red", linewidths=0, label="query", rasterized=True)
        ax.legend(frameon=False, markerscale=3)
    else:
        scatter_by_category(ax, Q, adata, color, s=6)
        ax.legend(
            frameon=False, markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5)
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{key}1")
    ax.set_ylabel(f"{key}2")
    ax.set_title(f"query on the {key} map" + (f" ({color})" if color else ""))
    return finish(ax, show)
