"""Placing cells on a generative map: the decoder is frozen, coordinates are optimised.

A new cell has no coordinate. :func:`place` decodes candidate positions (stored reference
positions) once, starts each cell from the ``n_starts`` candidates whose decoded profiles are
closest to it, optimises all starts at once with Adam through the one training loop (decoder
frozen, full batch, no noise), and keeps each cell's best optimum. What the map cannot explain
there is scored twice: gene by gene, :func:`excess` sums how far each gene's error exceeds the 99th
percentile of that gene's error among the reference cells (:func:`gene_thresholds`); locally,
:func:`local_error` compares the cell's mean error with that of the reference cells nearby.
:func:`novelty` puts both on the reference cells' own scale and adds them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

from .engine import CellSampler, Trainer
from .networks import CoordinateTable, Decoder, GenerativeMap
from .objectives import Reconstruction, cell_error

__all__ = [
    "place",
    "gene_errors",
    "gene_thresholds",
    "excess",
    "excess_of",
    "local_error",
    "novelty",
    "dense_chunk",
]

#: a gene's error counts as unexplained above this quantile of its errors among reference cells
NOVELTY_QUANTILE = 0.99
#: reference positions a placed cell's error is compared with (:func:`local_error`)
LOCAL_NEIGHBORS = 50


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


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return d.clamp_min(0.0)


@torch.no_grad()
def _best_candidates(x: torch.Tensor, cand: torch.Tensor, k: int, likelihood: str) -> torch.Tensor:
    d = _sq_dists(_comparable(x, False, likelihood), cand)
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
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates and reconstruction error (:func:`cell_error`) of each row of ``X``.

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
    errors = np.empty(n, dtype=np.float64)
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
                errors[s : s + c] = err[torch.arange(c), best].double().cpu().numpy()
    finally:
        for p, r in zip(decoder.parameters(), was, strict=True):
            p.requires_grad_(r)
    return coords, errors


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


def excess(decoder: Decoder, X, coords: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``sum_g max(e_g - t_g, 0)`` per cell: error beyond what reference cells show, gene by gene.

    ``e_g`` is the cell's error on gene g at ``coords`` (:func:`gene_errors`), ``t_g`` the gene's
    threshold (:func:`gene_thresholds`). A mean over all genes dilutes a few marker genes that the
    map cannot produce; this sum keeps them, and ignores genes whose error is ordinary.
    """
    out = np.empty(X.shape[0], dtype=np.float64)
    for s, e in gene_errors(decoder, X, coords):
        out[s : s + len(e)] = excess_of(e, thresholds)
    return out


def excess_of(errors: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """:func:`excess` of per-gene errors already computed (cells x genes)."""
    return np.maximum(errors - thresholds[None, :], 0.0).sum(1)


def local_error(
    errors: np.ndarray,
    coords: np.ndarray,
    reference_errors: np.ndarray,
    reference_coords: np.ndarray,
    *,
    leave_out_self: bool = False,
) -> np.ndarray:
    """``log(error)`` minus the mean ``log(error)`` of the ``LOCAL_NEIGHBORS`` nearest reference
    positions: how much worse the map explains a cell than the reference cells where it lies.

    ``leave_out_self``: ``coords`` are the reference positions themselves; each skips itself.
    """
    skip = int(leave_out_self)
    k = min(LOCAL_NEIGHBORS, len(reference_coords) - skip)
    nn = NearestNeighbors(n_neighbors=k + skip).fit(reference_coords)
    ind = nn.kneighbors(coords, return_distance=False)[:, skip:]
    log_ref = np.log(np.maximum(np.asarray(reference_errors, dtype=np.float64), 1e-12))
    return np.log(np.maximum(np.asarray(errors, dtype=np.float64), 1e-12)) - log_ref[ind].mean(1)


def _z(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (values - reference.mean()) / (reference.std() + 1e-12)


def novelty(
    excess_scores: np.ndarray,
    errors: np.ndarray,
    coords: np.ndarray,
    reference_excess: np.ndarray,
    reference_errors: np.ndarray,
    reference_coords: np.ndarray,
) -> np.ndarray:
    """Novelty of placed cells: two z-scores, summed, as a z-score against the reference's own.

    1. global: ``log(excess + floor)`` (:func:`excess`; ``floor`` is 0.001 times the reference's
       median), z-scored against the reference cells' values;
    2. local: :func:`local_error` (mean error against the reference cells nearby), z-scored
       against the reference cells' own (each leaving itself out).

    Each term catches what the other misses: a few marker genes the map cannot produce (1), a cell
    explained worse than the reference cells where it was placed (2). 0 is a typical reference
    cell; 2 is exceeded by about 2% of reference cells if their scores are Gaussian. High values
    mean the map explains the cell worse than its own cells.
    """
    reference_excess = np.asarray(reference_excess, dtype=np.float64)
    floor = 1e-3 * float(np.median(reference_excess)) + 1e-12
    glob_ref = np.log(reference_excess + floor)
    glob = np.log(np.asarray(excess_scores, dtype=np.float64) + floor)
    loc_ref = local_error(
        reference_errors, reference_coords, reference_errors, reference_coords, leave_out_self=True
    )
    loc = local_error(errors, coords, reference_errors, reference_coords)
    ref = _z(glob_ref, glob_ref) + _z(loc_ref, loc_ref)
    return _z(_z(glob, glob_ref) + _z(loc, loc_ref), ref)
