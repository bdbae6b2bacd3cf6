"""Rankings of genes per group from attributions: the groups and the cells each is compared
with, the targets of a trained map, one attribution run per group, and the result in
:func:`scanpy.tl.rank_genes_groups`' layout."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg
from tqdm import tqdm

from .attribution import Noise, Targets, explain_group, input_weights
from .data import check_key
from .engine import progress_enabled
from .model import Model

__all__ = [
    "group_labels",
    "groups_and_references",
    "reference_groups",
    "log_fold_changes",
    "records",
    "group_targets",
    "explained_output",
    "map_separation",
    "warn_mixed_groups",
    "Ranked",
    "explain_groups",
    "rank_genes_groups_layout",
]


def group_labels(adata: AnnData, groupby: str) -> np.ndarray:
    """``adata.obs[groupby]`` as strings, ``''`` for unlabelled cells."""
    col = adata.obs[groupby]
    values = col.astype(str).to_numpy()
    values[col.isna().to_numpy()] = ""
    return values


def groups_and_references(adata: AnnData, groupby: str, groups, reference: str):
    """Group names, their masks and each group's reference mask (validated)."""
    check_key(adata.obs, groupby, "adata.obs")
    col = adata.obs[groupby]
    if not isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype("category")
    cats = [str(c) for c in col.cat.categories]
    values = group_labels(adata, groupby)
    if reference != "rest" and reference not in cats:
        raise ValueError(
            f"reference={reference!r} is not a category of adata.obs[{groupby!r}] ({cats}); "
            "pass 'rest' or one of the categories."
        )
    if isinstance(groups, str) and groups == "all":
        names = [c for c in cats if c != reference and (values == c).any()]
    else:
        names = [str(g) for g in ([groups] if isinstance(groups, str) else groups)]
        unknown = [g for g in names if g not in cats]
        if unknown:
            raise ValueError(
                f"groups {unknown} are not categories of adata.obs[{groupby!r}] ({cats})."
            )
        if reference in names:
            raise ValueError(f"reference {reference!r} cannot also be one of `groups`.")
    masks = [values == g for g in names]
    empty = [g for g, m in zip(names, masks, strict=True) if not m.any()]
    if empty or not names:
        raise ValueError(f"groups {empty or names} of adata.obs[{groupby!r}] have no cells.")
    ref_masks = [
        (values != g) & (values != "") if reference == "rest" else values == reference
        for g in names
    ]
    if any(not m.any() for m in ref_masks):
        raise ValueError(
            f"the reference {reference!r} has no cells to compare with (adata.obs[{groupby!r}] "
            "needs at least two groups)."
        )
    return names, masks, ref_masks


def reference_groups(values: np.ndarray, name: str, reference: str) -> dict[str, np.ndarray]:
    """Cells of each group ``name`` is compared with (``values``: :func:`group_labels`), by
    group: every other group with cells, or the one named."""
    others = [reference] if reference != "rest" else sorted(set(values) - {name, ""})
    return {h: np.flatnonzero(values == h) for h in others}


def log_fold_changes(X, masks, ref_masks, log_data: bool) -> np.ndarray:
    """``log2`` ratio of mean expression, group vs reference (as ``sc.tl.rank_genes_groups``)."""
    out = []
    for m, r in zip(masks, ref_masks, strict=True):
        mg = np.asarray(X[np.flatnonzero(m)].mean(axis=0), dtype=np.float64).ravel()
        mr = np.asarray(X[np.flatnonzero(r)].mean(axis=0), dtype=np.float64).ravel()
        if log_data:
            mg, mr = np.expm1(mg), np.expm1(mr)
        out.append(np.log2((mg + 1e-9) / (mr + 1e-9)))
    return np.asarray(out)


def records(columns: dict[str, np.ndarray], dtype) -> np.recarray:
    return pd.DataFrame(columns).to_records(index=False, column_dtypes=dtype)


