"""Why DEN chose its number of clusters."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData

from .._core.data import check_key
from ._utils import doc_params, doc_show, finish

__all__ = ["den_spectrum"]


@doc_params(doc_show=doc_show)
def den_spectrum(
    adata: AnnData, key: str = "den", *, ax: plt.Axes | None = None, show: bool | None = None
):
    """Laplacian eigenvalues of the DEN map, the near-zero threshold, and the chosen K.

    Each eigenvalue below the threshold counts one group of cells that the map keeps apart; the
    legend also gives the number of clusters left after merging connected ones.

    Parameters
    ----------
    adata
        AnnData after :func:`sclens.tl.den`.
    key
        ``key_added`` of that run.
    {doc_show}
    """
    check_key(adata.uns, key, "adata.uns", "Run `sl.tl.den(adata)` first.")
    check_key(adata.uns[key], "spectrum", f"adata.uns[{key!r}]")
    spec = adata.uns[key]["spectrum"]
    ev = np.asarray(spec["eigenvalues"], dtype=float)
    K, th = int(spec["n_clusters"]), float(spec["threshold"])
    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    x = np.arange(1, len(ev) + 1)
    ax.plot(x, ev, "o-", ms=3, color="0.4")
    final = int(adata.uns[key].get("params", {}).get("n_clusters", K))
    merged = f", {final} after merging" if final != K else ""
    ax.plot(x[:K], ev[:K], "o", ms=5, color="tab:red", label=f"K = {K}{merged}")
    ax.axhline(th, ls="--", color="tab:blue", lw=1, label=f"threshold {th:g}")
    ax.set_yscale("symlog", linthresh=max(th / 10, 1e-6))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("Laplacian eigenvalue")
    ax.set_title(f"{key}: number of clusters")
    ax.legend(frameon=False)
    return finish(ax, show)
