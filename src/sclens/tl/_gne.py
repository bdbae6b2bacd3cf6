"""Generative neural embeddings (GNE): a learnable coordinate per cell and a decoder, no encoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scanpy import logging as logg
from scipy import sparse

from .._core.data import InputLayer, check_key, fit_pca, get_matrix, value_profile, warn_if_counts
from .._core.engine import Callback, CellSampler, Trainer, resolve_device
from .._core.generative import (
    excess_of,
    gene_errors,
    gene_thresholds,
    local_thresholds,
    place,
    tail_errors,
)
from .._core.graph import knn
from .._core.model import Model
from .._core.networks import CoordinateTable, Decoder, GenerativeMap
from .._core.objectives import NeighborAttraction, Reconstruction, Sum
from .._core.threads import fixed_threads
from ._common import jsonable, seeded, start_adata
from ._docs import doc_params, doc_run
from ._options import check_float, check_int, check_key_added, resolve_seed

__all__ = ["gne", "generate"]

#: standard deviation of the first map axis after initialisation; ``noise`` is in these units
INIT_STD = 10.0
#: reference cells stored in the model as starting positions and error distribution for projection
N_REFERENCE = 2000
MIN_CELLS = 20
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
            lib = np.asarray(X.sum(1)).ravel().clip(1)
            V = (
                (sparse.diags(1e4 / lib) @ X).log1p()
                if sparse.issparse(X)
                else np.log1p(X * (1e4 / lib)[:, None])
            )
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
    lib = X.sum(1, keepdims=True).clip(1)
    return np.log1p(X * (1e4 / lib)).astype(np.float32)


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


def check_init(adata: AnnData, init: str, n_components: int) -> None:
    if init in ("pca", "random"):
        return
    check_key(adata.obsm, init, "adata.obsm", "`init` is 'pca', 'random' or an .obsm key.")
    Y = adata.obsm[init]
    Y = Y.to_numpy() if isinstance(Y, pd.DataFrame) else np.asarray(Y)
    if Y.ndim != 2 or Y.shape[1] < n_components:
        raise ValueError(
            f"adata.obsm[{init!r}] has shape {Y.shape}; `init` needs at least "
            f"n_components={n_components} columns."
        )
    if not np.isfinite(np.asarray(Y, dtype=np.float64)).all():
        raise ValueError(f"adata.obsm[{init!r}] contains NaN or infinite values.")


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
@fixed_threads
@doc_params(doc_run=doc_run)
def gne(
    adata: AnnData,
    *,
    n_components: int = 2,
    layer: str | None = None,
    n_top_genes: int | None = None,
    hidden: int = 256,
    n_blocks: int = 4,
    noise: float = 1.0,
    likelihood: Literal["mse", "nb"] = "mse",
    init: Literal["pca", "random"] | str = "pca",
    neighbor_weight: float = 0.0,
    n_epochs: int = 60,
    batch_size: int = 512,
    learning_rate: float = 1e-3,
    coord_learning_rate: float = 3.0,
    device: Literal["auto", "cpu", "cuda"] | str = "auto",
    random_state: int | None = 0,
    key_added: str = "gne",
    copy: bool = False,
) -> AnnData | None:
    """Generative neural embedding: each cell owns a coordinate that a decoder turns back into its expression.

    Each cell i has a learnable coordinate e_i (``n_components``-D). A decoder G, a dense
    expansion layer (ELU), ``n_blocks`` residual blocks (Linear-ReLU-Linear added back) and an
    output layer, reconstructs the cell's expression from e_i. Coordinates and decoder are trained
    jointly on minibatches of cells, minimising the error of ``G(e_i + sigma_t * eps)``, eps
    standard Gaussian: the noise keeps similar cells close, since a decoder that must explain
    a cell from a blurred position is best served by neighbours that look alike. Its standard
    deviation ``sigma_t`` starts at ``noise`` and falls linearly to 0 over training, so the map
    organises early and the decoder fits exact positions at the end. The decoder is trained by
    Adam, the coordinates by lazy Adam (:class:`torch.optim.SparseAdam`: only the cells of the
    batch move, rather than every cell drifting on its decaying momentum). There is no
    encoder: the map is non-parametric, and the decoder makes it generative
    (:func:`sclens.tl.generate`, :func:`sclens.pl.gne_grid`). New cells are placed by optimising
    their coordinates against the frozen decoder (:func:`sclens.tl.project`), which also scores
    how novel they are (errors beyond what the reference's own cells show, gene by gene, overall
    and where the cell lies).

    Parameters
    ----------
    adata
        Annotated data matrix: log-normalised expression (``likelihood='mse'``) or raw counts
        (``likelihood='nb'``) in ``.X`` or ``layer``.
    n_components
        Dimensions of the map.
    layer
        Layer to read instead of ``.X``.
    n_top_genes
        Reconstruct only the genes of highest variance (on the log-normalised scale); ``None``:
        all genes of ``adata`` (e.g. after ``sc.pp.highly_variable_genes(..., subset=True)``).
    hidden
        Width of the decoder.
    n_blocks
        Residual blocks of the decoder.
    noise
        Initial standard deviation of the Gaussian noise added to coordinates during training,
        in map units (the initial map has standard deviation 10 along its first axis); it is
        annealed linearly to 0 over training.
    likelihood
        ``'mse'``: squared error on log-normalised expression. ``'nb'``: negative-binomial
        likelihood of raw counts (decoder outputs gene shares times the cell's total count,
        with one dispersion per gene).
    init
        ``'pca'`` (first principal components), ``'random'``, or an ``.obsm`` key whose first
        ``n_components`` columns are used; all are rescaled to standard deviation 10 on axis 1.
    neighbor_weight
        Weight of an attraction term ``log(1 + ||e_i - e_j||^2)`` on kNN pairs (15 neighbours
        in PCA space), the future work proposed by the GNE paper; 0 turns it off.
    n_epochs
        Passes over all cells.
    batch_size
        Cells per minibatch.
    learning_rate
        Adam learning rate of the decoder.
    coord_learning_rate
        Learning rate of the coordinates' lazy Adam (map units per step, roughly).
    {doc_run}

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Sets:

    ``adata.obsm['X_gne']``
        Coordinates, ``(n_obs, n_components)``.
    ``adata.uns['gne']['params']``
        The settings used, with ``coord_optimizer`` ('lazy adam') and ``noise_schedule``
        ('linear to 0').
    ``adata.uns['gne']['model']``
        Decoder weights and config, genes, and for projection up to 2,000 reference positions
        with their reconstruction errors, each gene's 99.5th-percentile error among them, the
        errors above it (sparse) and each reference cell's excess (the novelty baseline);
        :func:`sclens.tl.project`,
        :func:`sclens.tl.generate` and :func:`sclens.save_model` read it.
    ``adata.uns['gne']['history']``
        Loss per epoch.
    ``adata.uns['gne']['reconstruction']``
        ``error`` (mean over cells and genes at the final coordinates, no noise), ``gene_error``
        (per gene, in the order of ``genes``) and ``genes``.

    Examples
    --------
    >>> import scanpy as sc, sclens as sl
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> sl.tl.gne(adata, n_epochs=20)
    >>> profiles = sl.tl.generate(adata, [[0.0, 0.0], [10.0, 0.0]])  # decoded expression
    >>> sl.pl.gne_grid(adata, ["CST3", "NKG7"], show=False)
    """
    adata = start_adata(adata, "gne", copy)
    n_components = check_int(n_components, "n_components")
    if n_top_genes is not None:
        n_top_genes = check_int(n_top_genes, "n_top_genes", low=1, high=adata.n_vars)
    hidden = check_int(hidden, "hidden")
    n_blocks = check_int(n_blocks, "n_blocks", low=0)
    noise = check_float(noise, "noise", low=0)
    neighbor_weight = check_float(neighbor_weight, "neighbor_weight", low=0)
    n_epochs = check_int(n_epochs, "n_epochs")
    batch_size = check_int(batch_size, "batch_size")
    learning_rate = check_float(learning_rate, "learning_rate", low=0, low_open=True)
    coord_learning_rate = check_float(
        coord_learning_rate, "coord_learning_rate", low=0, low_open=True
    )
    random_state = resolve_seed(random_state)
    check_key_added(adata, key_added)
    resolve_device(device)
    start = logg.info("computing generative neural embedding (GNE)")
    if adata.n_obs < MIN_CELLS:
        raise ValueError(f"gne needs at least {MIN_CELLS} cells, got {adata.n_obs}.")
    check_init(adata, init, n_components)
    X, inp = gene_matrix(adata, layer, n_top_genes, likelihood)
    W = log_scale(X, likelihood)
    coords0 = init_coords(adata, W, init, n_components, random_state)
    neighbors = None
    if neighbor_weight > 0:
        mean, comps = fit_pca(W, min(50, W.shape[1]), random_state=random_state)
        neighbors, _ = knn(((W - mean) @ comps).astype(np.float32), 15, random_state=random_state)

    decoder = new_decoder(X, n_components, hidden, n_blocks, likelihood, random_state)
    model = GenerativeMap(CoordinateTable(coords0, sparse=True), decoder)
    trainer = fit_generative(
        model,
        X,
        likelihood=likelihood,
        noise=noise,
        n_epochs=n_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        coord_learning_rate=coord_learning_rate,
        neighbors=neighbors,
        neighbor_weight=neighbor_weight,
        device=device,
        random_state=random_state,
    )
    trainer.check_publishable("gne", any_of=("reconstruction",))
    # polish: each coordinate moves to its noise-free optimum with the decoder frozen, exactly as
    # a projected cell does, so reference and query errors are measured alike
    model = model.cpu().eval()
    trained = model.encoder.coords.detach().numpy().copy()
    projection = {"n_starts": 4, "steps": PLACE_STEPS, "learning_rate": PLACE_LR}
    coords = place(
        decoder,
        X,
        trained,
        starts=trained,
        steps=PLACE_STEPS,
        learning_rate=PLACE_LR,
        device=trainer.device,
        random_state=random_state,
    )
    decoder = decoder.cpu().eval()
    cell_err, gene_err = reconstruction_errors(decoder, coords, X)

    # what projection needs without the AnnData: starting positions, and for novelty each gene's
    # 99.5th-percentile error, the errors above it (for local thresholds: generative.excess) and
    # the reference cells' own excess (each leaving itself out of its neighbours)
    rng = np.random.default_rng(random_state)
    sub = np.sort(rng.choice(len(X), size=min(N_REFERENCE, len(X)), replace=False))
    sub_errors = np.concatenate([e for _, e in gene_errors(decoder, X[sub], coords[sub])])
    thresholds = gene_thresholds(sub_errors)
    tails = tail_errors(sub_errors, thresholds)
    local = local_thresholds(coords[sub], coords[sub], tails, thresholds, leave_out_self=True)
    arrays = {
        "ref.coords": coords[sub],
        "ref.error": cell_err[sub],
        "ref.gene_threshold": thresholds,
        "ref.tail_indptr": tails.indptr.astype(np.int64),
        "ref.tail_indices": tails.indices.astype(np.int32),
        "ref.tail_values": tails.data,
        "ref.excess": excess_of(sub_errors, local),
    }
    stored = Model.with_decoder(
        "gne",
        inp,
        decoder,
        arrays,
        projection=projection,
        library_size=float(np.median(X.sum(1))) if likelihood == "nb" else None,
    )
    params = jsonable(
        dict(
            n_components=n_components,
            layer=layer,
            n_top_genes=n_top_genes,
            hidden=hidden,
            n_blocks=n_blocks,
            noise=noise,
            likelihood=likelihood,
            init=init,
            neighbor_weight=neighbor_weight,
            n_epochs=n_epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            coord_learning_rate=coord_learning_rate,
            coord_optimizer="lazy adam",
            noise_schedule="linear to 0",
            random_state=random_state,
            device=str(trainer.device),
            interrupted=trainer.interrupted,
            finished_phases=trainer.finished_phases,
        )
    )
    adata.obsm[f"X_{key_added}"] = coords
    adata.uns[key_added] = {
        "params": params,
        "model": stored.to_uns(),
        "history": trainer.history_arrays(),
        "reconstruction": {
            "error": float(cell_err.mean()),
            "gene_error": gene_err,
            "genes": np.asarray(inp.var_names, dtype=str),
        },
    }
    logg.info(
        "    finished",
        time=start,
        deep=f"added\n    'X_{key_added}', coordinates (adata.obsm)\n"
        f"    '{key_added}', params, model, history and reconstruction error (adata.uns)",
    )
    return adata if copy else None


@fixed_threads
def generate(adata: AnnData | Model, coords, *, model_key: str = "gne") -> AnnData:
    """Decoded expression profiles at given map coordinates.

    Parameters
    ----------
    adata
        AnnData holding a GNE model in ``uns[model_key]``, or a :class:`~sclens.Model`.
    coords
        Map coordinates, ``(n_points, n_components)``.
    model_key
        Key of the GNE map.

    Returns
    -------
    A new AnnData with one observation per coordinate and the model's genes as variables; ``.X``
    holds the decoded expression (log-normalised for ``likelihood='mse'``; for ``'nb'``, the
    expected counts at the reference's median total count), ``.obsm['X_' + model_key]`` the
    coordinates.
    """
    from ._project import _reference_model

    model = _reference_model(adata, model_key)
    if model.method != "gne":
        raise ValueError(
            f"`generate` needs a GNE model; uns[{model_key!r}] holds a {model.method!r} model."
        )
    decoder = model.decoder()
    d = decoder.config["n_components"]
    Z = np.asarray(coords, dtype=np.float32)
    if Z.ndim == 1 and Z.size == d:
        Z = Z[None, :]
    if Z.ndim != 2 or Z.shape[1] != d:
        raise ValueError(f"coords must have shape (n_points, {d}), got {np.shape(coords)}.")
    if not np.isfinite(Z).all():
        raise ValueError("coords contain NaN or infinite values.")
    profiles = decoder.decode(Z)
    if decoder.config["likelihood"] == "nb":
        profiles = profiles * float(model.config.get("library_size", 1e4))
    out = AnnData(
        profiles.astype(np.float32),
        var=pd.DataFrame(index=pd.Index(model.input_layer.var_names, dtype=str)),
    )
    out.obs_names = [f"generated_{i}" for i in range(len(Z))]
    out.obsm[f"X_{model_key}"] = Z
    return out
