"""Gene attributions of a trained network: gradients, integrated gradients, SHAP.

Every network sclens trains reads genes through a frozen linear layer,
``features = (x - mean) @ loadings / scale``, so a function ``F`` of the features is a function of
the genes, ``F(W x + c)`` with ``W = loadings.T / scale``. Gradients with respect to genes are
therefore ``dF/dfeatures @ W``, and a straight path between two expression profiles is a straight
path between their features: saliency and integrated gradients are computed in the small feature
space and mapped back to genes exactly. SHAP (DeepExplainer) runs on the full gene-space module.

A *target* turns the network's output into one number per group (see :class:`Targets`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from torch import nn

from .data import InputLayer
from .networks import Network

__all__ = [
    "Targets",
    "input_weights",
    "dense_rows",
    "gradients",
    "integrated_gradients",
    "deep_shap",
]


@dataclass
class Targets:
    """One scalar output per group, built from Linear and ReLU modules only.

    Keeping targets piecewise linear keeps the whole gene-to-target function a ReLU network, so
    DeepLIFT (SHAP) is exact in its summation and integrated gradients can place kinks exactly.

    - ``'centroid'``: ``t_g(x) = -||y(x) - c_g||_1``, minus the L1 distance of the map
      coordinates ``y(x)`` from the group's centroid ``c_g``: ``t_g(x) - t_g(b)`` is how much
      closer to its group's centroid a cell sits than the baseline ``b`` maps.
    - ``'axis'``: ``t_g(x) = u_g . (y(x) - r_g)``, with ``r_g`` the centroid of the group's
      reference cells and ``u_g`` the unit vector from ``r_g`` to ``c_g``: the position along
      the axis from the reference to the group (a local gradient has a consistent sign over the
      group, which the distance's gradient has not).
    - ``'logit'``: the group's cluster logit minus the mean of the other logits (reference
      ``'rest'``) or minus the reference cluster's logit.
    """

    kind: str
    weight: np.ndarray  # final Linear: (n_groups, n_in)
    bias: np.ndarray  # (n_groups,)
    pre: tuple[np.ndarray, np.ndarray] | None = None  # Linear + ReLU before the final Linear

    @classmethod
    def axis(cls, group_centroids: np.ndarray, reference_centroids: np.ndarray) -> Targets:
        ref = np.asarray(reference_centroids, np.float64)
        diff = np.asarray(group_centroids, np.float64) - ref
        norm = np.linalg.norm(diff, axis=1, keepdims=True)
        if np.any(norm < 1e-12):
            raise ValueError(
                "a group's centroid coincides with its reference's; nothing to explain."
            )
        u = diff / norm
        return cls("axis", u, -(u * ref).sum(1))

    @classmethod
    def centroid(cls, group_centroids: np.ndarray) -> Targets:
        C = np.asarray(group_centroids, np.float64)
        G, d = C.shape
        eye = np.eye(d)
        # |y - c| = relu(y - c) + relu(c - y), per group and axis
        pre_w = np.concatenate([np.concatenate([eye, -eye]) for _ in range(G)])
        pre_b = np.concatenate([np.concatenate([-c, c]) for c in C])
        w = np.zeros((G, 2 * d * G))
        for g in range(G):
            w[g, 2 * d * g : 2 * d * (g + 1)] = -1.0
        return cls("centroid", w, np.zeros(G), (pre_w, pre_b))

    @classmethod
    def logit(cls, group_logits: list[int], reference_logits: list[int] | None, n_clusters: int):
        """``group_logits[g]``: the head output of group g; ``reference_logits``: one per group,
        or ``None`` for 'rest' (the mean of all other logits)."""
        M = np.zeros((len(group_logits), n_clusters))
        for g, k in enumerate(group_logits):
            if reference_logits is None:
                M[g, :] = -1.0 / (n_clusters - 1)
            else:
                M[g, reference_logits[g]] = -1.0
            M[g, k] = 1.0
        return cls("logit", M, np.zeros(len(group_logits)))

    def head(self, network: Network, groups: list[int] | None = None) -> nn.Module:
        """``features -> targets``: the network's trunk and embedding, then the target layers."""
        rows = slice(None) if groups is None else groups
        parts = [network.trunk, network.embed]
        if self.kind == "logit":
            parts.append(network.cluster_head)
        if self.pre is not None:
            parts += [_linear(*self.pre), nn.ReLU()]
        parts.append(_linear(self.weight[rows], self.bias[rows]))
        return nn.Sequential(*parts).eval().requires_grad_(False)


def _linear(weight: np.ndarray, bias: np.ndarray) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        lin.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return lin


def input_weights(inp: InputLayer) -> tuple[np.ndarray, np.ndarray]:
    """``(W, c)`` with ``features = x @ W + c`` (``W``: genes x features)."""
    if inp.loadings is None:
        W = np.eye(inp.n_in) / inp.scale
        return W, -inp.mean / inp.scale
    return inp.loadings / inp.scale, -(inp.mean @ inp.loadings) / inp.scale


def dense_rows(X, rows: np.ndarray) -> np.ndarray:
    block = X[rows]
    return np.asarray(block.toarray() if sparse.issparse(block) else block, dtype=np.float64)