def group_targets(
    kind: str,
    model: Model,
    net,
    features: np.ndarray,
    names: list[str],
    masks: list[np.ndarray],
    ref_masks: list[np.ndarray],
    reference: str,
    model_key: str,
) -> tuple[Targets, np.ndarray | None, np.ndarray | None]:
    """The targets of ``kind`` (``'logit'``, ``'centroid'`` or ``'axis'``) for the groups
    ``names``, with the map coordinates and group centroids where the targets use them."""
    if kind == "logit":
        if net.cluster_head is None:
            raise ValueError(
                f"explain='logit' needs a model with a cluster head; {model_key!r} has none."
            )
        order = model.config.get("cluster_order", list(range(net.config["n_clusters"])))
        shown = [str(r) for r in range(len(order))]
        bad = [g for g in names + ([] if reference == "rest" else [reference]) if g not in shown]
        if bad:
            raise ValueError(
                f"explain='logit' needs groups named like the model's clusters {shown}; got {bad}."
            )
        ref_logits = None if reference == "rest" else [order[int(reference)]] * len(names)
        return Targets.logit([order[int(g)] for g in names], ref_logits, len(order)), None, None
    coords = net.transform(features)
    centroids = np.stack([coords[m].mean(0) for m in masks])
    if kind == "centroid":
        return Targets.centroid(centroids), coords, centroids
    ref_centroids = np.stack([coords[r].mean(0) for r in ref_masks])
    return Targets.axis(centroids, ref_centroids), coords, centroids


def explained_output(explain: str, method: str, net, groups_are_clusters: bool) -> str:
    """The output ``explain='auto'`` attributes: the cluster logits when the groups are the
    model's own clusters, else the map axes (saliency) or the distance to the group's centroid."""
    if explain != "auto":
        return explain
    if net.cluster_head is not None and groups_are_clusters:
        return "logit"
    return "axis" if method == "saliency" else "centroid"


def map_separation(
    coords: np.ndarray, labels: np.ndarray, names: list[str], n_neighbors: int = 15
) -> np.ndarray:
    """How well the map keeps each group apart: per group, the mean share of its cells'
    ``n_neighbors`` nearest map neighbours (the cell itself excluded) in the group, rescaled so
    that 0 is chance (``f``, the group's share of all cells) and 1 the most the group's size
    allows (``min(1, (n_g - 1) / n_neighbors)``; a group of 5 cells that are each other's
    nearest neighbours scores 1): ``(share - f) / (most - f)``. NaN for a group of one cell."""
    from sklearn.neighbors import NearestNeighbors

    labels = np.asarray(labels)
    k = min(n_neighbors, len(coords) - 1)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords, return_distance=False)
    neighbours = labels[idx[:, 1:]]
    out = np.full(len(names), np.nan)
    for g, name in enumerate(names):
        mine = labels == name
        f, most = mine.mean(), min(1.0, (mine.sum() - 1) / k)
        if most > f:
            out[g] = ((neighbours[mine] == name).mean() - f) / (most - f)
    return out


#: groups the map separates less than this get a warning (docs/methods/attribution.md)
SEPARATION_WARNING = 0.75


def warn_mixed_groups(names: list[str], separation: np.ndarray) -> None:
    """Warn about the groups whose ``separation`` is below ``SEPARATION_WARNING``."""
    mixed = [
        f"{n!r} ({s:.2f})" for n, s in zip(names, separation, strict=True) if s < SEPARATION_WARNING
    ]
    if mixed:
        logg.warning(
            f"the map mixes group(s) {', '.join(mixed)} with other cells (separation: share of "
            "a cell's 15 nearest map neighbours in its group; 1 = all its size allows, 0 = "
            "chance). "
            "Attributions explain what moves cells on the map; where the map does not keep a "
            "group apart they often miss what tells it apart in the data (planted markers: "
            "docs/methods/attribution.md). Compare with `sc.tl.rank_genes_groups`."
        )


@dataclass
class Ranked:
    """Per group (rows, in the order of the groups): the genes' ``scores`` and ``influence``,
    and the per-cell attributions kept (``store``, keyed by group)."""

    scores: np.ndarray
    influence: np.ndarray
    store: dict


