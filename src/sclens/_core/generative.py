"""Placing cells on a generative map: the decoder is frozen, coordinates are optimised.

A new cell has no coordinate. :func:`place` decodes candidate positions (stored reference
positions) once, starts each cell from the ``n_starts`` candidates whose decoded profiles are
closest to it, optimises all starts at once with Adam through the one training loop (decoder
frozen, full batch, no noise), and keeps each cell's best optimum. What the map cannot explain
there is scored gene by gene: :func:`excess` sums how far each gene's error exceeds both the 99.5th
percentile of that gene's error among the reference cells (:func:`gene_thresholds`) and the
second-largest error on that gene among the 100 reference cells nearest on the map
(:func:`local_thresholds`); :func:`novelty` puts it on the reference cells' own scale.
:func:`local_level` is the reference cells' typical score where a cell lies, and
:func:`smooth_over_query` averages a score over each query cell's nearest query cells in
expression.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

from .data import InputLayer, fit_pca, log_cp10k
from .engine import CellSampler, Trainer
from .graph import knn
from .networks import CoordinateTable, Decoder, GenerativeMap
from .objectives import Reconstruction, cell_error, pairwise_sq_dists

__all__ = [
    "place",
    "gene_errors",
    "gene_thresholds",
    "tail_errors",
    "local_thresholds",
    "excess",
    "excess_of",
    "novelty",
    "local_level",
    "smooth_over_query",
    "dense_chunk",
]

#: a gene's error counts as unexplained above this quantile of its errors among reference cells ...
NOVELTY_QUANTILE = 0.995
#: ... and above its ``LOCAL_RANK``-th largest error among this many reference cells nearest on
#: the map (the second largest of 100: a local 99th percentile; the largest alone lets a single odd
#: neighbour, e.g. a doublet, hide the cells placed near it)
LOCAL_NEIGHBORS = 100
LOCAL_RANK = 2
#: principal components of the query's expression in which :func:`smooth_over_query` finds
#: neighbours
QUERY_PCS = 30
#: ... fitted on at most this many query cells (a random subset), then applied to all of them
QUERY_PCA_CELLS = 20_000


def dense_chunk(X, start: int, stop: int) -> np.ndarray:
    block = X[start:stop]
    block = block.toarray() if sparse.issparse(block) else np.asarray(block)
    return block.astype(np.float32)


def _comparable(x: torch.Tensor, profiles: bool, likelihood: str) -> torch.Tensor:
    """Values on which candidates are compared: as they are (mse), log1p of CP10k (nb)."""
    if likelihood == "mse":
        return x
    share = x if profiles else x / x.sum(1, keepdim=True).clamp_min(1.0)
    return torch.log1p(1e4 * share)


@torch.no_grad()
def _best_candidates(x: torch.Tensor, cand: torch.Tensor, k: int, likelihood: str) -> torch.Tensor:
    d = pairwise_sq_dists(_comparable(x, False, likelihood), cand)
    # stable tie-break: the lowest index first
    return torch.topk(-d, min(k, cand.shape[0]), dim=1, sorted=True).indices


def place(
    decoder: Decoder,
    X,
    candidates: np.ndarray,
    *,
    starts: np.ndarray | None = None,
    n_starts: int = 4,
    steps: int = 100,
    learning_rate: float = 0.05,
    chunk_size: int = 2048,
    device: str | torch.device = "cpu",
    random_state: int = 0,
) -> np.ndarray:
    """Coordinates of each row of ``X``: of its starts, the optimum with the lowest
    reconstruction error (:func:`cell_error`).

    ``X`` (cells x the decoder's genes, dense or sparse) is processed in chunks of cells; with
    ``starts`` (one coordinate per cell) those replace the candidate search.
    """
    likelihood = decoder.config["likelihood"]
    decoder = decoder.to(device).eval()
    was = [p.requires_grad for p in decoder.parameters()]
    decoder.requires_grad_(False)
    cand = torch.as_tensor(candidates, dtype=torch.float32)
    cand_values = _comparable(torch.as_tensor(decoder.decode(candidates)), True, likelihood).to(
        device
    )
    n, d = X.shape[0], cand.shape[1]
    coords = np.empty((n, d), dtype=np.float32)
    try:
        for s in range(0, n, chunk_size):
            x = torch.as_tensor(dense_chunk(X, s, s + chunk_size))
            c = len(x)
            if starts is None:
                top = _best_candidates(x.to(device), cand_values, n_starts, likelihood).cpu()
                k = top.shape[1]
                init = cand[top.reshape(-1)]
            else:
                k = 1
                init = torch.as_tensor(starts[s : s + c], dtype=torch.float32)
            targets = x.repeat_interleave(k, dim=0)
            table = GenerativeMap(CoordinateTable(init.numpy()), decoder)
            trainer = Trainer(table, device=device, random_state=random_state)
            trainer.optimize(
                Reconstruction(targets, likelihood),
                CellSampler(c * k, c * k),
                n_epochs=steps,
                learning_rate=learning_rate,
                phase="place",
                parameters=[table.encoder.coords],
            )
            with torch.no_grad():
                z = table.encoder.coords
                err = cell_error(
                    decoder(z), targets.to(z.device), likelihood, decoder.log_theta
                ).reshape(c, k)
                best = err.argmin(1)
                rows = torch.arange(c, device=z.device) * k + best
                coords[s : s + c] = z[rows].cpu().numpy()
    finally:
        for p, r in zip(decoder.parameters(), was, strict=True):
            p.requires_grad_(r)
    return coords


@torch.no_grad()
def gene_errors(
    decoder: Decoder, X, coords: np.ndarray, chunk_size: int = 2048
) -> Iterator[tuple[int, np.ndarray]]:
    """Per-gene errors (:func:`cell_error`, ``reduce=False``) of ``X`` decoded at ``coords``.

    Yields ``(start, errors)`` chunk by chunk, ``errors`` of shape ``(chunk, n_genes)``: squared
    residuals (mse) or negative-binomial negative log-likelihoods (nb).
    """
    decoder = decoder.eval()
    device = next(decoder.parameters()).device
    likelihood = decoder.config["likelihood"]
    for s in range(0, X.shape[0], chunk_size):
        x = torch.as_tensor(dense_chunk(X, s, s + chunk_size), device=device)
        z = torch.as_tensor(coords[s : s + chunk_size], dtype=torch.float32, device=device)
        e = cell_error(decoder(z), x, likelihood, decoder.log_theta, reduce=False)
        yield s, e.double().cpu().numpy()


def gene_thresholds(errors: np.ndarray, quantile: float = NOVELTY_QUANTILE) -> np.ndarray:
    """Each gene's ``quantile`` of ``errors`` (reference cells x genes, :func:`gene_errors`)."""
    return np.quantile(errors, quantile, axis=0)


def tail_errors(errors: np.ndarray, thresholds: np.ndarray) -> sparse.csr_matrix:
    """The reference errors above their gene's threshold, others 0 (sparse; about 0.5% of them).

    Only these matter for :func:`local_thresholds`, so the model stores this, not every error.
    """
    return sparse.csr_matrix(np.where(errors > thresholds[None, :], errors, 0.0))


def _nearest_reference(
    coords: np.ndarray, reference_coords: np.ndarray, *, leave_out_self: bool = False
) -> np.ndarray:
    """Indices of the ``LOCAL_NEIGHBORS`` reference positions nearest to each of ``coords`` (all
    of them if fewer); ``leave_out_self``: ``coords`` are those positions, each skips itself."""
    skip = int(leave_out_self)
    k = max(min(LOCAL_NEIGHBORS, len(reference_coords) - skip), 1)
    nn = NearestNeighbors(n_neighbors=min(k + skip, len(reference_coords))).fit(reference_coords)
    return nn.kneighbors(coords, return_distance=False)[:, skip:]


def local_thresholds(
    coords: np.ndarray,
    reference_coords: np.ndarray,
    tails: sparse.csr_matrix,
    thresholds: np.ndarray,
    *,
    leave_out_self: bool = False,
) -> np.ndarray:
    """Per cell and gene: ``max(t_g, LOCAL_RANK-th largest error on g among nearby reference cells)``.

    ``t_g`` is the gene's global threshold (:func:`gene_thresholds`); the nearby cells are the
    ``LOCAL_NEIGHBORS`` reference positions nearest to each of ``coords`` (``tails`` from
    :func:`tail_errors`). ``leave_out_self``: ``coords`` are the reference positions themselves;
    each skips itself. Returns ``(len(coords), n_genes)``.
    """
    ind = _nearest_reference(coords, reference_coords, leave_out_self=leave_out_self)
    k = ind.shape[1]
    n_genes = len(thresholds)
    out = np.repeat(np.asarray(thresholds, dtype=np.float64)[None, :], len(coords), axis=0)
    near = sparse.csr_matrix(tails)[ind.ravel()].tocoo()
    # every stored error exceeds t_g: where a gene has at least LOCAL_RANK of them among the
    # cell's neighbours, the LOCAL_RANK-th largest is the threshold
    key = (near.row // k).astype(np.int64) * n_genes + near.col
    order = np.lexsort((-near.data, key))
    key, values = key[order], near.data[order]
    first = np.r_[True, key[1:] != key[:-1]]
    rank = np.arange(len(key)) - np.maximum.accumulate(np.where(first, np.arange(len(key)), 0))
    hit = rank == LOCAL_RANK - 1
    out.reshape(-1)[key[hit]] = values[hit]
    return out


def excess(
    decoder: Decoder,
    X,
    coords: np.ndarray,
    thresholds: np.ndarray,
    reference_coords: np.ndarray | None = None,
    tails: sparse.csr_matrix | None = None,
) -> np.ndarray:
    """``sum_g max(e_g - t_g, 0)`` per cell: error beyond what reference cells show, gene by gene.

    ``e_g`` is the cell's error on gene g at ``coords`` (:func:`gene_errors`). ``t_g`` is the
    gene's global threshold (:func:`gene_thresholds`) or, given the reference's positions and
    ``tails``, the cell's local threshold (:func:`local_thresholds`). A mean over all genes dilutes
    a few marker genes that the map cannot produce; this sum keeps them, and ignores genes whose
    error is ordinary.
    """
    out = np.empty(X.shape[0], dtype=np.float64)
    for s, e in gene_errors(decoder, X, coords):
        t = thresholds
        if tails is not None:
            t = local_thresholds(coords[s : s + len(e)], reference_coords, tails, thresholds)
        out[s : s + len(e)] = excess_of(e, t)
    return out


def excess_of(errors: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """:func:`excess` of per-gene errors already computed (cells x genes); ``thresholds`` per gene
    or per cell and gene."""
    t = thresholds if np.ndim(thresholds) == 2 else np.asarray(thresholds)[None, :]
    return np.maximum(errors - t, 0.0).sum(1)


def novelty(excess_scores: np.ndarray, reference_excess: np.ndarray) -> np.ndarray:
    """``log(excess + floor)`` z-scored against the reference cells' own values.

    ``floor`` is 1% of the reference cells' mean excess (it keeps cells without any excess
    finite). 0 is a typical reference cell; high values mean the map explains the cell worse,
    on some genes, than it explains any of the reference cells where the cell lies.
    """
    reference_excess = np.asarray(reference_excess, dtype=np.float64)
    floor = 0.01 * float(reference_excess.mean()) + 1e-12
    ref = np.log(reference_excess + floor)
    values = np.log(np.asarray(excess_scores, dtype=np.float64) + floor)
    return (values - ref.mean()) / (ref.std() + 1e-12)


def local_level(
    coords: np.ndarray, reference_coords: np.ndarray, reference_scores: np.ndarray
) -> np.ndarray:
    """Mean of ``reference_scores`` over the ``LOCAL_NEIGHBORS`` reference positions nearest to
    each of ``coords``: how well the map explains its own cells where each cell lies."""
    ind = _nearest_reference(coords, reference_coords)
    return np.asarray(reference_scores, dtype=np.float64)[ind].mean(1)


def _log_profiles(X, likelihood: str):
    """What the query's expression neighbours are found in: ``X`` as it is (mse: already
    log-normalised), log1p of counts per 10,000 (nb: raw counts). Sparse stays sparse."""
    if likelihood == "mse":
        return X
    if sparse.issparse(X):
        return log_cp10k(sparse.csr_matrix(X, dtype=np.float64))
    return log_cp10k(np.asarray(X, dtype=np.float64))


def smooth_over_query(
    scores: np.ndarray, X, likelihood: str, n_neighbors: int, *, random_state: int = 0
) -> np.ndarray:
    """Each cell's mean score over itself and its ``n_neighbors - 1`` nearest query cells.

    Neighbours are found in the first :data:`QUERY_PCS` principal components of the query's own
    expression (the decoder's genes; :func:`_log_profiles`), fitted on up to
    :data:`QUERY_PCA_CELLS` of its cells. A cell type missing from the map
    forms a group of cells that are all poorly explained, whereas a known cell that the map
    explains badly (a doublet, a stressed or cycling cell, a member of a population the reference
    barely has) mostly has neighbours that the map explains well; the mean keeps the first and
    damps the second. ``n_neighbors=1`` (or a query of one cell) returns ``scores`` unchanged.
    """
    scores = np.asarray(scores, dtype=np.float64)
    k = min(int(n_neighbors), len(scores)) - 1
    if k < 1:
        return scores.copy()
    values = _log_profiles(X, likelihood)
    n = values.shape[0]
    fit = values
    if n > QUERY_PCA_CELLS:
        rng = np.random.default_rng(random_state)
        fit = values[np.sort(rng.choice(n, QUERY_PCA_CELLS, replace=False))]
    mean, comps = fit_pca(fit, QUERY_PCS, random_state=random_state)
    pcs = InputLayer("genes", None, mean, comps, 1.0).transform(values)  # chunked, float64 sums
    idx, _ = knn(pcs, k, random_state=random_state)
    return (scores + scores[idx].sum(1)) / (k + 1)
