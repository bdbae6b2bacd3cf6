"""Choosing the number of clusters from the spectrum of a graph Laplacian on the map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.linalg import eigh
from scipy.sparse.csgraph import laplacian
from sklearn.neighbors import NearestNeighbors

from .graph import knn

__all__ = [
    "mutual_near_pairs",
    "SpectralResult",
    "spectral_clusters",
    "merge_clusters",
    "feature_communities",
    "snap_to_communities",
    "pseudo_labels",
]

MERGE_NEIGHBORS = 30  # neighbours per cell in the feature graph that decides merges
SNAP_NEIGHBORS = 14  # as sc.pp.neighbors' default 15, which counts the cell itself


def mutual_near_pairs(idx: np.ndarray) -> np.ndarray:
    """Near pairs of a kNN graph: mutual neighbours, plus each cell's nearest one if it has none.

    Returns an ``(m, 2)`` array of cell indices, each unordered pair once.
    """
    n, k = idx.shape
    rows = np.repeat(np.arange(n), k)
    A = sparse.csr_matrix((np.ones(n * k, dtype=np.int8), (rows, idx.ravel())), shape=(n, n))
    M = A.multiply(A.T).tocoo()
    pairs = np.stack([M.row, M.col], 1)
    lonely = np.setdiff1d(np.arange(n), pairs[:, 0])
    if len(lonely):
        pairs = np.concatenate([pairs, np.stack([lonely, idx[lonely, 0]], 1)])
    return np.unique(np.sort(pairs, axis=1), axis=0)


@dataclass
class SpectralResult:
    n_clusters: int
    eigenvalues: np.ndarray
    threshold: float
    landmarks: np.ndarray
    labels: np.ndarray  # of the landmarks


def spectral_clusters(
    Z: np.ndarray,
    *,
    resolution: float = 1.0,
    n_clusters: int | None = None,
    threshold: float = 0.005,
    max_clusters: int = 40,
    scale_neighbors: int = 10,
    n_landmarks: int = 2000,
    random_state: int = 0,
) -> SpectralResult:
    """Count clusters on map coordinates by the near-zero eigenvalues of a graph Laplacian.

    On up to ``n_landmarks`` sampled cells, the affinity is the Gaussian
    ``exp(-d_ij^2 / (sigma_i sigma_j))`` with a local width ``sigma_i = resolution * (distance to
    the scale_neighbors-th neighbour)``: near pairs sit well inside that width, so groups of cells
    that the map keeps apart give (almost) disconnected blocks. The eigenvalues of the symmetric
    normalised Laplacian below ``threshold`` count K (unless ``n_clusters`` is given), at most
    ``max_clusters``. The landmarks are then labelled by k-means with K centres on the map
    coordinates (measured on pancreas and PBMC maps: closer to the cell types than k-means on
    the spectral coordinates).
    """
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(random_state)
    n = len(Z)
    landmarks = np.sort(rng.choice(n, size=min(n, n_landmarks), replace=False))
    Zl = Z[landmarks].astype(np.float64)
    D2 = np.maximum(((Zl[:, None, :] - Zl[None, :, :]) ** 2).sum(-1), 0)
    k = min(scale_neighbors, len(Zl) - 1)
    sigma = resolution * np.sqrt(np.partition(D2, k, axis=1)[:, k]) + 1e-12
    W = np.exp(-D2 / (sigma[:, None] * sigma[None, :]))
    np.fill_diagonal(W, 0)
    L = laplacian(W, normed=True)
    m = min(max_clusters + 1, len(L))
    evals = np.clip(eigh(L, eigvals_only=True, subset_by_index=[0, m - 1]), 0, None)
    K = int(n_clusters) if n_clusters else int(np.clip((evals < threshold).sum(), 1, max_clusters))
    labels = (
        KMeans(K, n_init=10, random_state=random_state).fit_predict(Zl)
        if K > 1
        else np.zeros(len(Zl), dtype=int)
    )
    return SpectralResult(K, evals, threshold, landmarks, labels)


def merge_clusters(
    idx: np.ndarray, labels: np.ndarray, threshold: float
) -> tuple[np.ndarray, list[tuple[int, int, float]]]:
    """Join clusters that the feature kNN graph ``idx`` keeps connected.

    With ``e_ab`` the number of (symmetrised) kNN edges between clusters a and b and ``vol_a``
    the number of edge ends in a, the connectivity is ``e_ab / max(vol_a, vol_b)``: the share of
    the larger cluster's edges that lead into the other. Two pieces of one population cut apart
    on the map share many edges; a small distinct group attached to a big one does not, whatever
    its own share. Clusters linked by a chain of pairs whose connectivity is at least
    ``threshold`` (and above 0) are joined. Connectivities are those of the input clusters, not
    recomputed after each join, so the result does not depend on the order of joins (a third
    piece of a population is not held to the volume of the other two already joined).

    Returns labels ``0..K'-1`` (in the order of each group's smallest input label) and the joins
    as ``(a, b, connectivity)`` in terms of the input labels: the strongest links that connect
    each group (a maximum spanning forest), one per join, strongest first.
    """
    n, k = idx.shape
    rows = np.repeat(np.arange(n), k)
    A = sparse.csr_matrix((np.ones(n * k), (rows, idx.ravel())), shape=(n, n))
    A = ((A + A.T) > 0).astype(np.float64)
    labels = np.asarray(labels)
    K = int(labels.max()) + 1
    G = sparse.csr_matrix((np.ones(n), (np.arange(n), labels)), shape=(n, K))
    E = (G.T @ A @ G).toarray()
    vol = E.sum(1)
    C = np.triu(E / np.maximum(np.maximum(vol[:, None], vol[None, :]), 1), 1)
    a, b = np.nonzero((C >= threshold) & (C > 0))
    order = np.lexsort((b, a, -C[a, b]))  # strongest first; ties by label
    root = np.arange(K)

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    merges = []
    for i, j in zip(a[order], b[order], strict=True):
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            root[max(ri, rj)] = min(ri, rj)
            merges.append((int(i), int(j), float(C[i, j])))
    groups = np.array([find(i) for i in range(K)])
    return np.unique(groups[labels], return_inverse=True)[1], merges


def feature_communities(
    idx: np.ndarray, dist: np.ndarray, *, resolution: float = 1.0, random_state: int = 0
) -> np.ndarray:
    """Leiden communities (modularity, igraph) of a kNN graph with UMAP affinities, as
    ``sc.pp.neighbors`` + ``sc.tl.leiden(flavor='igraph')`` build them: one label per cell."""
    import random

    import igraph

    from .graph import _symmetrize, umap_affinities

    W = sparse.triu(_symmetrize(idx, umap_affinities(dist), "umap"), k=1).tocoo()
    g = igraph.Graph(n=len(idx), edges=np.stack([W.row, W.col], 1).tolist())
    try:
        igraph.set_random_number_generator(random.Random(random_state))
        part = g.community_leiden(
            objective_function="modularity",
            weights=W.data.tolist(),
            resolution=resolution,
            n_iterations=2,
        )
    finally:
        igraph.set_random_number_generator(random)
    return np.asarray(part.membership)


def snap_to_communities(labels: np.ndarray, communities: np.ndarray) -> np.ndarray:
    """Each community of the feature graph takes the cluster most of its cells have in
    ``labels``: the clusters' boundaries follow the feature graph, their grouping the map.
    Clusters that no community carries vanish. Returns labels ``0..K'-1`` in the order of the
    input labels (ties: the smallest label)."""
    labels = np.asarray(labels)
    n_comm, K = int(communities.max()) + 1, int(labels.max()) + 1
    counts = sparse.csr_matrix(
        (np.ones(len(labels)), (communities, labels)), shape=(n_comm, K)
    ).toarray()
    snapped = counts.argmax(1)[communities]
    return np.unique(snapped, return_inverse=True)[1]


def pseudo_labels(
    Z: np.ndarray,
    features: np.ndarray,
    *,
    n_clusters: int | None,
    resolution: float,
    eigen_threshold: float,
    merge_threshold: float | None,
    max_clusters: int,
    snap: bool,
    random_state: int,
):
    """DEN's K and pseudo-labels from the Siamese map ``Z``: landmark spectral clusters, each
    cell labelled by its nearest landmark, then (K found, not given) clusters joined by the
    feature graph's connectivity and, with ``snap``, snapped to its communities.

    Returns ``(spectrum, labels, merges)``.
    """
    spec = spectral_clusters(
        Z,
        resolution=resolution,
        n_clusters=n_clusters,
        threshold=eigen_threshold,
        max_clusters=max_clusters,
        random_state=random_state,
    )
    nearest = NearestNeighbors(n_neighbors=1).fit(Z[spec.landmarks])
    pseudo = spec.labels[nearest.kneighbors(Z, return_distance=False)[:, 0]]
    merges = []
    if n_clusters is None and (merge_threshold or snap):
        graph, dist = knn(features, min(MERGE_NEIGHBORS, len(Z) - 1), random_state=random_state)
    if n_clusters is None and merge_threshold:
        pseudo, merges = merge_clusters(graph, pseudo, merge_threshold)
    if n_clusters is None and snap:
        k = min(SNAP_NEIGHBORS, graph.shape[1])
        communities = feature_communities(graph[:, :k], dist[:, :k], random_state=random_state)
        pseudo = snap_to_communities(pseudo, communities)
    return spec, pseudo, merges
