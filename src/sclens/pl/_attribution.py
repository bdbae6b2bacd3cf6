"""Which genes move cells on the map: directional saliency and per-cell attributions."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._core.data import check_key
from ._utils import doc_params, doc_show, finish

__all__ = [
    "directional_saliency",
    "saliency_image",
    "shap_summary",
    "attribution_faithfulness",
]


def _saliency(adata: AnnData, key: str) -> dict:
    check_key(
        adata.uns,
        key,
        "adata.uns",
        "Run `sl.tl.directional_saliency(adata, source, target, groupby=..., model_key=...)` first.",
    )
    res = adata.uns[key]
    if "direction" not in res or "names" not in res:
        raise ValueError(f"adata.uns[{key!r}] is not a directional saliency result.")
    return res


@doc_params(doc_show=doc_show)
def directional_saliency(
    adata: AnnData,
    *,
    key: str = "directional_saliency",
    n_genes: int = 10,
    ax: plt.Axes | None = None,
    show: bool | None = None,
):
    """Bar chart of the genes that move ``source`` cells toward (right) or away from ``target``.

    Shows the ``n_genes`` most positive and the ``n_genes`` most negative scores written by
    :func:`sclens.tl.directional_saliency`.

    Parameters
    ----------
    adata
        AnnData after :func:`sclens.tl.directional_saliency`.
    key
        ``key_added`` of that run.
    n_genes
        Genes shown at each end.
    {doc_show}
    """
    res = _saliency(adata, key)
    names = np.asarray(res["names"]).astype(str)
    scores = np.asarray(res["scores"], dtype=float)
    n = min(n_genes, len(names) // 2)
    idx = np.r_[np.arange(n), np.arange(len(names) - n, len(names))]
    idx = idx[np.argsort(scores[idx])]
    ax = ax or plt.subplots(figsize=(4.5, 0.22 * len(idx) + 1.2))[1]
    colors = np.where(scores[idx] > 0, "tab:red", "tab:blue")
    ax.barh(np.arange(len(idx)), scores[idx], color=colors)
    ax.set_yticks(np.arange(len(idx)), names[idx], fontsize=8)
    ax.axvline(0, color="0.3", lw=0.8)
    p = res["params"]
    ax.set_xlabel(f"toward {p['target']}  (u . dy/dx)")
    ax.set_title(f"{p['groupby']}: {p['source']} -> {p['target']}")
    return finish(ax, show)


@doc_params(doc_show=doc_show)
def saliency_image(
    adata: AnnData,
    *,
    image_shape: Sequence[int],
    key: str = "directional_saliency",
    group: str | None = None,
    cmap: str = "RdBu_r",
    ax: plt.Axes | None = None,
    show: bool | None = None,
):
    """Scores laid out as an image, for image-like inputs (each 'gene' a pixel of ``var_names``).

    Reads a :func:`sclens.tl.directional_saliency` result, or with ``group`` one group of a
    :func:`sclens.tl.rank_genes` result. Pixels the model does not read are 0.

    Parameters
    ----------
    adata
        AnnData after :func:`sclens.tl.directional_saliency` or :func:`sclens.tl.rank_genes`.
    image_shape
        Height and width of the image; their product is the number of ``var_names``.
    key
        ``key_added`` of that run.
    group
        With a :func:`sclens.tl.rank_genes` result: the group whose scores are drawn.
    cmap
        Matplotlib colour map (centred on 0).
    {doc_show}
    """
    check_key(adata.uns, key, "adata.uns")
    res = adata.uns[key]
    if group is None:
        res = _saliency(adata, key)
        series = pd.Series(
            np.asarray(res["scores"], float), index=np.asarray(res["names"]).astype(str)
        )
        title = f"{res['params']['source']} -> {res['params']['target']}"
    else:
        check_key(res, "names", f"adata.uns[{key!r}]")
        groups = list(res["names"].dtype.names)
        if group not in groups:
            raise KeyError(f"group {group!r} not in adata.uns[{key!r}]; available: {groups}.")
        series = pd.Series(
            np.asarray(res["scores"][group], float),
            index=np.asarray(res["names"][group]).astype(str),
        )
        title = f"{group} ({res['params']['method']})"
    shape = tuple(int(s) for s in image_shape)
    if int(np.prod(shape)) != adata.n_vars:
        raise ValueError(
            f"image_shape {shape} holds {int(np.prod(shape))} pixels; adata has {adata.n_vars} vars."
        )
    img = series.reindex(adata.var_names.astype(str)).fillna(0.0).to_numpy().reshape(shape)
    ax = ax or plt.subplots(figsize=(3.2, 3.2))[1]
    lim = float(np.abs(img).max()) or 1.0
    im = ax.imshow(img, cmap=cmap, vmin=-lim, vmax=lim)
    ax.figure.colorbar(im, ax=ax, shrink=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return finish(ax, show)


@doc_params(doc_show=doc_show)
def shap_summary(
    adata: AnnData,
    group: str,
    *,
    key: str = "rank_genes_shap",
    n_genes: int = 10,
    cmap: str = "coolwarm",
    ax: plt.Axes | None = None,
    show: bool | None = None,
):
    """Beeswarm summary of per-cell attributions for one group of :func:`sclens.tl.rank_genes`.

    One row per top gene (highest mean attribution first); each dot is an explained cell, placed
    at its attribution and coloured by the gene's expression in that cell (low blue, high red).

    Parameters
    ----------
    adata
        AnnData after :func:`sclens.tl.rank_genes`.
    group
        The group whose explained cells are drawn.
    key
        ``key_added`` of that run.
    n_genes
        Top genes shown.
    cmap
        Matplotlib colour map of the expression.
    {doc_show}
    """
    check_key(
        adata.uns, key, "adata.uns", "Run `sl.tl.rank_genes(adata, groupby, model_key=...)` first."
    )
    check_key(adata.uns[key], "attributions", f"adata.uns[{key!r}]")
    store = adata.uns[key]["attributions"]
    check_key(store, str(group), f"adata.uns[{key!r}]['attributions']")
    st = store[str(group)]
    genes = np.asarray(st["genes"]).astype(str)[:n_genes]
    values = np.asarray(st["values"], dtype=float)[:, : len(genes)]
    cells = adata.obs_names.get_indexer(np.asarray(st["obs_names"]).astype(str))
    cols = adata.var_names.get_indexer(genes)
    layer = adata.uns[key]["params"].get("layer")
    X = adata.X if layer is None else adata.layers[layer]
    expr = np.full(values.shape, np.nan)
    ok = (cells >= 0)[:, None] & (cols >= 0)[None, :]
    if ok.any():
        sub = X[np.clip(cells, 0, None)][:, np.clip(cols, 0, None)]
        expr = np.where(
            ok, np.asarray(sub.toarray() if sparse.issparse(sub) else sub, float), np.nan
        )
    ax = ax or plt.subplots(figsize=(5, 0.35 * len(genes) + 1.2))[1]
    rng = np.random.default_rng(0)
    for r in range(len(genes)):
        e = expr[:, r]
        lo, hi = (
            np.nanpercentile(e, 5) if np.isfinite(e).any() else 0,
            np.nanpercentile(e, 95) if np.isfinite(e).any() else 1,
        )
        c = np.clip((e - lo) / ((hi - lo) or 1.0), 0, 1)
        y = len(genes) - 1 - r + _swarm_offsets(values[:, r], rng)
        ax.scatter(
            values[:, r], y, c=c, cmap=cmap, vmin=0, vmax=1, s=6, linewidths=0, rasterized=True
        )
    ax.set_yticks(np.arange(len(genes))[::-1], genes, fontsize=8)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_xlabel(f"attribution ({adata.uns[key]['params']['method']})")
    ax.set_title(f"{adata.uns[key]['params']['groupby']} = {group}")
    sm = plt.cm.ScalarMappable(cmap=cmap)
    cb = ax.figure.colorbar(sm, ax=ax, shrink=0.6, ticks=[0, 1])
    cb.ax.set_yticklabels(["low", "high"])
    cb.set_label("expression")
    return finish(ax, show)


def _swarm_offsets(x: np.ndarray, rng: np.random.Generator, width: float = 0.4) -> np.ndarray:
    """Vertical offsets that grow with the local density of ``x`` (a beeswarm look)."""
    if len(x) < 2:
        return np.zeros(len(x))
    bins = np.histogram_bin_edges(x, bins=min(50, max(5, len(x) // 5)))
    which = np.clip(np.digitize(x, bins) - 1, 0, len(bins) - 2)
    counts = np.bincount(which, minlength=len(bins) - 1)
    dens = counts[which] / counts.max()
    return (rng.random(len(x)) - 0.5) * 2 * width * dens


@doc_params(doc_show=doc_show)
def attribution_faithfulness(
    adata: AnnData,
    *,
    key: str = "attribution_faithfulness",
    metric: str = "left",
    ax: plt.Axes | None = None,
    show: bool | None = None,
):
    """Deletion curves written by :func:`sclens.tl.attribution_faithfulness`.

    One line per ranking: ``metric`` (``'left'``, the share of cells that left their group, or
    ``'shift'``, the median distance moved in units of the groups' spread) averaged over groups,
    against the number of top genes removed.

    Parameters
    ----------
    adata
        AnnData after :func:`sclens.tl.attribution_faithfulness`.
    key
        ``key_added`` of that run.
    metric
        ``'left'`` or ``'shift'`` (see above).
    {doc_show}
    """
    check_key(
        adata.uns,
        key,
        "adata.uns",
        "Run `sl.tl.attribution_faithfulness(adata, groupby, model_key=..., keys=[...])` first.",
    )
    if metric not in ("left", "shift"):
        raise ValueError(f"metric must be 'left' or 'shift', got {metric!r}.")
    table = pd.DataFrame(adata.uns[key]["table"])
    ax = ax or plt.subplots(figsize=(4.5, 3.5))[1]
    for ranking, df in table.groupby("ranking", sort=False):
        mean = df.groupby("n_genes")[metric].mean()
        ax.plot(mean.index, mean.values, marker="o", label=str(ranking))
    ks = sorted(table["n_genes"].unique())
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("top genes removed")
    ax.set_ylabel("cells that left their group" if metric == "left" else "median shift / spread")
    ax.set_title(f"deletion curves ({adata.uns[key]['params']['groupby']})")
    ax.legend(fontsize=8)
    return finish(ax, show)
