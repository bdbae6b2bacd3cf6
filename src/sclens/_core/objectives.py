"""Objectives: each takes an encoder and a batch of cell indices and returns a :class:`Loss`.

The attraction-repulsion objective covers t-SNE and UMAP as two settings of one mechanism:
attraction ``-log w(d_ij)`` of each batch cell to all its graph neighbours, weighted by their
affinity, and repulsion from randomly drawn cells, either *normalised* (t-SNE: ``log`` of the
mean similarity, an estimate of ``log Z``) or *unnormalised* (UMAP: ``-log(1 - w)``).

Generative maps (GNE) minimise :class:`Reconstruction`: the decoder's error on each cell's
expression from its (noised) coordinate, optionally plus :class:`NeighborAttraction` on kNN pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse

__all__ = [
    "Loss",
    "AttractionRepulsion",
    "EXACT_REPULSION_CELLS",
    "Classification",
    "balanced_weights",
    "DENPairs",
    "Reconstruction",
    "Regression",
    "NeighborAttraction",
    "Sum",
    "cell_error",
    "f1_cdf",
    "umap_ab",
]


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
    """Squared euclidean distances between the rows of ``a`` and of ``b`` (the one copy)."""
    return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T).clamp_min(0.0)


#: up to this many cells, the repulsion is exact (every cell a negative) by default
EXACT_REPULSION_CELLS = 1000


@dataclass
class AttractionRepulsion:
    """t-SNE and UMAP as one objective: attraction on graph neighbours, repulsion from other cells.

    Two kinds of batch. Graph edges (``batch['i']``, ``batch['j']`` and uniform negatives
    ``batch['neg']``, from :class:`~sclens._core.engine.EdgeSampler`; networks train on these):
    see :meth:`_edges`.
    Cells (``batch['idx']``; coordinate tables): each cell ``i`` is pulled by *all* its graph
    neighbours (its row of the affinity matrix ``graph``: symmetric, rescaled here to sum to 1
    over all pairs) and pushed by ``n_negatives`` cells drawn at random (``None``: every cell,
    i.e. exact repulsion). With ``n`` cells and ``w(d) = 1 / (1 + a d^{2b})`` (``a = b = 1``:
    t-SNE's Cauchy kernel), the loss of the batch is the mean over its cells of::

        exaggeration * sum_j n p_ij [-log w_ij]
        + normalization * log(mean_k w_ik) (over all batch-negative pairs; t-SNE: log Z)
        + (1 - normalization) * negative_rate * mean_k [-log(1 - w_ik)]   (UMAP)

    so ``normalization`` in [0, 1] moves from UMAP (0) to t-SNE (1), the attraction-repulsion
    view of both. The neighbours' and negatives' coordinates come from a memory: the encoder's
    output for every cell, computed at the phase's first step and refreshed for the batch's
    cells at every step (an entry is at most one epoch old). Only the batch's own coordinates
    are differentiated: each cell receives its full t-SNE (UMAP) force, pairs counted from one
    side. The forces are computed in closed form; autograd only carries them through the
    encoder (a network, or a coordinate table).

    Why cell batches: a batch of graph edges gives each cell one neighbour's pull, a very noisy
    force; here each cell of the batch feels its whole neighbourhood (a better table for the
    same epochs; for networks it measured worse from ~16,000 cells on, see docs/methods/ardr.md).
    Why ``z_decay`` (cell batches only): normalising by the batch's own mean similarity weighs a pair by
    ``w / sum_batch(w)``, so the rare close pairs that carry t-SNE's short-range repulsion are
    divided by themselves; a running mean ``Z`` (decay ``z_decay`` per step) gives each pair the
    weight ``w / Z`` (the loss value is then ``log Z + mean(w) / Z - 1``, equal to ``log mean(w)``
    to first order).
    """

    graph: sparse.spmatrix | None = None
    normalization: float = 1.0
    exaggeration: float = 1.0
    a: float = 1.0
    b: float = 1.0
    negative_rate: float = 5.0
    n_negatives: int | None = 256
    eps: float = 1e-4
    z_decay: float = 0.9
    generator: torch.Generator | None = None
    _memory: torch.Tensor | None = field(default=None, repr=False)
    _csr: tuple | None = field(default=None, repr=False)
    _z: torch.Tensor | None = field(default=None, repr=False)

    distributed = True  # each rank shares its batch's coordinates (see _remember)

    @property
    def n(self) -> int:
        return self.graph.shape[0]

    def _edges(self, encoder, batch) -> Loss:
        """A batch of graph edges ``(i, j)`` drawn in proportion to their affinity, and cells
        ``neg`` drawn uniformly (:class:`~sclens._core.engine.EdgeSampler`): each edge's start is
        pulled by its end and repelled from every cell of ``neg`` (itself excluded). The loss of
        the batch of ``B`` edges and ``m`` negatives is::

            exaggeration * mean_e [-log w(z_i - z_j)]
            + normalization * log(mean w) over the B x m start-negative pairs (t-SNE: log Z)
            + (1 - normalization) * negative_rate * mean [-log(1 - w)]   (UMAP)

        Why uniform negatives: the edge ends are drawn in proportion to a cell's share of the
        affinities, which varies 0.5-3.5x (up to 9x) around its mean on the sets of
        ``benchmarks/maps.py``; repelling from the ends overweights hub cells in the estimate of
        ``Z`` and the repulsion, and underweights outlying ones (``docs/methods/ardr.md``).
        Every distinct cell of the batch (``i``, ``j`` and ``neg`` together) is encoded once:
        on a few thousand cells many appear several times, and a step costs less.

        As for cell batches the forces are computed in closed form and autograd only carries
        them through the encoder: the same gradient as autograd of the loss (checked in
        ``tests/test_core.py``). Networks train on edge batches (measured: cell batches give
        better coordinate tables but worse networks, ``docs/methods/ardr.md``).
        """
        i, j, neg = batch["i"], batch["j"], batch["neg"]
        B = len(i)
        cells, where = torch.unique(torch.cat([i, j, neg]), return_inverse=True)
        z = encoder(cells)
        with torch.no_grad():
            y = z.detach().float()[where]
            zi, zj, zn = y[:B], y[B : 2 * B], y[2 * B :]
            grad = torch.zeros_like(y)
            # attraction along each edge, on both ends
            diff = zi - zj
            d2 = (diff * diff).sum(1)
            log_w = self.kernel_log(d2)
            attraction = float(-log_w.mean())
            pull = (self.exaggeration / B) * (log_w.exp() * self.kernel_slope(d2))[:, None] * diff
            grad[:B] += pull
            grad[B : 2 * B] -= pull
            # repulsion: every start from every negative, itself excluded
            repulsion, coef = self._repulsion(zi, zn, i[:, None] == neg[None, :], running_z=False)
            grad[:B] += coef.sum(1, keepdim=True) * zi - coef @ zn
            grad[2 * B :] += coef.sum(0)[:, None] * zn - coef.T @ zi
            # each distinct cell's force: the sum over its places in the batch
            grad = torch.zeros(len(cells), y.shape[1], device=y.device).index_add_(0, where, grad)
        value = self.exaggeration * attraction + repulsion
        total = (z * grad.to(z.dtype)).sum()
        return Loss(
            total - total.detach() + value, {"attraction": attraction, "repulsion": repulsion}
        )

    def kernel_log(self, d2: torch.Tensor) -> torch.Tensor:
        """``log w(d)`` from squared distances."""
        if self.b == 1.0:
            return -torch.log1p(self.a * d2)
        return -torch.log1p(self.a * d2.clamp_min(self.eps) ** self.b)

    def kernel_slope(self, d2: torch.Tensor) -> torch.Tensor:
        """``g = 2 a b d^{2(b-1)}``: ``d(-log w)/dy_i = w g (y_i - y_j)``, ``dw/dy_i = -w^2 g (y_i - y_j)``."""
        if self.b == 1.0:
            return torch.full_like(d2, 2.0 * self.a)
        return 2.0 * self.a * self.b * d2.clamp_min(self.eps) ** (self.b - 1.0)

    def _repulsion(
        self, y: torch.Tensor, others: torch.Tensor, excluded: torch.Tensor, *, running_z: bool
    ) -> tuple[float, torch.Tensor]:
        """The repulsion of every row of ``y`` from every row of ``others`` (pairs marked in
        ``excluded`` left out): its value and coefficients ``c`` such that the loss's gradient
        is ``sum_b c_ab (y_a - o_b)`` on ``y_a`` and minus that, summed over ``a``, on ``o_b``.
        ``running_z``: t-SNE's normaliser is the running mean ``Z`` (cell batches, see the
        class), else the pairs' own mean (edge batches)."""
        if y.shape[1] <= 3:
            # map coordinates: the differences directly (the expanded form's matrix product of
            # inner dimension 2 costs more and loses digits to cancellation)
            d2 = (y[:, :1] - others[:, 0]).square_()
            for c in range(1, y.shape[1]):
                d2 += (y[:, c : c + 1] - others[:, c]).square_()
        else:
            d2 = pairwise_sq_dists(y, others)
        if self.b == 1.0:
            # Cauchy-type kernel 1 / (1 + a d^2): no log / exp, constant slope 2a
            w = d2.mul(self.a).add_(1.0).reciprocal_().masked_fill_(excluded, 0.0)
            dw = (w * w).mul_(-2.0 * self.a)  # dw_ab/dy_a = dw_ab (y_a - o_b)
        else:
            w = self.kernel_log(d2).masked_fill_(excluded, -torch.inf).exp_()
            dw = (w * w).mul_(self.kernel_slope(d2)).neg_()
        count = excluded.numel() - int(excluded.sum())
        value, coef = 0.0, None
        if self.normalization > 0:
            total_w = w.sum()
            if running_z:
                mean_w = total_w / count
                if self._z is None or self.z_decay <= 0:
                    self._z = mean_w
                else:
                    self._z = self.z_decay * self._z + (1 - self.z_decay) * mean_w
                value += self.normalization * float(torch.log(self._z) + mean_w / self._z - 1)
                scale = self.normalization / (count * self._z)
            else:
                value += self.normalization * float(torch.log(total_w / count))
                scale = self.normalization / total_w
            coef = dw * scale
        if self.normalization < 1:
            share = (1 - self.normalization) * self.negative_rate / count
            value += share * float(-torch.log1p(-w + self.eps).masked_fill_(excluded, 0).sum())
            umap = dw.div_((1 + self.eps) - w).mul_(share)
            coef = umap if coef is None else coef.add_(umap)
        return value, coef

    def _rows(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(position in the batch, neighbour, ``n p``) of every stored entry of the rows ``idx``."""
        if self._csr is None:
            P = sparse.csr_matrix(self.graph)
            self._csr = tuple(
                torch.as_tensor(a, device=idx.device)
                for a in (
                    P.indptr.astype(np.int64),
                    P.indices.astype(np.int64),
                    (P.data * (P.shape[0] / P.data.sum())).astype(np.float32),
                )
            )
        indptr, indices, data = self._csr
        start, count = indptr[idx], indptr[idx + 1] - indptr[idx]
        row = torch.repeat_interleave(torch.arange(len(idx), device=idx.device), count)
        first = torch.cumsum(count, 0) - count
        pos = start[row] + torch.arange(len(row), device=idx.device) - first[row]
        return row, indices[pos], data[pos]

    @torch.no_grad()
    def _fill_memory(self, encoder, device) -> None:
        was = encoder.training
        encoder.eval()
        step = 8192
        parts = [
            encoder(torch.arange(s, min(s + step, self.n), device=device))
            for s in range(0, self.n, step)
        ]
        encoder.train(was)
        self._memory = torch.cat(parts).float()

    def _remember(self, idx: torch.Tensor, y: torch.Tensor) -> None:
        """Write the batch's coordinates into the memory (every rank's batch under ``torchrun``)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            self._memory[idx] = y
            return
        size = dist.get_world_size()
        counts = [torch.zeros(1, dtype=torch.long, device=idx.device) for _ in range(size)]
        dist.all_gather(counts, torch.tensor([len(idx)], device=idx.device))
        pad = int(max(c.item() for c in counts)) - len(idx)
        idx_p = torch.cat([idx, idx.new_zeros(pad)])
        y_p = torch.cat([y, y.new_zeros(pad, y.shape[1])])
        all_idx = [torch.empty_like(idx_p) for _ in range(size)]
        all_y = [torch.empty_like(y_p) for _ in range(size)]
        dist.all_gather(all_idx, idx_p)
        dist.all_gather(all_y, y_p)
        for c, i, v in zip(counts, all_idx, all_y, strict=True):
            self._memory[i[: int(c.item())]] = v[: int(c.item())]

    def __call__(self, encoder, batch) -> Loss:
        if "idx" not in batch:
            return self._edges(encoder, batch)
        idx = batch["idx"]
        if self.graph is None:
            raise ValueError("AttractionRepulsion on batches of cells needs the affinity `graph`.")
        if self._memory is None:
            self._fill_memory(encoder, idx.device)
        z = encoder(idx)
        with torch.no_grad():
            y, memory, B = z.detach().float(), self._memory, len(idx)
            # attraction: every graph neighbour of every batch cell
            row, nbr, weight = self._rows(idx)
            diff = y[row] - memory[nbr]
            d2 = (diff * diff).sum(1)
            log_w = self.kernel_log(d2)
            attraction = float((weight * -log_w).sum()) / B
            coef = self.exaggeration * weight * log_w.exp() * self.kernel_slope(d2) / B
            grad = torch.zeros_like(y).index_add_(0, row, coef[:, None] * diff)
            # repulsion: random cells (or all of them), the cell itself excluded
            if self.n_negatives is None or self.n_negatives >= self.n:
                neg = torch.arange(self.n, device=idx.device)
            else:
                neg = torch.randint(self.n, (self.n_negatives,), generator=self.generator)
                neg = neg.to(idx.device)
            others = memory[neg]
            same = idx[:, None] == neg[None, :]
            repulsion, coef = self._repulsion(y, others, same, running_z=True)
            grad += coef.sum(1, keepdim=True) * y - coef @ others
            self._remember(idx, y)
        value = self.exaggeration * attraction + repulsion
        # the loss's value, with the gradient grad . dz carried through the encoder by autograd
        total = (z * grad.to(z.dtype)).sum()
        return Loss(
            total - total.detach() + value, {"attraction": attraction, "repulsion": repulsion}
        )


