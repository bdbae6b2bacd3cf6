"""Generative neural embeddings (GNE): a learnable coordinate per cell and a decoder, no encoder."""

from __future__ import annotations

from typing import Literal

import numpy as np
from anndata import AnnData

from .._core.data import fit_pca, obsm_init
from .._core.engine import resolve_device
from .._core.generative import place
from .._core.gne import (
    PLACE_LR,
    PLACE_STEPS,
    fit_generative,
    gene_matrix,
    init_coords,
    log_scale,
    new_decoder,
    reconstruction_errors,
    reference_arrays,
)
from .._core.graph import knn
from .._core.model import Model
from .._core.networks import CoordinateTable, GenerativeMap
from .._core.recipe import Run, settings_of
from .._core.threads import fixed_threads
from ._common import start_adata
from ._docs import doc_params, doc_run
from ._options import check_int, check_key_added, checked_options, int_option, one_of

__all__ = ["gne"]

MIN_CELLS = 20


@fixed_threads
@doc_params(doc_run=doc_run)
@checked_options(
    hidden=int_option(),
    likelihood=one_of({"mse": "log-normalised expression", "nb": "raw counts"}),
)
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
    ``adata.uns['gne']['timings']``
        Seconds per stage: ``input``, ``graph`` (with ``neighbor_weight``), ``training``,
        ``transform`` (the noise-free polish of every cell's position).
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
    if n_top_genes is not None:
        n_top_genes = check_int(n_top_genes, "n_top_genes", low=1, high=adata.n_vars)
    check_key_added(adata, key_added)
    resolve_device(device)
    if adata.n_obs < MIN_CELLS:
        raise ValueError(f"gne needs at least {MIN_CELLS} cells, got {adata.n_obs}.")
    obsm_init(adata, init, n_components, ("pca", "random"))
    run = Run("computing generative neural embedding (GNE)")
    with run.stage("input"):
        X, inp = gene_matrix(adata, layer, n_top_genes, likelihood)
        W = log_scale(X, likelihood)
        coords0 = init_coords(adata, W, init, n_components, random_state)
    neighbors = None
    if neighbor_weight > 0:
        with run.stage("graph"):
            mean, comps = fit_pca(W, min(50, W.shape[1]), random_state=random_state)
            pcs = ((W - mean) @ comps).astype(np.float32)
            neighbors, _ = knn(pcs, 15, random_state=random_state)

    decoder = new_decoder(X, n_components, hidden, n_blocks, likelihood, random_state)
    model = GenerativeMap(CoordinateTable(coords0, sparse=True), decoder)
    with run.stage("training"):
        run.trainer = trainer = fit_generative(
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
    with run.stage("transform"):
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

    arrays = reference_arrays(decoder, X, coords, cell_err, random_state)
    stored = Model.with_decoder(
        "gne",
        inp,
        decoder,
        arrays,
        projection=projection,
        library_size=float(np.median(X.sum(1))) if likelihood == "nb" else None,
    )
    params = settings_of(
        gne, locals(), coord_optimizer="lazy adam", noise_schedule="linear to 0", **run.trained()
    )
    reconstruction = {
        "error": float(cell_err.mean()),
        "gene_error": gene_err,
        "genes": np.asarray(inp.var_names, dtype=str),
    }
    run.write(
        adata,
        key_added,
        {"params": params, "model": stored.to_uns(), "reconstruction": reconstruction},
        obsm={f"X_{key_added}": coords},
    )
    return adata if copy else None
