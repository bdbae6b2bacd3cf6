"""Neighbour graphs and affinities on the whole data set (never recomputed per minibatch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from anndata import AnnData
from scanpy import logging as logg
from scipy import sparse

__all__ = [
    "Graph",
    "knn",
    "knn_from_scanpy",
    "perplexity_affinities",
    "tsne_n_neighbors",
    "umap_affinities",
    "neighbor_graph",
]

EXACT_KNN_MAX_CELLS = 30_000


def knn(X: np.ndarray, k: int, *, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of every row (self excluded): ``(indices, distances)``, both n x k.

    Exact blockwise search for up to 30,000 cells, pynndescent (as in `sc.pp.neighbors`) above.
    """
    n = X.shape[0]
    if k >= n:
        raise ValueError(f"Need more cells than neighbours: {n} cells, {k} neighbours requested.")
    if n <= EXACT_KNN_MAX_CELLS:
        Xt = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32))
        sq = (Xt * Xt).sum(1)
        idx = np.empty((n, k), dtype=np.int64)
        dist = np.empty((n, k), dtype=np.float32)
        block = max(1, 2**24 // n)
        with torch.no_grad():
            for s in range(0, n, block):
                d2 = sq[s : s + block, None] + sq[None, :] - 2.0 * Xt[s : s + block] @ Xt.T
                rows = torch.arange(s, min(s + block, n))
                d2[rows - s, rows] = float("inf")
                vals, ind = torch.topk(d2, k, dim=1, largest=False, sorted=True)
                idx[s : s + block] = ind.numpy()
                # numpy's sqrt is correctly rounded, hence monotone: torch's vectorised sqrt
                # was seen to break the order of sorted values (differently from run to run)
                dist[s : s + block] = np.sqrt(np.maximum(vals.numpy().astype(np.float64), 0))
        return idx, dist
    from pynndescent import NNDescent

    index = NNDescent(
        X,
        n_neighbors=k + 1,
        metric="euclidean",
        random_state=random_state,
        low_memory=True,
        verbose=False,
    )
    ind, d = index.neighbor_graph
    del index  # its own copy of the graph and its search trees
    if (ind[:, 0] == np.arange(n)).all():  # the usual case: self comes first
        return ind[:, 1:].astype(np.int64), d[:, 1:].astype(np.float32)
    # else drop self wherever it is and keep k others: a stable sort of the "is self" flags
    # moves the other neighbours, in their order, to the front of every row
    order = np.argsort(ind == np.arange(n)[:, None], axis=1, kind="stable")[:, :k]
    ind = np.take_along_axis(ind, order, axis=1)
    d = np.take_along_axis(d, order, axis=1)
    return ind.astype(np.int64), d.astype(np.float32)


def knn_from_scanpy(adata: AnnData, k: int, use_rep: str | None, n_pcs: int | None):
    """Reuse ``sc.pp.neighbors`` results when they hold >= k euclidean neighbours of the same input."""
    if "neighbors" not in adata.uns or "distances" not in adata.obsp:
        return None
    params = adata.uns["neighbors"].get("params", {})
    if params.get("metric", "euclidean") != "euclidean":
        return None
    rep = params.get("use_rep", "X_pca" if adata.n_vars > 50 else "X")
    if (use_rep or "X_pca") != rep or (n_pcs is not None and params.get("n_pcs", n_pcs) != n_pcs):
        return None
    D = sparse.csr_matrix(adata.obsp["distances"])
    counts = np.diff(D.indptr)
    if counts.min() < k:
        return None
    # the usual case: every row holds the same number of neighbours -> one vectorised sort
    if counts.max() == counts.min():
        data = D.data.reshape(D.shape[0], -1)
        order = np.argsort(data, axis=1, kind="stable")[:, :k]
        idx = np.take_along_axis(D.indices.reshape(D.shape[0], -1), order, axis=1)
        return idx.astype(np.int64), np.take_along_axis(data, order, axis=1).astype(np.float32)
    idx = np.empty((D.shape[0], k), dtype=np.int64)
    dist = np.empty((D.shape[0], k), dtype=np.float32)
    for i in range(D.shape[0]):
        lo, hi = D.indptr[i], D.indptr[i + 1]
        order = np.argsort(D.data[lo:hi], kind="stable")[:k]
        idx[i] = D.indices[lo:hi][order]
        dist[i] = D.data[lo:hi][order]
    return idx, dist


def _bisect(fn, target, lo, hi, n_iter=64):
    """Vectorised bisection for increasing fn: finds x with fn(x) = target row-wise."""
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        over = fn(mid) > target
        hi = np.where(over, mid, hi)
        lo = np.where(over, lo, mid)
    return 0.5 * (lo + hi)


def _row_normalised_sq(dist: np.ndarray) -> np.ndarray:
    """Squared distances shifted to a row minimum of 0 and divided by the row mean (>= 0, O(1))."""
    d2 = dist.astype(np.float64) ** 2
    d2 = d2 - d2.min(axis=1, keepdims=True)
    return d2 / (d2.mean(axis=1, keepdims=True) + 1e-12)


ROW_BLOCK = 65_536


def _in_row_blocks(fn, dist: np.ndarray) -> np.ndarray:
    """``fn`` applied to blocks of rows (its float64 temporaries stay a block's size)."""
    out = np.empty(dist.shape, dtype=np.float32)
    for s in range(0, dist.shape[0], ROW_BLOCK):
        out[s : s + ROW_BLOCK] = fn(dist[s : s + ROW_BLOCK])
    return out


def perplexity_affinities(dist: np.ndarray, perplexity: float) -> np.ndarray:
    """Conditional t-SNE affinities p_{j|i} on a kNN graph, each row at the given perplexity.

    Shifting and rescaling a row's squared distances changes only its precision beta, so the
    calibration runs on normalised distances, where exp() can neither overflow nor vanish.
    """
    target = np.log(min(perplexity, dist.shape[1]))

    def block(dist):
        d2 = _row_normalised_sq(dist)

        def entropy(log_beta):
            beta = np.exp(log_beta)[:, None]
            p = np.exp(-beta * d2)
            z = p.sum(1)  # >= 1: the nearest neighbour has d2 = 0
            return np.log(z) + (beta[:, 0] * (p * d2).sum(1)) / z  # H = log Z + beta <d2>

        n = d2.shape[0]
        # entropy falls as beta grows: bisect -entropy upwards
        log_beta = _bisect(lambda b: -entropy(b), -target, np.full(n, -20.0), np.full(n, 20.0), 80)
        p = np.exp(-np.exp(log_beta)[:, None] * d2)
        return p / p.sum(1, keepdims=True)

    return _in_row_blocks(block, dist)


def umap_affinities(dist: np.ndarray) -> np.ndarray:
    """UMAP fuzzy memberships exp(-(d - rho)/sigma), each row summing to log2(k)."""
    target = np.log2(dist.shape[1])

    def block(dist):
        d = dist.astype(np.float64)
        excess = d - d.min(axis=1, keepdims=True)
        excess = excess / (excess.mean(axis=1, keepdims=True) + 1e-12)
        n = d.shape[0]
        log_sigma = _bisect(
            lambda s: np.exp(-excess / np.exp(s)[:, None]).sum(1),
            target,
            np.full(n, -20.0),
            np.full(n, 20.0),
            80,
        )
        return np.exp(-excess / np.exp(log_sigma)[:, None])

    return _in_row_blocks(block, dist)


@dataclass
class Graph:
    """Undirected weighted edge list ``(rows < cols)`` over ``n`` cells, weights summing to 1."""

    n: int
    rows: np.ndarray
    cols: np.ndarray
    weights: np.ndarray
    knn_indices: np.ndarray
    knn_distances: np.ndarray

    def to_sparse(self) -> sparse.csr_matrix:
        W = sparse.coo_matrix((self.weights, (self.rows, self.cols)), shape=(self.n, self.n))
        return (W + W.T).tocsr()


def _symmetrize(idx: np.ndarray, w: np.ndarray, mode: str) -> sparse.csr_matrix:
    n, k = idx.shape
    # built directly as CSR (k entries per row): no n*k row-index array
    W = sparse.csr_matrix(
        (w.ravel(), idx.ravel().astype(np.int32), np.arange(0, n * k + 1, k, dtype=np.int64)),
        shape=(n, n),
    )
    W.sum_duplicates()
    if mode == "tsne":
        return (W + W.T) / 2
    # UMAP fuzzy union: a + b - ab
    prod = W.multiply(W.T)
    return W + W.T - prod


#: neighbours per unit of perplexity in a t-SNE graph (openTSNE and FIt-SNE take 3): with
#: perplexity 30, neighbours 61-90 held 2.7-4.2 % of a row's affinity on the five small sets of
#: ``benchmarks/maps.py``; at 70,000 cells 60 neighbours cut the graph stage from 56 s to 40 s
#: (one thread) at the same map quality over three seeds (``docs/methods/ardr.md``)
TSNE_NEIGHBORS_PER_PERPLEXITY = 2


def tsne_n_neighbors(perplexity: float) -> int:
    """Neighbours per cell of a t-SNE graph at ``perplexity``."""
    return int(np.ceil(TSNE_NEIGHBORS_PER_PERPLEXITY * perplexity))


def neighbor_graph(
    X: np.ndarray,
    *,
    affinity: str,
    perplexity: float = 30.0,
    n_neighbors: int = 15,
    adata: AnnData | None = None,
    use_rep: str | None = None,
    n_pcs: int | None = None,
    random_state: int = 0,
) -> Graph:
    """The kNN graph of the features with t-SNE (``'tsne'``), UMAP (``'umap'``) or LLE (``'lle'``,
    the positive part of the reconstruction weights, see :mod:`sclens._core.lle`) affinities."""
    k = min(tsne_n_neighbors(perplexity), X.shape[0] - 1) if affinity == "tsne" else n_neighbors
    found = knn_from_scanpy(adata, k, use_rep, n_pcs) if adata is not None else None
    start = logg.info(
        f"computing {k}-nearest-neighbour graph"
        + (" (reusing .obsp['distances'])" if found else "")
    )
    idx, dist = found if found is not None else knn(X, k, random_state=random_state)
    if affinity == "tsne":
        w = perplexity_affinities(dist, perplexity)
    elif affinity == "umap":
        w = umap_affinities(dist)
    elif affinity == "lle":
        from .lle import lle_affinities, reconstruction_weights

        w = lle_affinities(reconstruction_weights(X, idx))
    else:
        raise ValueError(f"affinity must be 'tsne', 'umap' or 'lle', got {affinity!r}.")
    W = sparse.triu(_symmetrize(idx, w, "umap" if affinity == "umap" else "tsne"), k=1).tocoo()
    weights = W.data.astype(np.float64)
    logg.info("    finished", time=start)
    # int32 cell indices (n < 2**31): half the memory of the edge list at a million cells
    return Graph(
        n=X.shape[0],
        rows=W.row.astype(np.int32, copy=False),
        cols=W.col.astype(np.int32, copy=False),
        weights=weights / weights.sum(),
        knn_indices=idx,
        knn_distances=dist,
    )
