"""Place new cells on a trained map and transfer reference labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg
from sklearn.neighbors import NearestNeighbors

from .._core.data import check_key, query_matrix
from .._core.engine import resolve_device
from .._core.model import Model
from .._core.threads import fixed_threads
from ._common import renamed_options, start_adata, stored_model
from ._options import check_key_added, checked_options

__all__ = ["project", "transfer_labels"]


def _reference_model(ref: AnnData | Model, key: str) -> Model:
    if isinstance(ref, Model):
        return ref
    if not isinstance(ref, AnnData):
        raise TypeError(f"`ref` must be an AnnData or an sclens Model, got {type(ref).__name__}.")
    return stored_model(ref, key, "ref")


def transfer_labels(
    query_coords: np.ndarray, ref_coords: np.ndarray, ref_labels: pd.Series, n_neighbors: int = 15
) -> tuple[pd.Categorical, np.ndarray]:
    """Majority vote of the ``n_neighbors`` nearest reference cells (distance-weighted).

    Returns the labels and the confidence (weighted fraction of votes for the winner).
    """
    labelled = ref_labels.notna().to_numpy()
    cats = ref_labels.astype("category").cat.remove_unused_categories()
    codes = cats.cat.codes.to_numpy()[labelled]
    k = min(n_neighbors, int(labelled.sum()))
    nn = NearestNeighbors(n_neighbors=k).fit(ref_coords[labelled])
    dist, ind = nn.kneighbors(query_coords)
    w = 1.0 / (dist + 1e-6 * (np.median(dist) + 1e-12))
    votes = np.zeros((len(query_coords), len(cats.cat.categories)))
    np.add.at(votes, (np.repeat(np.arange(len(query_coords)), k), codes[ind].ravel()), w.ravel())
    votes /= votes.sum(1, keepdims=True)
    best = votes.argmax(1)
    return pd.Categorical.from_codes(best, categories=cats.cat.categories), votes.max(1)


@renamed_options(key="model_key")  # `key` shipped in tutorials 01 and 02
@fixed_threads
@checked_options()
def project(
    adata: AnnData,
    ref: AnnData | Model,
    *,
    model_key: str = "ptsne",
    placement: Literal["network", "neighbors"] = "network",
    placement_neighbors: int = 3,
    transfer: Sequence[str] | str | None = None,
    n_neighbors: int = 15,
    novelty_neighbors: int = 15,
    device: Literal["auto", "cpu", "cuda"] | str = "cpu",
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Project query cells onto a reference map with its trained model.

    For network maps (``ptsne``, ``den``, parametric ``ardr``) this is a forward pass
    (``placement='network'``), fast and possible from a saved :class:`~sclens.Model` alone.
    ``placement='neighbors'`` places each query cell at the median map position of its
    ``placement_neighbors`` nearest reference cells in the network's input features (the PCs of
    the frozen layer), as openTSNE's and ``sc.tl.ingest``'s placements start: slower (a kNN
    search over the reference) and it needs the reference AnnData, but cells land with their
    nearest reference cells also where the network blurs touching clusters (held-out accuracy
    in ``docs/methods/ptsne.md``). For a GNE map, which has no
    encoder, each query cell is placed by optimisation with the decoder frozen: it starts at the
    best few of the reference positions stored in the model (those whose decoded profiles are
    closest to it), each start is optimised with Adam, and the best optimum is kept. The
    errors left there give ``obs['gne_novelty_cell']``; taken relative to the reference cells
    where each cell lies and averaged over the cell's nearest query cells, ``obs['gne_novelty']``.

    The query's genes are aligned to the model's by name: reordered, extra genes ignored, missing
    genes set to zero with a warning that says how many; fewer than half shared raises an error.
    The query must be normalised like the reference (e.g. ``normalize_total`` + ``log1p``).

    Parameters
    ----------
    adata
        Query cells.
    ref
        The reference AnnData holding ``uns[model_key]['model']`` (needed for ``transfer``), or a
        :class:`~sclens.Model` from :func:`sclens.load_model`.
    model_key
        The map's key in the reference (``'ptsne'``, ...): its model is read from
        ``ref.uns[model_key]['model']``, its coordinates (for ``transfer``) from
        ``ref.obsm['X_' + model_key]``.
    placement
        ``'network'`` (forward pass) or ``'neighbors'`` (median position of the nearest
        reference cells; network maps, with the reference AnnData).
    placement_neighbors
        Reference cells whose positions place a cell with ``placement='neighbors'``.
    transfer
        ``.obs`` columns of the reference to transfer by kNN in the map.
    n_neighbors
        Reference neighbours that vote in ``transfer``.
    novelty_neighbors
        GNE maps: ``obs[key_added + '_novelty']`` averages over the cell and its
        ``novelty_neighbors - 1`` nearest query cells (in 30 principal components of the
        query's expression of the model's genes); ``1``: no averaging.
    device
        Where to run the network.
    key_added
        Key of what is written into ``adata``; ``None``: ``model_key``, so the query's
        coordinates sit under the same name as the reference's.
    copy
        Return a copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Sets:

    ``adata.obsm['X_' + key_added]``
        The query's coordinates in the reference map.
    ``adata.obs[key_added]``, ``adata.obsm[key_added + '_proba']``
        For models with a cluster head (``den``): predicted clusters and their probabilities.
    ``adata.obs[key_added + '_novelty_cell']``
        For GNE maps: how much of the cell's expression the map cannot explain, gene by gene, at
        the cell's optimum. A gene's error counts only beyond its threshold there: the larger of
        the gene's 99.5th-percentile error among the reference cells and the second-largest error
        on that gene among the 100 reference cells nearest on the map, a local 99th percentile
        (errors that the map also makes for the reference cells where the cell lies are
        ordinary). The excess over these thresholds is summed over genes (a few marker genes the
        map cannot produce are enough, where a mean over all genes would dilute them) and, in
        log, z-scored against the reference cells' own excess (each measured at its own optimum,
        leaving itself out of its neighbours). 0 is a typical reference cell, 1 one standard
        deviation above; high means "this cell is unlike anything in the map where it lies"
        (above ~2-3 is unusual).
    ``adata.obs[key_added + '_novelty']``
        For GNE maps: novelty of groups of cells. Each cell's ``key_added + '_novelty_cell'`` minus
        the mean of the reference cells' own scores among the 100 nearest on the map (small,
        varied populations such as stellate or endothelial cells are explained less well than
        the big ones, in the reference too), averaged over the cell and its
        ``novelty_neighbors - 1`` nearest query cells in expression. A cell type missing from the
        reference is a group of poorly explained cells; a known cell that the map happens to
        explain badly (a doublet, a cycling or stressed cell) mostly has well explained
        neighbours. 0 means "explained as well as the reference cells there". This separates a
        left-out type far better than the per-cell score once it has about 10 or more cells in
        the query (measured in ``docs/methods/gne.md``), but a lone novel cell among known ones
        is diluted: look at ``key_added + '_novelty_cell'`` for those.
    ``adata.obs[col]``, ``adata.obs[col + '_confidence']``
        For each ``transfer`` column: the transferred label and the fraction of (distance-weighted)
        neighbour votes it received.
    """
    model = _reference_model(ref, model_key)
    key_added = check_key_added(adata, model_key if key_added is None else key_added)
    if isinstance(novelty_neighbors, bool) or not isinstance(novelty_neighbors, int | np.integer):
        raise TypeError(f"`novelty_neighbors` must be an integer, got {novelty_neighbors!r}.")
    if novelty_neighbors < 1:
        raise ValueError(
            f"`novelty_neighbors` must be at least 1 (1: no averaging), got {novelty_neighbors}."
        )
    transfer = [transfer] if isinstance(transfer, str) else list(transfer or [])
    if placement == "neighbors":
        if not isinstance(ref, AnnData):
            raise ValueError(
                "placement='neighbors' needs the reference AnnData (its cells' expression and "
                "map positions), not a Model; or use placement='network'."
            )
    if transfer and not isinstance(ref, AnnData):
        raise ValueError(
            "`transfer` needs the reference AnnData (its labels and coordinates), not a Model."
        )
    if transfer or placement == "neighbors":
        check_key(ref.obsm, f"X_{model_key}", "ref.obsm")
    if transfer:
        for col in transfer:
            check_key(ref.obs, col, "ref.obs")
    adata = start_adata(adata, "project", copy)
    start = logg.info(f"projecting {adata.n_obs} cells onto the {model.method!r} map")
    X = query_matrix(adata, model.input_layer)
    reference = None
    if placement == "neighbors":
        reference = (query_matrix(ref, model.input_layer), np.asarray(ref.obsm[f"X_{model_key}"]))
    placed = model.place(
        X,
        resolve_device(device),
        novelty_neighbors=novelty_neighbors,
        reference=reference,
        placement_neighbors=placement_neighbors,
    )
    coords, proba = placed["coords"], placed.get("proba")
    results = {}
    for col in transfer:
        results[col] = transfer_labels(
            coords, np.asarray(ref.obsm[f"X_{model_key}"]), ref.obs[col], n_neighbors
        )

    adata.obsm[f"X_{key_added}"] = coords
    if proba is not None:
        names = [str(r) for r in range(proba.shape[1])]
        adata.obs[key_added] = pd.Categorical.from_codes(proba.argmax(1), categories=names)
        adata.obsm[f"{key_added}_proba"] = proba
    if "novelty" in placed:
        adata.obs[f"{key_added}_novelty"] = placed["novelty"]
        adata.obs[f"{key_added}_novelty_cell"] = placed["novelty_cell"]
    for col, (labels, conf) in results.items():
        adata.obs[col] = pd.Categorical(labels, categories=labels.categories)
        adata.obs[f"{col}_confidence"] = conf
    logg.info(
        "    finished", time=start, deep=f"added\n    'X_{key_added}', coordinates (adata.obsm)"
    )
    return adata if copy else None
