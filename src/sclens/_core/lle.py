"""Locally linear embedding (LLE) and its attraction-repulsion form.

LLE (Roweis & Saul 2000) writes each cell as an affine combination of its k nearest neighbours,
``x_i ~ sum_j W_ij x_j`` with ``sum_j W_ij = 1`` (:func:`reconstruction_weights`), then finds
the map that the same weights reconstruct best: the ``d`` eigenvectors of
``M = (I - W)^T (I - W)`` after the constant one, with the smallest eigenvalues
(:func:`classical_lle`). Since ``M 1 = 0``,

    tr(Y^T M Y) = 1/2 sum_ij A_ij ||y_i - y_j||^2,   A = W + W^T - W^T W  (off the diagonal),

so LLE is a quadratic attraction along the kNN edges (``W + W^T``, plus signed two-hop terms
``-W^T W``), and its only repulsion is the constraint ``Y^T Y = I`` that keeps the map from
collapsing. Draganov & Dohn ("Relating tSNE and UMAP to classical dimensionality reduction")
show that a small change turns LLE into UMAP. Here the change is: keep the attraction along the
kNN edges, with the positive part of the reconstruction weights as affinities
(:func:`lle_affinities`, symmetrised), and replace the quadratic potential and the constraint
by a map kernel and sampled repulsion, i.e. run ``sl.tl.ardr``'s attraction-repulsion on them
(normalisation 0 gives a UMAP-like map, 1 a t-SNE-like one).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["reconstruction_weights", "lle_affinities", "classical_lle", "REG"]

#: Tikhonov regulariser of the local Gram matrices, relative to their trace (as in LLE's paper)
REG = 1e-3
_BLOCK = 8192


def reconstruction_weights(X: np.ndarray, idx: np.ndarray, reg: float = REG) -> np.ndarray:
    """LLE's weights: ``W[i]`` minimises ``||x_i - sum_j W_ij x_idx[i, j]||^2``, ``sum_j W_ij = 1``.

    With ``Z = X[idx[i]] - x_i`` the local Gram matrix ``G = Z Z^T`` (k x k) is regularised by
    ``reg * trace(G)`` on its diagonal (needed when k exceeds the dimension, harmless otherwise),
    and ``W[i] = G^-1 1 / (1^T G^-1 1)``. Returns an ``n x k`` array aligned with ``idx``.
    """
    n, k = idx.shape
    out = np.empty((n, k), dtype=np.float64)
    eye = np.eye(k)
    for s in range(0, n, _BLOCK):
        Z = X[idx[s : s + _BLOCK]].astype(np.float64) - X[s : s + _BLOCK, None, :]
        G = Z @ Z.transpose(0, 2, 1)
        trace = np.trace(G, axis1=1, axis2=2)
        G = G + (reg * np.where(trace > 0, trace, 1.0))[:, None, None] * eye
        w = np.linalg.solve(G, np.ones((len(G), k, 1)))[..., 0]
        out[s : s + _BLOCK] = w / w.sum(1, keepdims=True)
    return out


def lle_affinities(weights: np.ndarray) -> np.ndarray:
    """Attraction weights from LLE's: the positive part of each row, rescaled to sum 1.

    A negative reconstruction weight is LLE's way of pushing a neighbour away; the
    attraction-repulsion form leaves repulsion to its kernel, so only the positive part attracts.
    """
    w = np.clip(weights, 0.0, None)
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def classical_lle(
    idx: np.ndarray, weights: np.ndarray, n_components: int, random_state: int = 0
) -> np.ndarray:
    """LLE's embedding: eigenvectors 2..d+1 of ``(I - W)^T (I - W)``, scaled to unit variance.

    Returns ``(Y, eigenvalues)``: the eigenvalues are the reconstruction cost of each column
    (per unit norm), smallest first.

    Shift-invert Lanczos (ARPACK) just below zero, started from a seeded vector: the same seed
    gives the same map. Columns are ordered by eigenvalue and each column's largest entry is
    made positive.
    """
    from scipy.sparse.linalg import eigsh

    n, k = idx.shape
    W = sparse.csr_matrix((weights.ravel(), idx.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))
    IW = sparse.identity(n, format="csr") - W
    M = (IW.T @ IW).tocsc()
    v0 = np.random.default_rng(random_state).uniform(-1.0, 1.0, n)
    # M is singular (M 1 = 0); a shift just below 0 keeps M - sigma I positive definite
    sigma = -1e-6 * float(M.diagonal().mean())
    vals, vecs = eigsh(M, k=n_components + 1, sigma=sigma, which="LM", v0=v0, tol=1e-10)
    order = np.argsort(vals)[1:]
    Y = vecs[:, order] * np.sqrt(n)
    signs = np.sign(Y[np.abs(Y).argmax(0), np.arange(Y.shape[1])])
    signs[signs == 0] = 1
    return Y * signs, vals[order]
