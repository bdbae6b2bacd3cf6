"""Gene attributions of a trained network: gradients, integrated gradients, SHAP.

Every network sclens trains reads genes through a frozen linear layer,
``features = (x - mean) @ loadings / scale``, so a function ``F`` of the features is a function of
the genes, ``F(W x + c)`` with ``W = loadings.T / scale``. Gradients with respect to genes are
therefore ``dF/dfeatures @ W``, and a straight path between two expression profiles is a straight
path between their features: saliency and integrated gradients are computed in the small feature
space and mapped back to genes exactly. SHAP (DeepExplainer) runs on the full gene-space module.

A *target* turns the network's output into one number per group (see :class:`Targets`);
:func:`explain_group` compares a group with each of its reference groups in turn, with equal
weight, and signs each attribution by the direction of the gene's difference (see there).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
    "Noise",
    "smoothed_gradients",
    "integrated_gradients",
    "deep_shap",
    "explain_group",
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


@dataclass(frozen=True)
class Noise:
    """SmoothGrad's noise: ``n_copies`` Gaussian draws of standard deviation ``sd`` (one per
    feature), the same draws every time :meth:`copies` is called (from ``seed``)."""

    sd: np.ndarray
    n_copies: int
    seed: Sequence[int]

    @classmethod
    def for_features(
        cls, features: np.ndarray, smoothing: float, n_copies: int, seed: Sequence[int]
    ) -> Noise | None:
        """``smoothing`` standard deviations of each column of ``features`` (the cells the
        attribution reads), or None where SmoothGrad is off (``smoothing`` or ``n_copies`` 0)."""
        if smoothing <= 0 or n_copies <= 0:
            return None
        return cls(smoothing * features.std(0, dtype=np.float64), int(n_copies), tuple(seed))

    def copies(self, shape: tuple[int, int], dtype) -> Iterator[np.ndarray]:
        draw = np.random.default_rng(list(self.seed))
        for _ in range(self.n_copies):
            yield (self.sd * draw.standard_normal(shape)).astype(dtype)


def smoothed_gradients(
    head: nn.Module,
    features: np.ndarray,
    target: np.ndarray,
    *,
    noise: Noise | None = None,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """SmoothGrad: the gradient averaged over copies of ``features`` with ``noise`` added (the
    plain gradient without), and the target's value at ``features``. Copies are drawn one at a
    time, so memory stays that of one copy."""
    if noise is None or noise.n_copies == 0:
        return gradients(head, features, target, device=device)
    total = np.zeros(features.shape, dtype=np.float64)
    for z in noise.copies(features.shape, features.dtype):
        total += gradients(head, features + z, target, device=device)[0]
    with torch.no_grad():  # the values at the cells themselves, without a backward pass
        f = torch.as_tensor(features, dtype=torch.float32, device=device)
        t = torch.as_tensor(target, dtype=torch.long, device=device)
        values = head(f).gather(1, t[:, None])[:, 0].double().cpu().numpy()
    return total / noise.n_copies, values


def _one_kink(lo, hi, v0, v1, m0, m1):
    """Weights of the end gradients of intervals ``[lo, hi]`` of a piecewise-linear function
    with values ``v0, v1`` and slopes ``m0, m1`` at the ends, assuming one kink inside (the
    trapezoid rule where the slopes agree), and the part of ``v1 - v0`` they miss."""
    gap = m0 - m1
    ok = gap.abs() > 1e-9 * (m0.abs() + m1.abs() + 1e-30)
    # the kink s where v0 + m0 (s - lo) = v1 - m1 (hi - s)
    s = (v1 - v0 - m1 * hi + m0 * lo) / torch.where(ok, gap, torch.ones_like(gap))
    s = torch.where(ok, torch.minimum(torch.maximum(s, lo), hi), (lo + hi) / 2)
    w0, w1 = s - lo, hi - s
    return w0, w1, (v1 - v0) - (w0 * m0 + w1 * m1)


def _pending(cells, i, j, A, V, G, w0, w1, miss):
    """Intervals ``j`` of rows ``i`` (of arrays indexed row, node) still to split, as
    ``(cell, lo, hi, values, gradients at both ends, one-kink weights, miss)``."""
    return (
        cells,
        A[i, j],
        A[i, j + 1],
        V[i, j],
        V[i, j + 1],
        G[i, j],
        G[i, j + 1],
        w0[i, j],
        w1[i, j],
        miss[i, j],
    )


def integrated_gradients(
    head: nn.Module,
    features: np.ndarray,
    baselines: np.ndarray,
    target: np.ndarray,
    n_steps: int = 32,
    *,
    device: torch.device | str = "cpu",
    chunk_size: int = 1024,
    refine: int = 4,
    max_levels: int = 3,
    rtol: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray]:
    """Path-averaged feature gradients from ``baselines`` to ``features``.

    Returns ``(mean_gradient, delta)``: attributions on features are
    ``(features - baselines) * mean_gradient`` and sum to ``delta = t(features) - t(baselines)``.

    The networks are ReLU networks followed by linear targets, so along the straight path the
    target is piecewise linear and its gradient piecewise constant: a plain Riemann or trapezoid
    sum converges only as 1/n_steps. Each interval between two of the ``n_steps + 1`` nodes is
    therefore integrated as if it held one kink, placed where the two end slopes meet given the
    target values at the nodes; this is exact for intervals with at most one activation switch.
    Where an interval's result misses its share of ``delta`` by more than ``rtol`` times the
    path's total (it held several switches), it is split into ``refine`` parts and integrated
    again, up to ``max_levels`` times and at most as many evaluations again as the uniform grid
    (the intervals that miss most first): completeness then holds to float precision on nearly
    every path, at a fraction of the evaluations a finer uniform grid would take.
    """
    alphas = torch.linspace(0, 1, n_steps + 1, dtype=torch.float64)
    mean_grad = np.empty(features.shape, dtype=np.float64)
    delta = np.empty(len(features), dtype=np.float64)

    def evaluate(x, b, a, t):
        """Target values and feature gradients at ``b + a (x - b)`` (rows), in float64."""
        point = (b + a[:, None] * (x - b)).to(device=device, dtype=torch.float32)
        point.requires_grad_(True)
        out = head(point).gather(1, t[:, None])[:, 0]
        (g,) = torch.autograd.grad(out.sum(), point)
        return out.detach().cpu().double(), g.cpu().double()

    for sl in _chunks(len(features), chunk_size):
        x = torch.as_tensor(np.asarray(features[sl]), dtype=torch.float64)
        b = torch.as_tensor(np.array(baselines[sl]), dtype=torch.float64)
        t = torch.as_tensor(target[sl], dtype=torch.long, device=device)
        m, d = x.shape
        S = n_steps
        rows = torch.arange(m).repeat(S + 1)
        val, g = evaluate(x[rows], b[rows], alphas.repeat_interleave(m), t[rows])
        val, g = val.reshape(S + 1, m), g.reshape(S + 1, m, d)
        slope = (g * (x - b)[None]).sum(2)  # d t / d alpha at each node
        lo = alphas[:-1, None].expand(S, m)
        hi = alphas[1:, None].expand(S, m)
        w0, w1, miss = _one_kink(lo, hi, val[:-1], val[1:], slope[:-1], slope[1:])
        total = (w0[..., None] * g[:-1] + w1[..., None] * g[1:]).sum(0)
        tol = rtol * ((val[-1] - val[0]).abs() + 1e-12)
        # intervals to split; the grid's arrays are (node, cell): their transposes are (cell, node)
        bad = (miss.abs() > tol[None]).nonzero()
        cell = bad[:, 1]
        grid = alphas[None, :].expand(m, S + 1)
        todo = _pending(cell, cell, bad[:, 0], grid, val.T, g.transpose(0, 1), w0.T, w1.T, miss.T)
        budget = S * m  # at most as many evaluations again as the uniform grid took
        for _ in range(max_levels):
            k = len(todo[0])
            if k == 0 or budget < refine - 1:
                break
            if k * (refine - 1) > budget:  # the intervals that miss most first
                keep = torch.argsort(-todo[-1].abs())[: budget // (refine - 1)]
                todo = tuple(v[keep] for v in todo)
                k = len(keep)
            budget -= k * (refine - 1)
            cell, a0, a1, v0, v1, g0, g1, u0, u1, _ = todo
            # remove the interval's one-kink estimate, add the sum over its parts
            total.index_add_(0, cell, -(u0[:, None] * g0 + u1[:, None] * g1))
            frac = torch.arange(1, refine, dtype=torch.float64) / refine
            inner = a0[:, None] + (a1 - a0)[:, None] * frac[None]  # (k, refine - 1)
            rows = cell.repeat_interleave(refine - 1)
            vi, gi = evaluate(x[rows], b[rows], inner.reshape(-1), t[rows])
            V = torch.cat([v0[:, None], vi.reshape(k, -1), v1[:, None]], 1)  # (k, refine + 1)
            G = torch.cat([g0[:, None], gi.reshape(k, -1, d), g1[:, None]], 1)
            A = torch.cat([a0[:, None], inner, a1[:, None]], 1)
            M = (G * (x - b)[cell][:, None]).sum(2)
            s0, s1, miss = _one_kink(A[:, :-1], A[:, 1:], V[:, :-1], V[:, 1:], M[:, :-1], M[:, 1:])
            parts = (s0[..., None] * G[:, :-1] + s1[..., None] * G[:, 1:]).sum(1)
            total.index_add_(0, cell, parts)
            bad = (miss.abs() > tol[cell][:, None]).nonzero()
            i, j = bad[:, 0], bad[:, 1]
            todo = _pending(cell[i], i, j, A, V, G, s0, s1, miss)
        mean_grad[sl] = total.numpy()
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


@dataclass
class Explained:
    """A group's attributions: per cell (``attr``: cells x genes; they sum to ``output``), the
    genes' ``scores`` (signed by the direction of each gene's difference, see
    :func:`explain_group`) and their ``influence``, the mean attribution itself (how much each
    gene, as it differs from the baseline, moves the group's cells toward the group)."""

    attr: np.ndarray
    output: np.ndarray
    scores: np.ndarray
    influence: np.ndarray


def explain_group(
    method: str,
    targets: Targets,
    net: Network,
    index: int,
    *,
    X,
    cells: np.ndarray,
    features: np.ndarray,
    references: list[np.ndarray],
    reference_means: np.ndarray | None = None,
    W: np.ndarray,
    c: np.ndarray,
    zero_baseline: bool = False,
    axes: Targets | None = None,
    times_input: bool = False,
    noise: Noise | None = None,
    n_steps: int = 32,
    n_background: int = 100,
    rng: np.random.Generator,
    device: torch.device | str = "cpu",
) -> Explained:
    """Attributions of one group's ``cells`` (rows of ``X``; their ``features``) for target
    ``index``.

    ``references`` are the rows of ``X`` of each group the group is compared with (every
    other group for 'rest', or the one named): each counts equally, however many cells it has,
    so a small group's markers are not drowned by a large one and a group that sits amid the
    others on the map (whose pooled 'rest' would map onto itself) is still compared with real
    cell types. ``reference_means``: their mean expressions, where the caller has them (one row
    per reference group), else computed here.

    - integrated gradients: cell ``i`` runs from the mean expression ``m_h`` of one reference
      group (the groups taken in turn over the cells) or from zero expression;
    - SHAP: ``shap.DeepExplainer`` against a background of ``n_background / H`` cells of each
      reference group (its expectation is the mean over those cells, weighted equally across
      groups), signs from the difference to the mean of the reference groups' means;
    - saliency: the gradient, at the group's cells, of ``axes`` (one map axis per reference
      group, from its centroid to the group's; or ``targets`` where ``axes`` is None), weighted
      by how far the group's mean expression is from each reference group's
      (``times_input``: from each cell's own expression); with ``noise``, averaged over
      noised copies of the cells (SmoothGrad).

    A gene's *score* is the mean over cells of its attribution times the sign of its difference
    from the baseline (``|x - m_h|`` times the path-averaged gradient, for integrated
    gradients): positive when the gene is higher in the group and that moves cells toward it,
    negative when it is lower and that moves them toward it (down-regulated markers rank last,
    as in :func:`scanpy.tl.rank_genes_groups`) or when its difference moves cells away. Genes that
    raise a cell's target only because the reference cells have more of them (other groups'
    markers) no longer rank first. A gene's *influence* is its mean attribution without the sign
    (for saliency: the mean gradient times the group's mean difference from each reference
    group): the genes whose values in the group's cells hold them in the group, other groups'
    markers they lack included. Scores name markers; influence names what the map reads.
    """
    x = dense_rows(X, cells)
    n, H = len(x), len(references)
    means = reference_means
    if means is None:
        means = np.stack(
            [np.asarray(X[r].mean(axis=0), dtype=np.float64).ravel() for r in references]
        )
    tgt = np.full(n, index)
    if method == "saliency":
        if axes is None:
            head = targets.head(net).to(device)
            grad, output = smoothed_gradients(head, features, tgt, noise=noise, device=device)
            grads, outputs = [grad @ W.T] * H, [output]
        else:
            head = axes.head(net).to(device)
            pairs = [
                smoothed_gradients(head, features, np.full(n, h), noise=noise, device=device)
                for h in range(H)
            ]
            grads, outputs = [g @ W.T for g, _ in pairs], [o for _, o in pairs]
        output = np.mean(outputs, axis=0)
        if times_input:
            base = np.zeros_like(means) if zero_baseline else means
            attr = np.mean([g * (x - m) for g, m in zip(grads, base, strict=True)], axis=0)
            scores = np.mean([g * np.abs(x - m) for g, m in zip(grads, base, strict=True)], 0)
            return Explained(attr, output, scores.mean(0), attr.mean(0))
        diff = x.mean(0) - means  # (H, genes)
        attr = np.mean([g * np.abs(d) for g, d in zip(grads, diff, strict=True)], axis=0)
        # first-order effect of moving each gene from the reference group's mean to the group's
        influence = np.mean([g.mean(0) * d for g, d in zip(grads, diff, strict=True)], axis=0)
        return Explained(attr, output, attr.mean(0), influence)
    head = targets.head(net).to(device)
    if method == "integrated_gradients":
        if zero_baseline:
            base = np.zeros_like(x)
        else:
            base = means[rng.permutation(n) % H]
        grad, output = integrated_gradients(
            head, features, base @ W + c, tgt, n_steps, device=device
        )
        G = grad @ W.T
        attr = (x - base) * G
        return Explained(attr, output, (np.abs(x - base) * G).mean(0), attr.mean(0))
    module = gene_module(W, c, targets.head(net, [index])).to(device)
    per = max(n_background // H, 1)
    picks = [r[np.sort(rng.choice(len(r), min(per, len(r)), replace=False))] for r in references]
    attr, out, expected = deep_shap(module, x, dense_rows(X, np.concatenate(picks)))
    # one explainer over a background balanced across the reference groups; each gene's sign
    # from its difference to the mean of the reference groups' means
    scores = (attr * np.sign(x - means.mean(0))).mean(0)
    return Explained(attr, out - expected, scores, attr.mean(0))
