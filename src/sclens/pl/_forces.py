"""An attraction-repulsion map explained as forces between groups of cells."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData

from .._core.data import check_key
from .._core.forces import graph_forces
from ._utils import doc_params, doc_show, finish

__all__ = ["forces", "group_forces"]


#: the cells whose forces are shown, shared by both functions
doc_cells = """\
adata
        AnnData after :func:`sclens.tl.ardr` with ``method='tsne'``, ``'umap'`` or ``'lle'``
        (with forces).
    key
        ``key_added`` of that run.
    groupby
        ``.obs`` column that defines the groups.
    group
        The group whose forces are shown.
    cell
        Or a single cell (position or obs name)."""


@doc_params(doc_cells=doc_cells)
def group_forces(
    adata: AnnData,
    key: str = "ardr",
    *,
    groupby: str,
    group: str | None = None,
    cell: int | str | None = None,
) -> pd.DataFrame:
    """Mean attraction and repulsion felt by a group (or one cell) from each group of cells.

    Forces are minus the gradient of the map's final objective (exaggeration off), split into
    the attraction of graph neighbours and the repulsion of all cells (see
    :func:`sclens._core.forces.graph_forces`).

    Parameters
    ----------
    {doc_cells}

    Returns
    -------
    A :class:`~pandas.DataFrame` with one row per source group and columns ``attraction_<d>``,
    ``repulsion_<d>`` (the force vector, d = 1..n_components) and ``attraction``,
    ``repulsion`` (their lengths).
    """
    check_key(adata.uns, key, "adata.uns", "Run `sl.tl.ardr(adata)` first.")
    params = adata.uns[key].get("params", {})
    method = params.get("method")
    if method not in ("tsne", "umap", "lle") or "normalization" not in params:
        raise ValueError(
            "Force plots need an attraction-repulsion map (sl.tl.ardr with method='tsne', "
            f"'umap', or 'lle' with a normalization); adata.uns[{key!r}] holds method={method!r}"
            + (" without forces (classical LLE)." if method == "lle" else ".")
        )
    check_key(adata.obsm, f"X_{key}", "adata.obsm")
    check_key(adata.obsp, f"{key}_connectivities", "adata.obsp", "Run `sl.tl.ardr(adata)` again.")
    check_key(adata.obs, groupby, "adata.obs")
    if group is not None and cell is not None:
        raise ValueError("Pass either `group` or `cell`, not both.")
    labels = adata.obs[groupby].astype("category")
    cats = labels.cat.categories
    codes = labels.cat.codes.to_numpy().astype(np.int64)
    if (codes < 0).any():
        raise ValueError(f"adata.obs[{groupby!r}] has missing values; fill or drop them first.")
    if cell is not None:
        pos = adata.obs_names.get_loc(cell) if isinstance(cell, str) else int(cell)
        targets = np.array([pos])
    elif group is not None:
        if group not in cats:
            raise KeyError(f"{group!r} is not a category of adata.obs[{groupby!r}]: {list(cats)}.")
        targets = np.flatnonzero(codes == cats.get_loc(group))
    else:
        raise ValueError("Pass `group` (a category of `groupby`) or `cell`.")
    att, rep = graph_forces(
        np.asarray(adata.obsm[f"X_{key}"]),
        adata.obsp[f"{key}_connectivities"],
        codes,
        targets,
        normalization=float(params["normalization"]),
        a=float(params["a"]),
        b=float(params["b"]),
        negative_rate=float(params.get("negative_rate", 5.0)),
    )
    k = att.shape[1]
    out = pd.DataFrame(index=pd.Index([str(c) for c in cats], name=groupby))
    for d in range(k):
        out[f"attraction_{d + 1}"] = att[:, d]
    for d in range(k):
        out[f"repulsion_{d + 1}"] = rep[:, d]
    out["attraction"] = np.linalg.norm(att, axis=1)
    out["repulsion"] = np.linalg.norm(rep, axis=1)
    return out


@doc_params(doc_show=doc_show, doc_cells=doc_cells)
def forces(
    adata: AnnData,
    key: str = "ardr",
    *,
    groupby: str,
    group: str | None = None,
    cell: int | str | None = None,
    top: int = 6,
    ax: plt.Axes | None = None,
    show: bool | None = None,
):
    """Arrows of the attraction and repulsion a group (or one cell) feels from each other group.

    The map is drawn in grey with the chosen cells highlighted. From their centre, a solid arrow
    per source group shows its net attraction and a dashed arrow its net repulsion, in the
    source group's colour, for the ``top`` groups with the strongest forces; arrows share one
    scale (the longest reaches a quarter of the map). At the end of training these forces nearly
    cancel in sum: the map's layout is the balance drawn here.

    Parameters
    ----------
    {doc_cells}
    top
        Number of source groups to draw (strongest total force first).
    {doc_show}
    """
    table = group_forces(adata, key, groupby=groupby, group=group, cell=cell)
    Y = np.asarray(adata.obsm[f"X_{key}"], dtype=float)[:, :2]
    labels = adata.obs[groupby].astype("category")
    cats = [str(c) for c in labels.cat.categories]
    codes = labels.cat.codes.to_numpy()
    if cell is not None:
        pos = adata.obs_names.get_loc(cell) if isinstance(cell, str) else int(cell)
        chosen = np.zeros(adata.n_obs, bool)
        chosen[pos] = True
        title = f"forces on cell {adata.obs_names[pos]}"
    else:
        chosen = codes == cats.index(str(group))
        title = f"forces on {group}"
    centre = Y[chosen].mean(0)
    colours = plt.get_cmap("tab20")
    ax = ax or plt.subplots(figsize=(6, 5))[1]
    ax.scatter(Y[:, 0], Y[:, 1], s=3, c="lightgrey", linewidths=0, rasterized=True)
    ax.scatter(
        Y[chosen, 0], Y[chosen, 1], s=8 if cell is None else 40, c="k", linewidths=0, zorder=2
    )
    strength = table["attraction"] + table["repulsion"]
    drawn = strength.sort_values(ascending=False).index[:top]
    longest = max(float(table.loc[drawn, ["attraction", "repulsion"]].to_numpy().max()), 1e-300)
    unit = 0.25 * float(np.ptp(Y, axis=0).max()) / longest
    for name in drawn:
        colour = colours(cats.index(name) % 20)
        for kind, style in (("attraction", "-"), ("repulsion", "--")):
            v = table.loc[name, [f"{kind}_1", f"{kind}_2"]].to_numpy(dtype=float) * unit
            ax.annotate(
                "",
                xy=centre + v,
                xytext=centre,
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=2, ls=style),
                zorder=3,
            )
        ax.plot([], [], color=colour, lw=2, label=name)
        # where the source group sits
        ax.scatter(*Y[codes == cats.index(name)].mean(0), s=30, color=colour, marker="x", zorder=3)
    ax.plot([], [], color="0.3", lw=2, ls="-", label="attraction")
    ax.plot([], [], color="0.3", lw=2, ls="--", label="repulsion")
    ax.legend(frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{key}1")
    ax.set_ylabel(f"{key}2")
    ax.set_title(title)
    return finish(ax, show)
