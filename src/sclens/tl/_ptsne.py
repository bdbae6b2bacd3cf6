"""Parametric t-SNE (salient-SNE): a network that maps cells (genes) to a t-SNE map."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from anndata import AnnData

from .._core.data import obsm_init, prepare_input
from .._core.engine import CellSampler, resolve_device
from .._core.graph import TSNE_NEIGHBORS_PER_PERPLEXITY, neighbor_graph, tsne_n_neighbors
from .._core.model import Model
from .._core.objectives import Classification, balanced_weights
from .._core.recipe import (
    NETWORK_HIDDEN,
    Phase,
    Run,
    neighbor_map,
    neighbor_phases,
    network_start,
    network_trainer,
    settings_of,
)
from .._core.threads import fixed_threads
from ._common import categorical_labels, start_adata
from ._docs import doc_batches, doc_input, doc_params, doc_run
from ._options import check_key_added, checked_options

__all__ = ["ptsne"]


@fixed_threads
@doc_params(doc_input=doc_input, doc_run=doc_run, doc_batches=doc_batches)
@checked_options()
def ptsne(
    adata: AnnData,
    *,
    n_components: int = 2,
    perplexity: float = 30.0,
    use_rep: str | None = None,
    n_pcs: int | None = 50,
    layer: str | None = None,
    labels: str | None = None,
    init: str = "random",
    hidden: Sequence[int] = NETWORK_HIDDEN,
    n_epochs: int | None = None,
    n_pretrain_epochs: int = 20,
    early_exaggeration: float = 4.0,
    exaggeration_fraction: float = 0.25,
    batch_size: int = 1024,
    learning_rate: float = 1e-2,
    final_lr_fraction: float = 0.1,
    batches: Literal["edges", "cells"] = "edges",
    device: Literal["auto", "cpu", "cuda"] | str = "auto",
    random_state: int | None = 0,
    key_added: str = "ptsne",
    copy: bool = False,
) -> AnnData | None:
    """Parametric t-SNE: train a network that maps each cell to a t-SNE map.

    The network minimises KL(P || Q) between t-SNE affinities P (calibrated to ``perplexity`` on
    the kNN graph of the whole data set) and the Cauchy similarities Q of the coordinates, by
    minibatches of graph edges (attraction) and of random pairs (repulsion, normalised as in
    t-SNE). With genes as input, the PCA projection is the network's frozen first layer, so the
    model maps *genes* to coordinates and :func:`sclens.tl.project` places new cells with a
    forward pass.

    With ``labels``, the salient-SNE supervised pretraining runs first: a classifier on the same
    trunk learns the labels for ``n_pretrain_epochs``, then the embedding is trained with t-SNE.

    Parameters
    ----------
    adata
        Annotated data matrix (log-normalised expression in ``.X`` or ``layer``).
    n_components
        Dimensions of the map.
    perplexity
        t-SNE perplexity; the graph holds ``2 * perplexity`` neighbours per cell.
    {doc_input}
    labels
        ``.obs`` column for supervised pretraining (unlabelled cells, NaN, are ignored).
    init
        Where the map starts. ``'random'`` (default): the network's random initialisation as
        it is. Otherwise the network is first fitted to starting coordinates (about 300 steps),
        then trained with t-SNE: ``'spectral'``, the kNN graph's Laplacian eigenmaps (UMAP's
        start; approximated, 1-3 s at 56,000 cells), ``'pca'``, the first principal
        components, or an ``.obsm`` key, that map (e.g. ``'X_umap'``). On 56,000 digits the
        spectral start kept two digits from sharing one place on 6 of 7 runs (the random start
        on none), but on one of 30 noisy planted-marker draws it collapsed the map to a point
        (``docs/methods/ardr.md``), so it is not the default.
    hidden
        Widths of the network's hidden layers.
    n_epochs
        Epochs of t-SNE training; one epoch samples ``n_obs`` edges. ``None``: 200 passes over the
        cells, between 1,500 and 3,000 steps.
    n_pretrain_epochs
        Epochs of the classifier pretraining (only with ``labels``).
    early_exaggeration
        Factor on the attraction during the first ``exaggeration_fraction`` of the epochs.
    exaggeration_fraction
        Fraction of ``n_epochs`` spent with early exaggeration.
    batch_size
        Edges (or cells, ``batches='cells'``) per minibatch.
    learning_rate
        Adam learning rate.
    final_lr_fraction
        The learning rate decays linearly to this fraction of itself over the main phase.
    batches
        How the forces are sampled: {doc_batches}
    {doc_run}

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Sets:

    ``adata.obsm['X_ptsne']``
        Coordinates, ``(n_obs, n_components)``.
    ``adata.uns['ptsne']['params']``
        The settings used.
    ``adata.uns['ptsne']['model']``
        The trained model (config + arrays); :func:`sclens.tl.project` and
        :func:`sclens.save_model` read it.
    ``adata.uns['ptsne']['history']``
        Loss per epoch and phase.
    ``adata.uns['ptsne']['timings']``
        Wall-clock seconds of each stage: ``input`` (PCA layer and features), ``graph`` (kNN
        and affinities), ``start`` (the starting coordinates of ``init``, unless ``'random'``),
        ``training`` and
        ``transform`` (coordinates of all cells).
    """
    adata = start_adata(adata, "ptsne", copy, backed_ok=True)
    check_key_added(adata, key_added)
    init_given = obsm_init(adata, init, n_components, ("spectral", "pca", "random"))
    resolve_device(device)
    needed = tsne_n_neighbors(perplexity) + 1
    if adata.n_obs < needed:
        raise ValueError(
            f"ptsne with perplexity={perplexity} needs at least {needed} cells "
            f"({TSNE_NEIGHBORS_PER_PERPLEXITY} x perplexity + 1), got {adata.n_obs}. Lower "
            f"`perplexity` (at most {max((adata.n_obs - 1) // TSNE_NEIGHBORS_PER_PERPLEXITY, 1)} "
            "here)."
        )
    run = Run("computing parametric t-SNE")
    codes = classes = None
    if labels is not None:
        codes, classes, labelled = categorical_labels(adata, labels)
    with run.stage("input"):
        inp, features = prepare_input(
            adata,
            use_rep=use_rep,
            n_pcs=n_pcs,
            layer=layer,
            random_state=random_state,
            func="ptsne",
        )
    with run.stage("graph"):
        graph = neighbor_graph(
            features,
            affinity="tsne",
            perplexity=perplexity,
            adata=adata,
            use_rep=use_rep,
            n_pcs=n_pcs,
            random_state=random_state,
        )
    network, trainer = network_trainer(
        features,
        hidden,
        n_components,
        n_classes=len(classes) if classes else 0,
        device=device,
        random_state=random_state,
    )
    phases, groups = [], None
    if labels is not None:
        keep = np.flatnonzero(labelled)
        phases.append(
            Phase(
                "pretrain",
                Classification(balanced_weights(codes[keep], len(classes))),
                CellSampler(adata.n_obs, min(batch_size, 256), codes, cells=keep),
                n_pretrain_epochs,
                learning_rate,
            )
        )
        # after pretraining, the trunk keeps what it learnt from the labels: it moves 10x slower
        groups = [
            {"params": list(network.trunk.parameters()), "lr": 0.1 * learning_rate},
            {"params": list(network.embed.parameters())},
        ]
    # the t-SNE end of ardr's forces on a network, with ptsne's own defaults
    tsne, resolved = neighbor_map(
        "tsne",
        n_cells=adata.n_obs,
        parametric=True,
        batch_size=batch_size,
        n_epochs=n_epochs,
        learning_rate=learning_rate,
        early_exaggeration=early_exaggeration,
        exaggeration_fraction=exaggeration_fraction,
        final_lr_fraction=final_lr_fraction,
        exact_repulsion=False,
        batches=batches,
    )
    n_epochs = resolved["n_epochs"]  # recorded in params
    start = network_start(run, init, features, graph, n_components, random_state, given=init_given)
    phases += neighbor_phases(
        tsne,
        graph,
        trainer,
        parametric=True,
        n_epochs=n_epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        parameters=groups,
        start=start,
    )
    run.train(trainer, phases)
    trainer.check_publishable("ptsne", any_of=("exaggeration", "embedding"))
    network = network.cpu().eval()
    with run.stage("transform"):
        coords = network.transform(features)
    params = settings_of(
        ptsne,
        locals(),
        n_pretrain_epochs=n_pretrain_epochs if labels else None,
        n_edges=len(graph.weights),
        **run.trained(),
    )
    model = Model.from_parts("ptsne", inp, network, classes=classes)
    run.write(
        adata,
        key_added,
        {"params": params, "model": model.to_uns()},
        obsm={f"X_{key_added}": coords},
    )
    return adata if copy else None