def explain_groups(
    method: str,
    kind: str,
    targets: Targets,
    net,
    inp,
    X,
    features: np.ndarray,
    adata: AnnData,
    groupby: str,
    names: list[str],
    masks: list[np.ndarray],
    reference: str,
    coords: np.ndarray | None,
    centroids: np.ndarray | None,
    *,
    n_cells: int | None,
    n_store: int,
    rng: np.random.Generator,
    device,
    smoothing: float = 0.0,
    n_smoothing: int = 0,
    noise_seed: int = 0,
    **settings,
) -> Ranked:
    """:func:`~sclens._core.attribution.explain_group` for every group (at most ``n_cells``
    cells each, drawn with ``rng``), keeping each group's top ``n_store`` genes' per-cell
    attributions. Saliency with ``smoothing`` > 0 averages ``n_smoothing`` gradients at copies
    of each cell with Gaussian noise of ``smoothing`` times each feature's standard deviation
    (over all cells of ``adata``), drawn for group ``g`` from the seed ``(noise_seed, g)``.
    ``settings``: ``zero_baseline``, ``times_input``, ``n_steps``, ``n_background``."""
    W, c = input_weights(inp)
    noise = None
    if method == "saliency":
        noise = Noise.for_features(features, smoothing, n_smoothing, (noise_seed,))
    labels = group_labels(adata, groupby)
    scores, influence, store = [], [], {}
    mean_of: dict[str, np.ndarray] = {}  # each group's mean expression, computed once
    groups_bar = tqdm(
        list(enumerate(zip(names, masks, strict=True))),
        desc=f"rank_genes ({method})",
        disable=not progress_enabled(),
        leave=False,
    )
    for g, (name, m) in groups_bar:
        cells = np.flatnonzero(m)
        if n_cells is not None and len(cells) > n_cells:
            cells = np.sort(rng.choice(cells, n_cells, replace=False))
        by_group = reference_groups(labels, name, reference)
        refs = list(by_group.values())
        for h, rows in by_group.items():
            if h not in mean_of:
                mean_of[h] = np.asarray(X[rows].mean(axis=0), dtype=np.float64).ravel()
        axes = None
        if method == "saliency" and kind == "axis":
            # one axis per reference group, from its centroid to the group's
            ref_centroids = np.stack([coords[r].mean(0) for r in refs])
            axes = Targets.axis(np.broadcast_to(centroids[g], ref_centroids.shape), ref_centroids)
        group_noise = None if noise is None else replace(noise, seed=(noise_seed, g))
        res = explain_group(
            method,
            targets,
            net,
            g,
            X=X,
            cells=cells,
            features=features[cells],
            references=refs,
            reference_means=np.stack([mean_of[h] for h in by_group]),
            W=W,
            c=c,
            axes=axes,
            noise=group_noise,
            rng=rng,
            device=device,
            **settings,
        )
        scores.append(res.scores)
        influence.append(res.influence)
        top = np.argsort(-res.scores, kind="stable")[:n_store]
        store[name] = {
            "obs_names": np.asarray(adata.obs_names[cells], dtype=str),
            "genes": np.asarray(inp.var_names[top], dtype=str),
            "values": res.attr[:, top].astype(np.float32),
            "total": res.attr.sum(1),
            "output": np.asarray(res.output, dtype=np.float64),
        }
    return Ranked(np.asarray(scores), np.asarray(influence), store)


def rank_genes_groups_layout(
    names: list[str], genes: np.ndarray, ranked: Ranked, lfc: np.ndarray, params: dict
) -> dict:
    """The ``adata.uns`` entry that ``sc.pl.rank_genes_groups*`` and
    ``sc.get.rank_genes_groups_df`` read: record arrays of genes sorted by score per group
    (``names``, ``scores``, ``logfoldchanges``, NaN ``pvals``), plus ``attributions`` and the
    ``influence`` ranking."""
    genes = np.asarray(genes, dtype=object)
    scores, influence = ranked.scores, ranked.influence
    order = np.argsort(-scores, axis=1, kind="stable")
    by_influence = np.argsort(-influence, axis=1, kind="stable")
    pick = lambda a: {n: a[k, order[k]] for k, n in enumerate(names)}  # noqa: E731
    nan = np.full(scores.shape, np.nan)
    return {
        "params": params,
        "names": records({n: genes[order[k]] for k, n in enumerate(names)}, "O"),
        "scores": records(pick(scores), "float32"),
        "logfoldchanges": records(pick(lfc), "float32"),
        "pvals": records(pick(nan), "float64"),
        "pvals_adj": records(pick(nan), "float64"),
        "attributions": ranked.store,
        "influence": {
            "names": records({n: genes[by_influence[k]] for k, n in enumerate(names)}, "O"),
            "scores": records(
                {n: influence[k, by_influence[k]] for k, n in enumerate(names)}, "float32"
            ),
        },
    }