def _chunks(n: int, size: int):
    for s in range(0, n, size):
        yield slice(s, min(s + size, n))


def gradients(
    head: nn.Module,
    features: np.ndarray,
    target: np.ndarray,
    *,
    device: torch.device | str = "cpu",
    chunk_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """``d t_{target[i]} / d features`` at each row, and the target values."""
    grads = np.empty(features.shape, dtype=np.float64)
    values = np.empty(len(features), dtype=np.float64)
    for sl in _chunks(len(features), chunk_size):
        f = torch.as_tensor(features[sl], dtype=torch.float32, device=device).requires_grad_(True)
        t = torch.as_tensor(target[sl], dtype=torch.long, device=device)
        out = head(f).gather(1, t[:, None])[:, 0]
        (g,) = torch.autograd.grad(out.sum(), f)
        grads[sl], values[sl] = g.cpu().numpy(), out.detach().cpu().numpy()
    return grads, values


def integrated_gradients(
    head: nn.Module,
    features: np.ndarray,
    baselines: np.ndarray,
    target: np.ndarray,
    n_steps: int = 128,
    *,
    device: torch.device | str = "cpu",
    chunk_size: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """Path-averaged feature gradients from ``baselines`` to ``features``.

    Returns ``(mean_gradient, delta)``: attributions on features are
    ``(features - baselines) * mean_gradient`` and sum to ``delta = t(features) - t(baselines)``.

    The networks are ReLU networks followed by linear targets, so along the straight path the
    target is piecewise linear and its gradient piecewise constant: a plain Riemann or trapezoid
    sum converges only as 1/n_steps. Each interval between two of the ``n_steps + 1`` nodes is
    therefore integrated as if it held one kink, placed where the two end slopes meet given the
    target values at the nodes; this is exact for intervals with at most one activation switch
    (completeness then holds to float precision) and falls back to the trapezoid rule where
    the slopes agree.
    """
    alphas = torch.linspace(0, 1, n_steps + 1, dtype=torch.float64)
    mean_grad = np.empty(features.shape, dtype=np.float64)
    delta = np.empty(len(features), dtype=np.float64)
    for sl in _chunks(len(features), chunk_size):
        x = torch.as_tensor(np.asarray(features[sl]), dtype=torch.float64)
        b = torch.as_tensor(np.array(baselines[sl]), dtype=torch.float64)
        m, d = x.shape
        path = (b[None] + alphas[:, None, None] * (x - b)[None]).reshape(-1, d)
        path = path.to(device=device, dtype=torch.float32).requires_grad_(True)
        t = torch.as_tensor(np.tile(target[sl], n_steps + 1), dtype=torch.long, device=device)
        out = head(path).gather(1, t[:, None])[:, 0]
        (g,) = torch.autograd.grad(out.sum(), path)
        g = g.cpu().double().reshape(n_steps + 1, m, d)
        val = out.detach().cpu().double().reshape(n_steps + 1, m)
        slope = (g * (x - b)[None]).sum(2)  # d t / d alpha at each node
        lo, hi = alphas[:-1, None], alphas[1:, None]
        m0, m1 = slope[:-1], slope[1:]
        gap = m0 - m1
        ok = gap.abs() > 1e-9 * (m0.abs() + m1.abs() + 1e-30)
        # kink s where t(lo) + m0 (s - lo) = t(hi) - m1 (hi - s)
        s = (val[1:] - val[:-1] - m1 * hi + m0 * lo) / torch.where(ok, gap, torch.ones_like(gap))
        s = torch.where(ok, s.clamp(min=lo, max=hi), (lo + hi) / 2)
        w0, w1 = (s - lo)[..., None], (hi - s)[..., None]
        mean_grad[sl] = (w0 * g[:-1] + w1 * g[1:]).sum(0).numpy()
        delta[sl] = (val[-1] - val[0]).numpy()
    return mean_grad, delta


def gene_module(W: np.ndarray, c: np.ndarray, head: nn.Module) -> nn.Module:
    """``genes -> targets``: the frozen input layer as a Linear module in front of ``head``."""
    return nn.Sequential(_linear(W.T, c), *head.children()).eval().requires_grad_(False)


def deep_shap(
    module: nn.Module, X: np.ndarray, background: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """SHAP values (DeepLIFT rescale rule, ``shap.DeepExplainer``) of a one-output gene module.

    Returns ``(values, outputs, expected)``: per-cell attributions on genes that sum to
    ``outputs - expected``, where ``expected`` is the mean output over ``background``.
    """
    import shap

    device = next(module.parameters()).device
    bg = torch.as_tensor(background, dtype=torch.float32, device=device)
    x = torch.as_tensor(X, dtype=torch.float32, device=device)
    explainer = shap.DeepExplainer(module, bg)
    values = np.asarray(explainer.shap_values(x, check_additivity=False), dtype=np.float64)
    if values.ndim == 3:  # (cells, genes, outputs)
        values = values[..., 0]
    with torch.no_grad():
        outputs = module(x)[:, 0].double().cpu().numpy()
    expected = float(np.atleast_1d(explainer.expected_value)[0])
    return values, outputs, expected
