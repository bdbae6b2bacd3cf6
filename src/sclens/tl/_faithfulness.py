"""Deletion curves: do a ranking's top genes actually move a group's cells on the map?"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg
from sklearn.neighbors import NearestNeighbors

from .._core.attribution import dense_rows
from .._core.data import check_key, query_matrix
from .._core.engine import resolve_device
from .._core.ranking import group_labels, groups_and_references
from .._core.threads import fixed_threads
from ._common import attribution_model, start_adata
from ._options import check_int, check_key_added, checked_options

__all__ = ["attribution_faithfulness"]


def _ranking(adata: AnnData, key: str, groups: list[str]) -> dict[str, dict[str, list[str]]]:
    """The top-down gene names per group of the ranking in ``adata.uns[key]``, keyed by the
    ranking's name: ``key``, and ``key + ':influence'`` where :func:`sclens.tl.rank_genes`
    stored an influence ranking."""
    check_key(
        adata.uns,
        key,
        "adata.uns",
        "Pass keys of gene rankings in the rank_genes_groups layout, written by "
        "`sl.tl.rank_genes` or `sc.tl.rank_genes_groups`.",
    )
    res = adata.uns[key]
    if "names" not in res:
        raise ValueError(f"adata.uns[{key!r}] has no 'names': not a rank_genes_groups result.")
    names = pd.DataFrame(res["names"])
    missing = [g for g in groups if g not in names.columns]
    if missing:
        raise ValueError(
            f"the ranking in adata.uns[{key!r}] has no groups {missing}; rank them with the same "
            "`groupby` first."
        )
    out = {key: {g: [str(n) for n in names[g]] for g in groups}}
    if isinstance(res.get("influence"), dict) and "names" in res["influence"]:
        influence = pd.DataFrame(res["influence"]["names"])
        out[f"{key}:influence"] = {g: [str(n) for n in influence[g]] for g in groups}
    return out


@fixed_threads
@checked_options()
def attribution_faithfulness(
    adata: AnnData,
    groupby: str,
    *,
    model_key: str,
    keys: Sequence[str],
    n_genes: Sequence[int] = (5, 10, 20, 50),
    groups: Sequence[str] | str = "all",
    n_random: int = 5,
    n_neighbors: int = 15,
    key_added: str = "attribution_faithfulness",
    device: Literal["auto", "cpu", "cuda"] | str = "auto",
    random_state: int | None = 0,
    copy: bool = False,
) -> AnnData | None:
    """Deletion curves: how far a group's cells move on the map when its top genes are removed.

    For each group, each gene ranking in ``keys`` and each ``k`` in ``n_genes``, the ``k``
    top-ranked genes of the group (among the genes the model reads) are set, in the group's
    cells, to their mean over all other cells (the group is "deleted" into the rest for those
    genes only), and the cells are placed again by the trained network. A ranking that names the
    genes the map actually uses moves the cells further and sends more of them out of their
    group than one that does not; a ranking from a test on the data (``sc.tl.rank_genes_groups``)
    says what differs, not what the map uses. Rankings by :func:`sclens.tl.rank_genes` are
    tested twice: by their ``names`` (markers: genes that differ in the group's direction and
    move it toward the group) and as ``'<key>:influence'`` (the mean attribution without the
    sign, other groups' markers that the group lacks included). ``n_random`` sets of ``k``
    random model genes give the floor.

    Parameters
    ----------
    adata
        Cells with the genes the model reads and the ``groupby`` column.
    groupby
        Categorical ``.obs`` column whose groups the rankings rank.
    model_key
        Key of a trained network map in ``adata.uns``.
    keys
        Keys in ``adata.uns`` of rankings in the ``rank_genes_groups`` layout over ``groupby``
        (e.g. ``['rank_genes_integrated_gradients', 'rank_genes_groups']``).
    n_genes
        The numbers of top genes removed.
    groups
        Groups to test (``'all'``: every group of ``groupby``).
    n_random
        Draws of random genes per group and ``k`` for the ``'random'`` curve (0: none).
    n_neighbors
        A cell is in its group when most of its ``n_neighbors`` nearest cells in the unperturbed
        map belong to it; ``left`` counts, among the cells that were, those that no longer are.
    key_added
        Key in ``adata.uns``.
    device
        ``'auto'``, ``'cpu'`` or ``'cuda'``.
    random_state
        Seed of the random gene sets.
    copy
        Return a copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Sets ``adata.uns[key_added]``:

    ``table``
        A data frame with one row per ranking (each key, ``'<key>:influence'`` where the key
        has an influence ranking, and ``'random'``), group and ``k``: ``shift``, the median distance
        a cell moved divided by the median distance of the map's cells from their group's
        centroid, and ``left``, the share of the group's cells that left it (of those inside it
        before; NaN for a group with none).
    ``params``
        ``groupby``, ``model_key``, ``keys``, ``n_genes``, ``n_random``, ``n_neighbors``.
    """
    keys = [keys] if isinstance(keys, str) else list(keys)
    if not keys:
        raise ValueError("`keys` is empty; pass at least one ranking to test.")
    ks = sorted({check_int(k, "n_genes") for k in n_genes})
    check_key_added(adata, key_added)
    model = attribution_model(adata, model_key)
    names, masks, ref_masks = groups_and_references(adata, groupby, groups, "rest")
    rankings = {k: r for key in keys for k, r in _ranking(adata, key, names).items()}
    inp = model.input_layer
    if ks[-1] >= inp.n_in:
        raise ValueError(f"n_genes up to {ks[-1]} but the model reads only {inp.n_in} genes.")
    dev = resolve_device(device)
    adata = start_adata(adata, "attribution_faithfulness", copy)
    start = logg.info(f"deletion curves of {len(keys)} rankings over {len(names)} groups")

    X = query_matrix(adata, inp)
    net = model.network(dev)
    coords = net.transform(inp.transform(X))
    labels = group_labels(adata, groupby)
    spread = np.median(
        np.concatenate([np.linalg.norm(coords[m] - coords[m].mean(0), axis=1) for m in masks])
    )
    knn = NearestNeighbors(n_neighbors=n_neighbors).fit(coords)

    def inside(points: np.ndarray, name: str) -> np.ndarray:
        """Whether most of each point's map neighbours belong to group ``name``."""
        return (labels[knn.kneighbors(points, return_distance=False)] == name).mean(1) > 0.5

    position = pd.Index(inp.var_names)
    rng = np.random.default_rng(random_state)
    rows = []
    for name, m, r in zip(names, masks, ref_masks, strict=True):
        cells = np.flatnonzero(m)
        x = dense_rows(X, cells)
        rest = np.asarray(X[np.flatnonzero(r)].mean(axis=0), dtype=np.float64).ravel()
        was_in = inside(coords[cells], name)

        def measure(genes: np.ndarray, name=name, cells=cells, x=x, rest=rest, was_in=was_in):
            xp = x.copy()
            xp[:, genes] = rest[genes]
            moved = net.transform(inp.transform(xp))
            shift = np.median(np.linalg.norm(moved - coords[cells], axis=1)) / spread
            if not was_in.any():
                return float(shift), np.nan
            return float(shift), float((~inside(moved[was_in], name)).mean())

        sets = {}
        for key, ranking in rankings.items():
            pos = position.get_indexer(ranking[name])
            sets[key] = pos[pos >= 0]
        for k in ks:
            for key, order in sets.items():
                shift, left = measure(order[:k])
                rows.append(dict(ranking=key, group=name, n_genes=k, shift=shift, left=left))
            for _ in range(n_random):
                shift, left = measure(rng.choice(inp.n_in, k, replace=False))
                rows.append(dict(ranking="random", group=name, n_genes=k, shift=shift, left=left))
    table = pd.DataFrame(rows)
    if n_random:
        table = table.groupby(["ranking", "group", "n_genes"], sort=False, as_index=False).mean()
    adata.uns[key_added] = {
        "table": table,
        "params": dict(
            groupby=groupby,
            model_key=model_key,
            keys=keys,
            n_genes=ks,
            n_random=n_random,
            n_neighbors=n_neighbors,
        ),
    }
    logg.info("    finished", time=start, deep=f"added .uns[{key_added!r}]: table, params")
    return adata if copy else None
