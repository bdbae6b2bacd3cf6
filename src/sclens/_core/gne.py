"""GNE's building blocks: the matrix it reconstructs, the coordinate table's start, the residual
decoder and reconstruction training (shared with the autoencoder baseline of the benchmarks).

:func:`sclens.tl.gne` runs them; :mod:`sclens._core.generative` places new cells and scores
novelty against the trained decoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse

from .data import (
    InputLayer,
    fit_pca,
    get_matrix,
    log_cp10k,
    value_profile,
    warn_if_counts,
)
from .engine import Callback, CellSampler, Trainer
from .generative import (
    excess,
    excess_of,
    gene_errors,
    gene_thresholds,
    local_level,
    local_thresholds,
    novelty,
    place,
    smooth_over_query,
    tail_errors,
)
from .networks import CoordinateTable, Decoder, GenerativeMap
from .objectives import NeighborAttraction, Reconstruction, Sum
from .recipe import seeded

__all__ = [
    "INIT_STD",
    "N_REFERENCE",
    "PLACE_STEPS",
    "PLACE_LR",
    "gene_matrix",
    "log_scale",
    "init_coords",
    "new_decoder",
    "fit_generative",
    "reconstruction_errors",
    "reference_arrays",
    "place_on_decoder",
]

#: standard deviation of the first map axis after initialisation; ``noise`` is in these units
INIT_STD = 10.0
#: reference cells stored in the model as starting positions and error distribution for projection
N_REFERENCE = 2000
#: learning rates decay linearly to this fraction over training (GNE and the autoencoder alike)
FINAL_LR_FRACTION = 1.0
#: Adam steps and learning rate of placing a cell with the decoder frozen (polish and projection)
PLACE_STEPS = 20
PLACE_LR = 0.1


# -- pieces shared by GNE and its autoencoder baseline ------------------------------------------
def gene_matrix(
    adata: AnnData, layer: str | None, n_top_genes: int | None, likelihood: str
) -> tuple[np.ndarray, InputLayer]:
    """The expression the decoder reconstructs (dense float32) and the input layer naming it."""
    if likelihood not in ("mse", "nb"):
        raise ValueError(
            f"likelihood must be 'mse' (log-normalised expression) or 'nb' (raw counts), got {likelihood!r}."
        )
    X = get_matrix(adata, layer)
    what = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    var_names = np.asarray(adata.var_names, dtype=str)
    if pd.Index(var_names).has_duplicates:
        raise ValueError(
            "adata.var_names has duplicates; run `adata.var_names_make_unique()` first."
        )
    profile = value_profile(X)
    integer = profile.integer
    if likelihood == "mse":
        warn_if_counts(profile, what, "gne", hint=", or pass likelihood='nb' to model the counts")
    if likelihood == "nb":
        values = X.data if sparse.issparse(X) else X
        if not integer or (values.size and values.min() < 0):
            raise ValueError(
                f"likelihood='nb' needs raw counts (non-negative integers), but {what} holds "
                "non-integer or negative values. Pass `layer=` naming the counts layer, or use "
                "likelihood='mse' for log-normalised expression."
            )
    if n_top_genes is not None:
        if not 1 <= int(n_top_genes) <= adata.n_vars:
            raise ValueError(f"n_top_genes must be in [1, {adata.n_vars}], got {n_top_genes}.")
        V = X
        if likelihood == "nb":  # rank genes on the log-normalised scale
            V = log_cp10k(X)
        Vf = V.astype(np.float64)
        m = np.asarray(Vf.mean(0)).ravel()
        sq = Vf.multiply(Vf) if sparse.issparse(Vf) else Vf**2
        var = np.asarray(sq.mean(0)).ravel() - m**2
        keep = np.sort(np.argsort(-var, kind="stable")[: int(n_top_genes)])
        X, var_names = X[:, keep], var_names[keep]
    X = X.toarray() if sparse.issparse(X) else np.asarray(X)
    X = X.astype(np.float32)
    inp = InputLayer(
        "genes",
        layer,
        X.mean(0).astype(np.float64),
        None,
        1.0,
        var_names,
        integer,
        value_profile(X).negative,
    )
    return X, inp


def log_scale(X: np.ndarray, likelihood: str) -> np.ndarray:
    """The data on a log-normalised scale: as given (mse) or ``log1p`` of counts per 10k (nb)."""
    if likelihood == "mse":
        return X
    return log_cp10k(X).astype(np.float32)


def init_coords(
    adata: AnnData, W: np.ndarray, init: str, n_components: int, random_state: int
) -> np.ndarray:
    """Initial coordinates, scaled so that the first axis has standard deviation ``INIT_STD``.

    ``W`` is the expression on a log-normalised scale (for ``init='pca'``).
    """
    if init == "random":
        Y = np.random.default_rng(random_state).standard_normal((len(W), n_components))
    elif init == "pca":
        if W.shape[1] < n_components:
            W = np.pad(W, ((0, 0), (0, n_components - W.shape[1])))
        mean, comps = fit_pca(W, n_components, random_state=random_state)
        Y = (W - mean) @ comps
        if Y.shape[1] < n_components:  # fewer cells than components
            Y = np.pad(Y, ((0, 0), (0, n_components - Y.shape[1])))
    else:
        Y = np.asarray(adata.obsm[init], dtype=np.float64)
        Y = Y[:, :n_components] - Y[:, :n_components].mean(0)
    sd = float(Y[:, 0].std()) or 1.0
    return (Y * (INIT_STD / sd)).astype(np.float32)


def new_decoder(
    X: np.ndarray, n_components: int, hidden: int, n_blocks: int, likelihood: str, random_state: int
) -> Decoder:
    """A decoder whose output bias starts at the mean profile (mse) or mean shares (nb).

    The expansion layer's initial weights are divided by ``INIT_STD``, as if it read coordinates
    of unit scale.
    """
    with seeded(random_state):
        dec = Decoder(n_components, X.shape[1], hidden, n_blocks, likelihood)
    with torch.no_grad():
        dec.expand[0].weight /= INIT_STD  # coordinates are in map units (sd ~ INIT_STD)
        if likelihood == "mse":
            dec.out.bias.copy_(torch.as_tensor(X.mean(0)))
        else:
            share = X.sum(0) / max(float(X.sum()), 1.0)
            dec.out.bias.copy_(torch.as_tensor(np.log(share + 1e-8)))
    return dec


def fit_generative(
    model: GenerativeMap,
    X: np.ndarray,
    *,
    likelihood: str,
    noise: float,
    n_epochs: int,
    batch_size: int,
    learning_rate: float,
    coord_learning_rate: float,
    neighbors: np.ndarray | None = None,
    neighbor_weight: float = 0.0,
    anneal_noise: bool = True,
    device: str = "auto",
    random_state: int = 0,
    callbacks: Sequence[Callback] = (),
) -> Trainer:
    """Train an encoder + decoder on reconstruction: GNE (coordinate table) or an autoencoder.

    ``noise`` is the coordinate noise's initial standard deviation; with ``anneal_noise`` it falls
    linearly to 0 over training. A :class:`CoordinateTable` with ``sparse=True`` is trained by
    lazy Adam (only the batch's rows move) at ``coord_learning_rate``, the decoder by Adam.
    """
    trainer = Trainer(model, device=device, random_state=random_state)
    objective = Reconstruction(
        torch.as_tensor(X),
        likelihood,
        noise=noise,
        generator=trainer.generator,
        anneal=anneal_noise,
    )
    if neighbor_weight > 0:
        attraction = NeighborAttraction(torch.as_tensor(neighbors), generator=trainer.generator)
        objective = Sum([objective, attraction], [1.0, neighbor_weight])
    coords = isinstance(model.encoder, CoordinateTable)
    groups = [
        {
            "params": list(model.encoder.parameters()),
            "lr": coord_learning_rate if coords else learning_rate,
            "sparse": coords and model.encoder.sparse,
        },
        {"params": list(model.decoder.parameters())},
    ]
    trainer.optimize(
        objective,
        CellSampler(len(X), batch_size),
        n_epochs=n_epochs,
        learning_rate=learning_rate,
        phase="reconstruction",
        parameters=groups,
        callbacks=callbacks,
        final_lr_fraction=FINAL_LR_FRACTION,
    )
    return trainer


def reconstruction_errors(
    decoder: Decoder, coords: np.ndarray, X: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell and per-gene errors (:func:`cell_error`) of the decoded coordinates, no noise."""
    decoder = decoder.cpu().eval()
    per_cell, gene_sum = np.empty(len(X)), np.zeros(X.shape[1])
    for s, e in gene_errors(decoder, X, coords):
        per_cell[s : s + len(e)] = e.mean(1)
        gene_sum += e.sum(0)
    return per_cell, gene_sum / len(X)


# -- the public function ------------------------------------------------------------------------


# -- the reference a GNE model carries for projection: written by sl.tl.gne, read by project --
#: arrays of the reference; a model without them was made before projection stored them
REFERENCE_ARRAYS = ("ref.coords", "ref.gene_threshold", "ref.tail_indptr", "ref.excess")


def reference_arrays(
    decoder: Decoder, X: np.ndarray, coords: np.ndarray, cell_err: np.ndarray, random_state: int
) -> dict[str, np.ndarray]:
    """What projection needs without the AnnData, for up to ``N_REFERENCE`` reference cells:
    their positions (starts) and errors, each gene's 99.5th-percentile error, the errors above
    it (for local thresholds, :func:`sclens._core.generative.excess`) and the cells' own excess
    (each leaving itself out of its neighbours)."""
    rng = np.random.default_rng(random_state)
    sub = np.sort(rng.choice(len(X), size=min(N_REFERENCE, len(X)), replace=False))
    sub_errors = np.concatenate([e for _, e in gene_errors(decoder, X[sub], coords[sub])])
    thresholds = gene_thresholds(sub_errors)
    tails = tail_errors(sub_errors, thresholds)
    local = local_thresholds(coords[sub], coords[sub], tails, thresholds, leave_out_self=True)
    return {
        "ref.coords": coords[sub],
        "ref.error": cell_err[sub],
        "ref.gene_threshold": thresholds,
        "ref.tail_indptr": tails.indptr.astype(np.int64),
        "ref.tail_indices": tails.indices.astype(np.int32),
        "ref.tail_values": tails.data,
        "ref.excess": excess_of(sub_errors, local),
    }


def place_on_decoder(
    decoder: Decoder,
    arrays: dict[str, np.ndarray],
    settings: dict,
    X: np.ndarray,
    device,
    novelty_neighbors: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GNE projection with the stored reference (``arrays`` of :func:`reference_arrays`):
    multi-start optimisation against the frozen decoder, then novelty per cell and relative to
    the reference cells where each cell lies, averaged over its nearest query cells.

    Returns the coordinates, the relative (group) novelty and the per-cell novelty."""
    ref_coords = np.asarray(arrays["ref.coords"], dtype=np.float32)
    coords = place(
        decoder,
        X,
        ref_coords,
        n_starts=int(settings.get("n_starts", 4)),
        steps=int(settings.get("steps", PLACE_STEPS)),
        learning_rate=float(settings.get("learning_rate", PLACE_LR)),
        device=device,
    )
    thresholds = np.asarray(arrays["ref.gene_threshold"], dtype=np.float64)
    tails = sparse.csr_matrix(
        (arrays["ref.tail_values"], arrays["ref.tail_indices"], arrays["ref.tail_indptr"]),
        shape=(len(ref_coords), len(thresholds)),
    )
    ref_excess = np.asarray(arrays["ref.excess"], dtype=np.float64)
    score = novelty(excess(decoder, X, coords, thresholds, ref_coords, tails), ref_excess)
    level = local_level(coords, ref_coords, novelty(ref_excess, ref_excess))
    relative = smooth_over_query(score - level, X, decoder.config["likelihood"], novelty_neighbors)
    return coords, relative, score
