"""Attraction-repulsion DR: t-SNE, UMAP and everything between, LLE, and PCA / MDS as forces."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Literal

from anndata import AnnData

from .._core.ardr import fit_ardr
from .._core.data import obsm_init
from .._core.engine import resolve_device
from .._core.graph import tsne_n_neighbors
from .._core.recipe import NETWORK_HIDDEN, Run, settings_of
from .._core.threads import fixed_threads
from ._common import start_adata
from ._docs import doc_batches, doc_input, doc_params, doc_run
from ._options import check_key_added, checked_options, int_option

__all__ = ["ardr"]

#: above this many cells, exact classical MDS (a dense n x n target) is refused
MAX_DENSE_CELLS = 20_000


@fixed_threads
@doc_params(doc_input=doc_input, doc_run=doc_run, doc_batches=doc_batches)
@checked_options(n_neighbors=int_option(2))
def ardr(
    adata: AnnData,
    *,
    method: Literal["tsne", "umap", "lle", "pca", "mds"] = "tsne",
    normalization: float | None = None,
    parametric: bool = False,
    n_components: int = 2,
    use_rep: str | None = None,
    n_pcs: int | None = 50,
    layer: str | None = None,
    perplexity: float = 30.0,
    n_neighbors: int = 15,
    min_dist: float = 0.5,
    metric: Literal["euclidean", "sqeuclidean", "cosine", "correlation"] = "euclidean",
    sampled_pairs: int | None = None,
    exact_repulsion: bool | None = None,
    init: str | None = None,
    n_epochs: int | None = None,
    learning_rate: float | None = None,
    batch_size: int = 1024,
    early_exaggeration: float | None = None,
    exaggeration_fraction: float = 0.25,
    final_lr_fraction: float | None = None,
    batches: Literal["auto", "edges", "cells"] = "auto",
    hidden: Sequence[int] = NETWORK_HIDDEN,
    device: Literal["auto", "cpu", "cuda"] | str = "auto",
    random_state: int | None = 0,
    key_added: str = "ardr",
    copy: bool = False,
) -> AnnData | None:
    """Attraction-repulsion dimensionality reduction: t-SNE, UMAP, and PCA/MDS as forces.

    Every method moves points by pairwise forces; they differ in which pairs attract and repel
    and how strongly.

    - ``'tsne'``/``'umap'``: cells attract along the edges of the kNN graph (t-SNE affinities at
      ``perplexity``, or UMAP memberships of ``n_neighbors``) and repel all other cells.
      ``normalization`` in [0, 1] chooses the repulsion: 1 divides by the sum of all
      low-dimensional similarities (t-SNE), 0 does not (UMAP), values between mix the two, so one
      parameter walks from UMAP-like to t-SNE-like maps (``method`` picks the graph, the kernel and
      the default ``normalization``: 1 for ``'tsne'``, 0 for ``'umap'``).
    - ``'lle'``: locally linear embedding. Each cell is reconstructed from its ``n_neighbors``
      nearest neighbours; with ``normalization=None`` the map is LLE's own (the eigenvectors of
      ``(I - W)^T (I - W)``, as ``sklearn.manifold.LocallyLinearEmbedding``): a quadratic
      attraction along the reconstruction weights whose only repulsion is an orthonormality
      constraint. With ``normalization`` in [0, 1] the positive reconstruction weights are the
      affinities of the attraction-repulsion forces above (the UMAP kernel of ``min_dist``):
      Draganov & Dohn's observation that a small change makes LLE reproduce UMAP (0) or, here,
      t-SNE-like maps (1). See ``docs/methods/ardr.md``.
    - ``'pca'``: from random points, gradient descent on ``||C (X X^T - Y Y^T) C||_F^2``. Each step
      is ``y_j += lr * sum_i F_ij (y_j - y_i)`` with ``F`` proportional to the difference of the
      double-centred squared-distance matrices of data and map; the minimiser is the PCA
      embedding up to rotation. The result is rotated to its own principal axes, so its columns
      are the principal components up to sign.
    - ``'mds'``: the same forces on the distances of ``metric`` (classical MDS; with
      ``'euclidean'`` it equals PCA).

    With ``parametric=True`` a network (genes or ``use_rep`` -> coordinates) is trained with the
    same forces instead of a coordinate table; :func:`sclens.tl.project` then maps new cells.

    Parameters
    ----------
    adata
        Annotated data matrix (log-normalised expression in ``.X`` or ``layer``).
    method
        ``'tsne'``, ``'umap'``, ``'lle'``, ``'pca'`` or ``'mds'``.
    normalization
        ``'tsne'``/``'umap'``/``'lle'`` only: 0 (UMAP-like) to 1 (t-SNE-like); ``None``: 1 for
        ``'tsne'``, 0 for ``'umap'``, classical LLE (no forces) for ``'lle'``.
    parametric
        Train a network instead of free coordinates.
    n_components
        Dimensions of the map.
    {doc_input}
    perplexity
        ``'tsne'``: perplexity of the affinities (``2 * perplexity`` neighbours per cell).
    n_neighbors
        ``'umap'``/``'lle'``: neighbours per cell.
    min_dist
        ``'umap'``/``'lle'``: UMAP's ``min_dist``, which sets the kernel ``1 / (1 + a d^{{2b}})``.
    metric
        ``'mds'``: distance between cells (``'sqeuclidean'`` squares euclidean distances once
        more).
    sampled_pairs
        ``'pca'``/``'mds'``: ``None`` computes the exact forces between all pairs every step
        (full-batch gradient descent; PCA then agrees with ``sc.pp.pca`` to within numerical
        precision). An integer m gives stochastic forces between the pairs of m random cells per
        step, for large data sets; singular values come out slightly too large (each batch is
        centred on its own mean; accuracy in ``docs/methods/ardr.md``).
    exact_repulsion
        ``'tsne'``/``'umap'`` coordinates: repel each cell of a batch from every cell (cost
        ``n`` per cell) instead of from 256 random cells. ``None``: exact up to 1,000 cells.
    init
        Starting coordinates: ``'random'`` (small Gaussian; default for ``'pca'``/``'mds'``),
        ``'pca'`` (default for ``'tsne'``/``'umap'`` tables), ``'spectral'`` (the kNN graph's
        Laplacian eigenmaps, approximated) or an ``.obsm`` key. A network of a graph method is
        first fitted to these coordinates; ``'random'`` (its default) leaves it as initialised
        (see ``init`` of :func:`sclens.tl.ptsne`); networks of ``'pca'``/``'mds'`` do not use it.
    n_epochs
        Training epochs. ``'tsne'``/``'umap'``: an epoch is a pass over all cells (coordinates)
        or ``n_obs`` sampled edges (networks); ``None``: at
        least 2,000 steps for coordinates (the network recipe of ``ptsne`` for networks).
        ``'pca'``/``'mds'``: an epoch is one pass over the cells (one step when exact); ``None``:
        up to 1,000 exact steps (stopping once the loss is stable), 100 sampled epochs.
    learning_rate
        ``None``: Adam at 0.5 for coordinates and 1e-2 for networks (``'tsne'``/``'umap'``);
        plain gradient descent at 0.125 in units of the inverse largest eigenvalue of the target
        (``'pca'``/``'mds'`` coordinates), which converges for values below 0.25.
    batch_size
        ``'tsne'``/``'umap'``/``'lle'``: cells or edges per minibatch (see ``batches``); cells
        per minibatch for a network trained on ``'pca'``/``'mds'`` forces without
        ``sampled_pairs``.
    early_exaggeration
        Factor on the attraction during the first ``exaggeration_fraction`` of the epochs;
        ``None``: 4 when ``normalization > 0``, else 1.
    exaggeration_fraction
        Fraction of ``n_epochs`` spent with early exaggeration (``'tsne'``/``'umap'``/``'lle'``).
    final_lr_fraction
        The learning rate decays linearly to this fraction of itself over the main phase
        (``'tsne'``/``'umap'``/``'lle'``); ``None``: 0.1, for coordinates and networks alike.
    batches
        ``'tsne'``/``'umap'``/``'lle'``: how the forces are sampled (``'auto'``: edges for a
        network, cells for coordinates): {doc_batches}
    hidden
        Widths of the network's hidden layers (``parametric=True``).
    {doc_run}

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Sets:

    ``adata.obsm['X_' + key_added]``
        Coordinates, ``(n_obs, n_components)``.
    ``adata.obsp[key_added + '_connectivities']``
        ``'tsne'``/``'umap'``/``'lle'``: the symmetric affinity graph the attractions act on (read by
        :func:`sclens.pl.forces`).
    ``adata.uns[key_added]['params']``
        The settings used (including the kernel's ``a``, ``b`` and ``normalization``).
    ``adata.uns[key_added]['history']``
        Loss per epoch and phase.
    ``adata.uns[key_added]['timings']``
        Wall-clock seconds of each stage (``input``, ``graph``, ``training``, ...).
    ``adata.uns[key_added]['eigenvalues']``
        Classical ``'lle'``: the eigenvalues of the map's eigenvectors.
    ``adata.uns[key_added]['singular_values']``
        ``'pca'``/``'mds'``: singular values of the centred map.
    ``adata.uns[key_added]['model']``
        ``parametric=True``: the trained model, read by :func:`sclens.tl.project`.
    """
    # -- validate everything before anything is computed or written ----------------------------
    adata = start_adata(adata, "ardr", copy, backed_ok=True)
    classical = method == "lle" and normalization is None
    graph_method = method in ("tsne", "umap", "lle") and not classical
    if normalization is not None and not graph_method:
        raise ValueError(
            f"`normalization` applies to method='tsne', 'umap' or 'lle', not {method!r}; "
            "leave it None."
        )
    check_key_added(adata, key_added)
    if sampled_pairs is not None and graph_method:
        raise ValueError("`sampled_pairs` applies to method='pca' or 'mds'.")
    if method == "mds" and sampled_pairs is None and adata.n_obs > MAX_DENSE_CELLS:
        raise ValueError(
            f"Exact classical MDS forms an n x n matrix; {adata.n_obs} cells is more than "
            f"{MAX_DENSE_CELLS}. Pass `sampled_pairs=1024` (stochastic forces) or use method='pca'."
        )
    if classical and parametric:
        raise ValueError(
            "Classical LLE has no forces to train a network with; pass normalization=0 (LLE "
            "weights, UMAP-like forces) or parametric=False."
        )
    if graph_method or classical:
        needed = (tsne_n_neighbors(perplexity) if method == "tsne" else int(n_neighbors)) + 1
        if adata.n_obs < needed:
            raise ValueError(
                f"ardr(method={method!r}) needs at least {needed} cells for its neighbour graph, "
                f"got {adata.n_obs}; lower `perplexity` / `n_neighbors`."
            )
    if exact_repulsion and parametric:
        raise ValueError("exact_repulsion needs a coordinate table; use parametric=False.")
    init = init or ("pca" if graph_method and not parametric else "random")
    init_given = obsm_init(adata, init, n_components, ("random", "pca", "spectral"))
    resolve_device(device)

    if normalization is None and graph_method:
        normalization = 1.0 if method == "tsne" else 0.0
    run = Run(
        f"computing attraction-repulsion DR ({method}"
        + (f", normalization={normalization:g}" if graph_method else "")
        + (", parametric" if parametric else "")
        + ")",
    )
    # the recipe takes the validated options (and adata, run, init_given) by their names
    recipe_args = inspect.signature(fit_ardr).parameters
    result = fit_ardr(**{k: v for k, v in locals().items() if k in recipe_args})
    params = result.params(settings_of(ardr, locals(), **result.resolved))
    trained = run.trained() if run.trainer is not None else {}
    uns = {"params": params | trained, **result.uns}
    run.write(adata, key_added, uns, obsm={f"X_{key_added}": result.coords}, obsp=result.obsp)
    return adata if copy else None
