"""Forces of a t-SNE / UMAP map.

:func:`graph_forces` splits the negative gradient of :class:`~.objectives.AttractionRepulsion`
on each cell into the attraction of its graph neighbours and the repulsion of all other cells,
summed by the group each source cell belongs to. PCA and classical MDS as forces:
:mod:`sclens._core.gram`.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["graph_forces"]


def _kernel_parts(d2: np.ndarray, a: float, b: float, eps: float):
    """``w = 1 / (1 + a d^{2b})`` and ``g = 2 a b d^{2(b-1)}`` (so dw/dy_i = -w^2 g (y_i - y_j))."""
    if b == 1.0:
        return 1.0 / (1.0 + a * d2), np.full_like(d2, 2.0 * a)
    d2 = np.maximum(d2, eps)
    return 1.0 / (1.0 + a * d2**b), 2.0 * a * b * d2 ** (b - 1.0)


def graph_forces(
    Y: np.ndarray,
    P: sparse.spmatrix,
    codes: np.ndarray,
    targets: np.ndarray,
    *,
    normalization: float,
    a: float = 1.0,
    b: float = 1.0,
    exaggeration: float = 1.0,
    negative_rate: float = 5.0,
    eps: float = 1e-4,
    max_sources: int = 20_000,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean attraction and repulsion on the ``targets`` cells from each group of source cells.

    For the loss ``exaggeration * sum_ij p_ij (-log w_ij) + normalization * log(mean w)
    + (1 - normalization) * negative_rate * mean(-log(1 - w))`` (the expectation of
    :class:`~.objectives.AttractionRepulsion` over its samples), the force on cell i is minus its
    gradient: attraction ``exaggeration * p_ij w_ij g_ij (y_j - y_i)`` from graph neighbours j and
    repulsion ``(2 normalization / Z + 2 (1 - normalization) negative_rate / (N (1 - w_ij))) w_ij^2
    g_ij (y_i - y_j)`` from every other cell (``Z`` the sum of all similarities, ``N`` the number of
    ordered pairs). Above ``max_sources`` cells the repulsion is estimated on a random subset.

    Returns ``(attraction, repulsion)``, each ``(n_groups, n_components)``: the mean over the
    target cells of the force each group's cells exert (``codes`` in ``0..n_groups-1``).
    """
    Y = np.asarray(Y, dtype=np.float64)
    n, k = Y.shape
    n_groups = int(codes.max()) + 1
    targets = np.asarray(targets, dtype=np.int64)
    P = sparse.csr_matrix(P)
    rng = np.random.default_rng(random_state)
    src = np.arange(n) if n <= max_sources else np.sort(rng.choice(n, max_sources, replace=False))
    weight = n / len(src)

    # normalisation of the t-SNE repulsion: Z = sum over ordered pairs i != j of w_ij
    Z = 0.0
    for s in range(0, len(src), 2048):
        blk = src[s : s + 2048]
        d2 = ((Y[blk, None, :] - Y[None, src, :]) ** 2).sum(-1)
        w, _ = _kernel_parts(d2, a, b, eps)
        w[blk[:, None] == src[None, :]] = 0.0
        Z += w.sum() * weight * weight
    N = n * (n - 1.0)

    attraction = np.zeros((n_groups, k))
    repulsion = np.zeros((n_groups, k))
    Pt = P[targets].tocoo()
    i, j = targets[Pt.row], Pt.col
    d2 = ((Y[i] - Y[j]) ** 2).sum(1)
    w, g = _kernel_parts(d2, a, b, eps)
    f = exaggeration * Pt.data * w * g
    np.add.at(attraction, codes[j], f[:, None] * (Y[j] - Y[i]))
    for s in range(0, len(targets), 512):
        blk = targets[s : s + 512]
        diff = Y[blk, None, :] - Y[None, src, :]  # y_i - y_j
        d2 = (diff**2).sum(-1)
        w, g = _kernel_parts(d2, a, b, eps)
        coef = 2.0 * normalization / Z + 2.0 * (1.0 - normalization) * negative_rate / (
            N * (1.0 - w + eps)
        )
        f = coef * w * w * g * weight
        f[blk[:, None] == src[None, :]] = 0.0
        per_src = np.einsum("ts,tsk->sk", f, diff)
        np.add.at(repulsion, codes[src], per_src)
    m = max(len(targets), 1)
    return attraction / m, repulsion / m