def balanced_weights(codes: np.ndarray, n_classes: int) -> torch.Tensor:
    """Class weights ``n / (K n_k)`` for a cross-entropy that counts every class equally
    (classes without cells get weight ``n / K``)."""
    counts = np.bincount(codes, minlength=n_classes).astype(np.float32)
    return torch.as_tensor(counts.sum() / (n_classes * np.maximum(counts, 1)))


@dataclass
class Classification:
    """Class-weighted cross-entropy of one of the encoder's heads on ``batch['idx']``/``['y']``.

    ``head='classify'`` (classifier on the trunk) or ``'cluster_logits'`` (cluster head on the map).
    """

    class_weights: torch.Tensor | None = None
    head: str = "classify"

    def __call__(self, encoder, batch) -> Loss:
        logits = getattr(encoder, self.head)(batch["idx"])
        w = None if self.class_weights is None else self.class_weights.to(logits.device)
        loss = F.cross_entropy(logits, batch["y"], weight=w)
        acc = (logits.argmax(1) == batch["y"]).float().mean()
        return Loss(loss, {"accuracy": float(acc.detach())})


def f1_cdf(s: torch.Tensor, v: int) -> torch.Tensor:
    """CDF of the F(1, v) distribution at ``s >= 0``, exact and differentiable.

    F(1, v) is the law of T^2 for a Student t with v degrees of freedom, so the CDF at s is
    P(|T| <= sqrt(s)), which has a closed form in theta = atan(sqrt(s / v)):
    v even: sin(theta) * sum_{k<v/2} c_k cos(theta)^{2k}, c_k = prod_{m<=k} (2m-1)/(2m);
    v odd:  (2/pi) * (theta + sin(theta) * sum_{k<(v-1)/2} d_k cos(theta)^{2k+1}), d_k = prod (2m)/(2m+1).
    For v = 2 this is sqrt(s / (s + 2)). Values stay in [0, 1] for every v.
    """
    if v < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {v}")
    s = s.clamp_min(0)
    theta = torch.atan(torch.sqrt(s / v + 1e-20))  # eps keeps the gradient finite at s = 0
    sin, cos = torch.sin(theta), torch.cos(theta)
    if v % 2 == 0:
        total, coef, power = torch.zeros_like(s), 1.0, torch.ones_like(s)
        for k in range(v // 2):
            if k > 0:
                coef *= (2 * k - 1) / (2 * k)
                power = power * cos * cos
            total = total + coef * power
        return (sin * total).clamp(0, 1)
    total, coef, power = torch.zeros_like(s), 1.0, cos
    for k in range((v - 1) // 2):
        if k > 0:
            coef *= (2 * k) / (2 * k + 1)
            power = power * cos * cos
        total = total + coef * power
    return ((2 / np.pi) * (theta + sin * total)).clamp(0, 1)


def correlation_penalty(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal correlations between output axes over the batch."""
    if z.shape[1] < 2:
        return z.new_zeros(())
    zc = z - z.mean(0)
    cov = zc.T @ zc / max(len(z) - 1, 1)
    sd = cov.diagonal().clamp_min(1e-12).sqrt()
    corr = cov / (sd[:, None] * sd[None, :])
    off = corr - torch.diag(corr.diagonal())
    return (off**2).sum() / 2


@dataclass
class DENPairs:
    """Siamese DEN loss on near pairs (``i``, ``j``) and far pairs (``fi``, ``fj``).

    With p = F(1, v)-CDF of the squared distance s = ||f(a) - f(b)||^2 of a pair,
    L = [N_near * sum_far (1 - p) + N_far * sum_near p] / (B (N_near + N_far))
        + corr_weight * sum of squared correlations between output axes,
    where B = N_near + N_far is the number of pairs in the batch.
    """

    n_components: int
    corr_weight: float = 1.0

    def __call__(self, encoder, batch) -> Loss:
        n_near, n_far = len(batch["i"]), len(batch["fi"])
        z = encoder(torch.cat([batch["i"], batch["j"], batch["fi"], batch["fj"]]))
        zi, zj, fi, fj = torch.split(z, [n_near, n_near, n_far, n_far])
        p_near = f1_cdf(((zi - zj) ** 2).sum(1), self.n_components)
        p_far = f1_cdf(((fi - fj) ** 2).sum(1), self.n_components)
        b = n_near + n_far
        pairs = (n_near * (1 - p_far).sum() + n_far * p_near.sum()) / (b * (n_near + n_far))
        corr = correlation_penalty(zi)
        total = pairs + self.corr_weight * corr
        return Loss(
            total,
            {
                "pairs": float(pairs.detach()),
                "near_p": float(p_near.mean().detach()),
                "far_p": float(p_far.mean().detach()),
            },
        )


@dataclass
class Sum:
    """Several objectives on the same batch, weighted."""

    parts: list
    weights: list[float] | None = None

    def __call__(self, encoder, batch) -> Loss:
        total, terms = 0.0, {}
        for k, part in enumerate(self.parts):
            out = part(encoder, batch)
            total = total + (1.0 if self.weights is None else self.weights[k]) * out.total
            terms.update(out.terms)
        return Loss(total, terms)


def cell_error(
    out: torch.Tensor,
    x: torch.Tensor,
    likelihood: str,
    log_theta: torch.Tensor | None = None,
    reduce: bool = True,
) -> torch.Tensor:
    """Per-cell reconstruction error, averaged over genes (``reduce=False``: per cell and gene).

    ``'mse'``: mean squared error between the decoder's output and ``x``.
    ``'nb'``: negative-binomial negative log-likelihood of the counts ``x`` with mean
    ``softmax(out) * library`` (``library``: the cell's total count) and inverse dispersion
    ``exp(log_theta)`` per gene.
    """
    if likelihood == "mse":
        e = (out - x) ** 2
        return e.mean(1) if reduce else e
    if likelihood != "nb":
        raise ValueError(f"likelihood must be 'mse' or 'nb', got {likelihood!r}.")
    library = x.sum(1, keepdim=True).clamp_min(1.0)
    log_mu = torch.log_softmax(out, dim=1) + torch.log(library)
    theta = log_theta.exp()[None, :]
    log_theta_mu = torch.logaddexp(log_theta[None, :], log_mu)  # log(theta + mu)
    ll = (
        torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
        + theta * (log_theta[None, :] - log_theta_mu)
        + x * (log_mu - log_theta_mu)
    )
    return -ll.mean(1) if reduce else -ll


@dataclass
class Reconstruction:
    """Mean :func:`cell_error` of ``decoder(encoder(idx) + noise * eps)`` against ``targets[idx]``.

    ``eps`` is standard Gaussian noise drawn from ``generator`` (the trainer's random stream),
    only while the encoder is in training mode; ``noise=0`` is a plain reconstruction. With
    ``anneal=True`` the noise's standard deviation is ``noise * (1 - progress)``: it falls
    linearly to 0 over the phase (:meth:`~sclens._core.engine.Trainer.optimize` sets
    ``progress``, the fraction of the phase's steps already taken).
    """

    targets: torch.Tensor
    likelihood: str = "mse"
    noise: float = 0.0
    generator: torch.Generator | None = None
    anneal: bool = False
    progress: float = 0.0

    def noise_std(self) -> float:
        """The noise's standard deviation at the current ``progress``."""
        return self.noise * (1.0 - self.progress) if self.anneal else self.noise

    def __call__(self, encoder, batch) -> Loss:
        idx = batch["idx"]
        z = encoder(idx)
        if self.noise > 0 and encoder.training:
            eps = torch.randn(z.shape, generator=self.generator, dtype=z.dtype)
            z = z + self.noise_std() * eps.to(z.device)
        decoder = encoder.decoder
        out = decoder(z)
        if self.targets.device != out.device:
            self.targets = self.targets.to(out.device)
        err = cell_error(out, self.targets[idx], self.likelihood, decoder.log_theta).mean()
        return Loss(err, {"reconstruction": float(err.detach())})


@dataclass
class Regression:
    """Mean squared distance of the batch's coordinates ``encoder(idx)`` from ``targets[idx]``:
    fits a network to given starting coordinates before a neighbour embedding trains it."""

    targets: torch.Tensor

    # a mean over the batch's cells: under torchrun the ranks' averaged gradients are the mean
    # over all their cells
    distributed = True

    def __call__(self, encoder, batch) -> Loss:
        idx = batch["idx"]
        z = encoder(idx)
        if self.targets.device != z.device:
            self.targets = self.targets.to(z.device)
        err = (z - self.targets[idx]).square().sum(1).mean()
        return Loss(err, {"distance": float(err.detach())})


@dataclass
class NeighborAttraction:
    """``mean log(1 + ||z_i - z_j||^2)`` over each batch cell ``i`` and one random kNN ``j``.

    ``neighbors`` is the ``(n_cells, k)`` kNN index table; the neighbour is drawn from
    ``generator``. The Cauchy form keeps the pull bounded: reconstruction keeps cells apart.
    """

    neighbors: torch.Tensor
    generator: torch.Generator | None = None

    def __call__(self, encoder, batch) -> Loss:
        idx = batch["idx"]
        col = torch.randint(self.neighbors.shape[1], (len(idx),), generator=self.generator)
        j = self.neighbors[idx.cpu(), col].to(idx.device)
        z = encoder(torch.cat([idx, j]))
        zi, zj = z[: len(idx)], z[len(idx) :]
        att = torch.log1p(((zi - zj) ** 2).sum(1)).mean()
        return Loss(att, {"attraction": float(att.detach())})
