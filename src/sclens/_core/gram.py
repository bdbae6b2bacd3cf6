"""PCA and classical MDS as attraction-repulsion forces.

With ``C`` the centring matrix, ``K = C X X^T C`` the double-centred Gram matrix of the data
(equivalently ``K = -1/2 C D^2 C`` for a squared-distance matrix ``D^2``) and ``Y`` the map,

    L(Y) = || C (X X^T - Y Y^T) C ||_F^2 = || K - Yc Yc^T ||_F^2

is minimised exactly by the PCA (classical MDS) embedding, up to a rotation. Gradient descent
on L is a pairwise force update: with ``F = 2 C (D_X^2 - D_Y^2) C = -4 (K - Yc Yc^T)``,

    y_j <- y_j + lr * sum_i F_ij (y_j - y_i)    (= y_j - lr * dL/dy_j)

``F_ij > 0`` pushes ``j`` away from ``i`` (the pair is closer in the map than in the data, after
double centring), ``F_ij < 0`` pulls them together. :func:`pca_forces` gives F; the objective
:class:`GramMismatch` computes L without forming n x n matrices when the data are features
(``||Xc^T Xc||^2 - 2 ||Xc^T Yc||^2 + ||Yc^T Yc||^2``, O(n d k)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .engine import CellSampler
from .objectives import Loss, pairwise_sq_dists
from .recipe import Phase, auto_epochs

__all__ = [
    "METRICS",
    "GramMismatch",
    "gram_phase",
    "pca_forces",
    "double_centre",
    "principal_axes",
    "sq_dists",
    "top_eigenvalue",
]

METRICS = ("euclidean", "sqeuclidean", "cosine", "correlation")


def double_centre(M: torch.Tensor) -> torch.Tensor:
    """``C M C``: rows and columns of a square matrix shifted to mean zero."""
    M = M - M.mean(0, keepdim=True)
    return M - M.mean(1, keepdim=True)


def sq_dists(X: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """Squared pairwise distances of the rows of X (``'euclidean'``, ``'cosine'``, ``'correlation'``).

    ``'sqeuclidean'`` is squared once more, i.e. classical MDS on squared euclidean distances.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    if metric in ("cosine", "correlation"):
        if metric == "correlation":
            X = X - X.mean(1, keepdim=True)
        X = X / X.norm(dim=1, keepdim=True).clamp_min(1e-12)
        d = (1.0 - X @ X.T).clamp_min(0.0)
        return d * d
    d2 = pairwise_sq_dists(X, X)
    return d2 * d2 if metric == "sqeuclidean" else d2


