"""Objectives: each takes an encoder and a batch of cell indices and returns a :class:`Loss`.

The attraction-repulsion objective covers t-SNE and UMAP as two settings of one mechanism:
attraction ``-log w(d_ij)`` on graph edges sampled in proportion to their affinity, repulsion
on cross pairs of the batch (negative samples), either *normalised* (t-SNE: ``log`` of the
mean similarity, an estimate of ``log Z``) or *unnormalised* (UMAP: ``-log(1 - w)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Loss", "AttractionRepulsion", "Classification", "umap_ab"]


@dataclass
class Loss:
    total: torch.Tensor
    terms: dict[str, float] = field(default_factory=dict)


def umap_ab(spread: float = 1.0, min_dist: float = 0.5) -> tuple[float, float]:
    """UMAP's kernel ``1 / (1 + a d^{2b})`` fitted to its ``spread``/``min_dist`` curve."""
    from scipy.optimize import curve_fit

    x = np.linspace(0, spread * 3, 300)
    y = np.where(x < min_dist, 1.0, np.exp(-(x - min_dist) / spread))
    (a, b), _ = curve_fit(lambda x, a, b: 1.0 / (1.0 + a * x ** (2 * b)), x, y)
    return float(a), float(b)


def pairwise_sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T).clamp_min(0.0)


@dataclass
class AttractionRepulsion:
    """Attraction on edges, repulsion on negative pairs; ``normalization`` in [0, 1].

    loss = exaggeration * mean_edges[-log w(d_ij)]
           + normalization * log(mean_neg w(d))                     (t-SNE, normalised)
           + (1 - normalization) * negative_rate * mean_neg[-log(1 - w(d))]   (UMAP)
    with ``w(d) = 1 / (1 + a d^{2b})`` (``a = b = 1``: the Cauchy kernel of t-SNE).
    """

    normalization: float = 1.0
    exaggeration: float = 1.0
    a: float = 1.0
    b: float = 1.0
    negative_rate: float = 5.0
    n_negatives: int = 256
    eps: float = 1e-4

    def kernel_log(self, d2: torch.Tensor) -> torch.Tensor:
        if self.b == 1.0:
            return -torch.log1p(self.a * d2)
        return -torch.log1p(self.a * d2.clamp_min(self.eps) ** self.b)

    def __call__(self, encoder, batch) -> Loss:
        i, j = batch["i"], batch["j"]
        z = encoder(torch.cat([i, j]))
        zi, zj = z[: len(i)], z[len(i) :]
        attraction = -self.kernel_log(((zi - zj) ** 2).sum(1)).mean()
        # negatives: every edge start against the first n_negatives edge ends of the (shuffled)
        # batch, its own partner excluded
        m = min(self.n_negatives, len(j))
        d2 = pairwise_sq_dists(zi, zj[:m])
        off = (
            torch.arange(len(i), device=z.device)[:, None]
            != torch.arange(m, device=z.device)[None, :]
        )
        log_w = self.kernel_log(d2[off])
        repulsion = z.new_zeros(())
        if self.normalization > 0:
            repulsion = repulsion + self.normalization * (
                torch.logsumexp(log_w, 0) - np.log(log_w.numel())
            )
        if self.normalization < 1:
            w = log_w.exp()
            repulsion = repulsion + (1 - self.normalization) * self.negative_rate * (
                -torch.log1p(-w + self.eps).mean()
            )
        total = self.exaggeration * attraction + repulsion
        return Loss(
            total,
            {"attraction": float(attraction.detach()), "repulsion": float(repulsion.detach())},
        )


@dataclass
class Classification:
    """Cross-entropy of the encoder's classifier head (supervised pretraining), class-weighted."""

    class_weights: torch.Tensor | None = None

    def __call__(self, encoder, batch) -> Loss:
        logits = encoder.classify(batch["idx"])
        w = None if self.class_weights is None else self.class_weights.to(logits.device)
        loss = F.cross_entropy(logits, batch["y"], weight=w)
        acc = (logits.argmax(1) == batch["y"]).float().mean()
        return Loss(loss, {"accuracy": float(acc.detach())})