def pca_forces(K: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Pairwise force magnitudes ``F = -4 (K - Yc Yc^T)`` for a double-centred target ``K``.

    ``sum_i F_ij (y_j - y_i)`` is minus the gradient of ``||K - Yc Yc^T||_F^2`` at ``y_j``.
    """
    Yc = Y - Y.mean(0, keepdim=True)
    return -4.0 * (K - Yc @ Yc.T)


@dataclass
class GramMismatch:
    """Classical MDS / PCA objective ``||C (K_X - Y Y^T) C||_F^2 / scale`` on a batch of cells.

    The target is one of

    - ``features`` (n x d) with ``metric='euclidean'``: ``K_X = X X^T`` (PCA), never formed;
    - ``features`` with another ``metric``: ``K_X = -1/2 D^2`` of the batch's distances;
    - ``gram``: a dense double-centred n x n target (classical MDS on a given distance matrix).

    On a batch ``idx`` (all cells: the exact loss; a random subset: the same loss on the pairs
    inside the batch, i.e. stochastic forces) the batch is double-centred on itself. ``scale``
    (e.g. the top eigenvalue of K) makes a dimensionless learning rate; the term ``residual`` is
    the loss relative to ``||K||_F^2`` (logged for full batches only, where it costs nothing).
    """

    features: torch.Tensor | None = None
    gram: torch.Tensor | None = None
    metric: str = "euclidean"
    scale: float = 1.0
    _const: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if (self.features is None) == (self.gram is None):
            raise ValueError("GramMismatch needs exactly one of `features` and `gram`.")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}.")

    @property
    def n(self) -> int:
        return len(self.features if self.features is not None else self.gram)

    def target_gram(self, idx: torch.Tensor) -> torch.Tensor:
        """The batch's double-centred target (dense, len(idx) x len(idx))."""
        if self.gram is not None:
            return double_centre(self.gram[idx][:, idx].double())
        X = self.features[idx].double()
        if self.metric == "euclidean":
            Xc = X - X.mean(0, keepdim=True)
            return Xc @ Xc.T
        return -0.5 * double_centre(sq_dists(X, self.metric))

    def __call__(self, encoder, batch) -> Loss:
        idx = batch["idx"]
        y = encoder(idx).double()
        Yc = y - y.mean(0, keepdim=True)
        full = len(idx) == self.n
        yty = Yc.T @ Yc
        if self.features is not None and self.metric == "euclidean":
            X = self.features[idx].double()
            Xc = X - X.mean(0, keepdim=True)
            cross = (Xc.T @ Yc).square().sum()
            const = self._const.get("xx") if full else None
            if const is None and full:
                G = Xc.T @ Xc if Xc.shape[1] <= Xc.shape[0] else Xc @ Xc.T
                const = self._const["xx"] = float(G.square().sum())
        elif full and self.gram is not None:
            # all cells: the loss does not depend on their order, so use the target as it is
            if "gram" not in self._const:
                K = double_centre(self.gram.double())
                self._const.update(gram=K, kk=float(K.square().sum()))
            y = encoder(torch.arange(self.n, device=idx.device)).double()
            Yc = y - y.mean(0, keepdim=True)
            yty = Yc.T @ Yc
            cross = (Yc * (self._const["gram"] @ Yc)).sum()
            const = self._const["kk"]
        else:
            K = self.target_gram(idx)
            cross = (Yc * (K @ Yc)).sum()
            const = float(K.square().sum())
        raw = -2.0 * cross + yty.square().sum() + (const or 0.0)
        terms = {}
        if const:
            terms["residual"] = float(raw.detach()) / const
        return Loss(raw / self.scale, terms)


def top_eigenvalue(matvec, n: int, n_iter: int = 100) -> float:
    """Largest eigenvalue of a PSD operator by deterministic power iteration (Rayleigh quotient)."""
    v = torch.linspace(1.0, 2.0, n, dtype=torch.float64)
    v /= v.norm()
    lam = 0.0
    for _ in range(n_iter):
        w = matvec(v)
        lam = float(v @ w)
        norm = w.norm()
        if norm == 0:
            return 1.0
        v = w / norm
    return max(lam, 1e-12)


def data_unit(scale: float, metric: str) -> float:
    """Factor from feature units back to the data's: the features are the data divided by
    ``scale``, so PCA / euclidean MDS maps grow by ``scale`` (``scale**2`` for squared
    distances; 1 for the scale-free cosine and correlation)."""
    return {"euclidean": scale, "sqeuclidean": scale**2}.get(metric, 1.0)


def principal_axes(Y: np.ndarray) -> np.ndarray:
    """Centre and rotate a map to its own principal axes, each axis' largest value positive."""
    Yc = Y - Y.mean(0)
    _, _, vt = np.linalg.svd(Yc, full_matrices=False)
    Z = Yc @ vt.T
    signs = np.sign(Z[np.abs(Z).argmax(0), np.arange(Z.shape[1])])
    signs[signs == 0] = 1
    return Z * signs


def _stop_when_converged(tol: float, patience: int = 10):
    """Callback: stop once the loss changed by less than ``tol`` (relative) ``patience`` times
    in a row."""
    state = {"last": None, "calm": 0}

    def callback(phase, epoch, loss, encoder):
        last, state["last"] = state["last"], loss
        if last is not None and abs(loss - last) <= tol * max(abs(last), 1e-300):
            state["calm"] += 1
        else:
            state["calm"] = 0
        return state["calm"] >= patience

    return callback


def gram_phase(
    features: np.ndarray,
    *,
    method: str,
    metric: str,
    sampled_pairs: int | None,
    parametric: bool,
    batch_size: int,
    n_epochs: int | None,
    learning_rate: float | None,
    random_state: int,
) -> tuple[Phase, dict]:
    """PCA (``method='pca'``) or classical MDS as one phase of forces, and its settings.

    The loss is scaled by the target's largest eigenvalue, so the learning rate is
    dimensionless: plain gradient descent (coordinates, all pairs) converges below 0.25 and
    stops once the loss is stable; sampled pairs and networks use Adam's or a decaying rate.
    """
    n = len(features)
    X = torch.as_tensor(features)
    metric = metric if method == "mds" else "euclidean"
    if method == "mds" and sampled_pairs is None:
        K = -0.5 * double_centre(sq_dists(X.double(), metric))
        target = dict(gram=K)
        lam = top_eigenvalue(lambda v: K @ v, n)
    else:
        target = dict(features=X, metric=metric)
        if metric == "euclidean":
            Xc = X.double() - X.double().mean(0)
            lam = top_eigenvalue(lambda v: Xc.T @ (Xc @ v), Xc.shape[1])
        else:  # estimate from one batch of the sampled target, scaled up to n cells
            sub = torch.randperm(n, generator=torch.Generator().manual_seed(random_state))
            sub = sub[: min(n, 2048)]
            Ks = -0.5 * double_centre(sq_dists(X[sub].double(), metric))
            lam = top_eigenvalue(lambda v: Ks @ v, len(sub)) * n / len(sub)
    m = n if (sampled_pairs is None and not parametric) else int(sampled_pairs or batch_size)
    m = min(m, n)
    cells = CellSampler(n, m)
    # forces grow with a batch's cells: scale by their mean count (even batches of at most m),
    # i.e. lam * (n / len(cells)) / n, so a plain gradient step on sampled pairs keeps its size
    objective = GramMismatch(**target, scale=lam / len(cells))
    exact = m == n and not parametric
    if parametric:
        lr = learning_rate or 2e-3
        n_epochs = n_epochs or auto_epochs(n, m)
        phase = Phase("forces", objective, cells, n_epochs, lr)
    else:
        lr = learning_rate or 0.125
        n_epochs = n_epochs or (1000 if exact else 100)
        phase = Phase(
            "exact" if exact else "sampled",
            objective,
            cells,
            n_epochs,
            lr,
            optimizer="sgd",
            final_lr_fraction=1.0 if exact else 0.02,
            callbacks=[_stop_when_converged(1e-9)] if exact else (),
        )
    settings = dict(
        metric=metric,
        sampled_pairs=sampled_pairs,
        top_eigenvalue=lam,
        n_epochs=n_epochs,
        learning_rate=lr,
    )
    return phase, settings
