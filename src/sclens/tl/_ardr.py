"""Attraction-repulsion DR: t-SNE, UMAP and everything between, LLE, and PCA / MDS as forces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from anndata import AnnData
from scanpy import logging as logg
from scipy import sparse

from .._core.data import check_finite, check_key, fit_pca, prepare_input
from .._core.engine import CellSampler, EdgeSampler, Trainer, resolve_device
from .._core.gram import METRICS, GramMismatch, double_centre, sq_dists
from .._core.graph import neighbor_graph
from .._core.lle import REG, classical_lle, reconstruction_weights
from .._core.model import Model
from .._core.networks import CoordinateTable, IndexedNetwork, Network
from .._core.objectives import EXACT_REPULSION_CELLS, AttractionRepulsion, umap_ab
from .._core.threads import fixed_threads
from ._common import auto_epochs, jsonable, seeded, start_adata
from ._docs import doc_input, doc_params, doc_run
from ._options import check_float, check_int, check_key_added, check_widths, resolve_seed

__all__ = ["ardr"]

METHODS = ("tsne", "umap", "lle", "pca", "mds")
#: above this many cells, exact classical MDS (a dense n x n target) is refused
MAX_DENSE_CELLS = 20_000


def _top_eigenvalue(matvec, n: int, n_iter: int = 100) -> float:
    """Largest eigenvalue of a PSD operator by deterministic power iteration (Rayleigh quotient)."""
    v = torch.linspace(1.0, 2.0, n, dtype=torch.float64)
    v /= v.norm()
    lam = 0.0
    for _ in range(n_iter):
        w = matvec(v)
        lam = float(v @ w)
        norm = w.norm()
        if norm == 0:
            return 1.0
        v = w / norm
    return max(lam, 1e-12)


def _standardise(Y: np.ndarray) -> np.ndarray:
    """Centre and scale so the first column has unit standard deviation."""
    Y = Y - Y.mean(0)
    return Y / (Y[:, 0].std() or 1.0)


def _spectral(graph_matrix: sparse.spmatrix, n_components: int, random_state: int) -> np.ndarray:
    from sklearn.manifold import spectral_embedding

    return spectral_embedding(
        graph_matrix, n_components=n_components, random_state=random_state, drop_first=True
    )


def _principal_axes(Y: np.ndarray) -> np.ndarray:
    """Centre and rotate a map to its own principal axes, each axis' largest value positive."""
    Yc = Y - Y.mean(0)
    _, _, vt = np.linalg.svd(Yc, full_matrices=False)
    Z = Yc @ vt.T
    signs = np.sign(Z[np.abs(Z).argmax(0), np.arange(Z.shape[1])])
    signs[signs == 0] = 1
    return Z * signs


def _stop_when_converged(tol: float, patience: int = 10):
    """Callback: stop once the loss changed by less than ``tol`` (relative) ``patience`` times in a row."""
    state = {"last": None, "calm": 0}

    def callback(phase, epoch, loss, encoder):
        last, state["last"] = state["last"], loss
        if last is not None and abs(loss - last) <= tol * max(abs(last), 1e-300):
            state["calm"] += 1
        else:
            state["calm"] = 0
        return state["calm"] >= patience

    return callback


@fixed_threads
@doc_params(doc_input=doc_input, doc_run=doc_run)
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
    hidden: Sequence[int] = (256, 256, 256),
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
        ``'tsne'``: perplexity of the affinities (``3 * perplexity`` neighbours per cell).
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
        step, for large data sets: on Baron pancreas (2,142 cells), m = 512 recovers the PCA
        plane with principal-angle cosines >= 0.9998 and singular values 0.1-1% too large
        (the batch is centred on its own mean).
    exact_repulsion
        ``'tsne'``/``'umap'`` coordinates: repel each cell of a batch from every cell (cost
        ``n`` per cell) instead of from 256 random cells. ``None``: exact up to 1,000 cells.
    init
        Starting coordinates: ``'random'`` (small Gaussian; default for ``'pca'``/``'mds'``),
        ``'pca'`` (default for ``'tsne'``/``'umap'``), ``'spectral'`` (eigenvectors of the kNN
        graph's Laplacian) or an ``.obsm`` key. Not used with ``parametric=True``.
    n_epochs
        Training epochs. ``'tsne'``/``'umap'``: an epoch is a pass over all cells (coordinates)
        or ``n_obs`` sampled edges (networks); ``None``: at
        least 2,000 steps for coordinates (the network recipe of ``ptsne`` for networks).
        ``'pca'``/``'mds'``: an epoch is one pass over the cells (one step when exact); ``None``:
        up to 1,000 exact steps (stopping once the loss is stable), 100 sampled epochs.
    learning_rate
        ``None``: Adam at 0.5 for coordinates and 2e-3 for networks (``'tsne'``/``'umap'``);
        plain gradient descent at 0.125 in units of the inverse largest eigenvalue of the target
        (``'pca'``/``'mds'`` coordinates), which converges for values below 0.25.
    batch_size
        ``'tsne'``/``'umap'``: cells per minibatch for coordinates (each pulled by all its graph
        neighbours, pushed by 256 random cells), edges per minibatch for a network (each edge's
        start pushed by 256 edge ends of the batch); cells per minibatch for a network trained
        on ``'pca'``/``'mds'`` forces without ``sampled_pairs``.
    early_exaggeration
        Factor on the attraction during the first quarter of the epochs; ``None``: 4 when
        ``normalization > 0``, else 1.
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
    ``adata.uns[key_added]['singular_values']``
        ``'pca'``/``'mds'``: singular values of the centred map.
    ``adata.uns[key_added]['model']``
        ``parametric=True``: the trained model, read by :func:`sclens.tl.project`.
    """
    # -- validate everything before anything is computed or written ----------------------------
    adata = start_adata(adata, "ardr", copy, backed_ok=True)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    classical = method == "lle" and normalization is None
    graph_method = method in ("tsne", "umap", "lle") and not classical
    if normalization is not None:
        if not graph_method:
            raise ValueError(
                f"`normalization` applies to method='tsne', 'umap' or 'lle', not {method!r}; "
                "leave it None."
            )
        if not (0.0 <= float(normalization) <= 1.0):
            raise ValueError(
                f"normalization must be in [0, 1] (0: UMAP-like, 1: t-SNE-like), got {normalization}."
            )
    n_components = check_int(n_components, "n_components")
    if n_pcs is not None:
        n_pcs = check_int(n_pcs, "n_pcs", low=0)
    perplexity = check_float(perplexity, "perplexity", low=0, low_open=True)
    n_neighbors = check_int(n_neighbors, "n_neighbors", low=2)
    min_dist = check_float(min_dist, "min_dist", low=0, high=1)
    if n_epochs is not None:
        n_epochs = check_int(n_epochs, "n_epochs")
    batch_size = check_int(batch_size, "batch_size")
    if early_exaggeration is not None:
        early_exaggeration = check_float(
            early_exaggeration, "early_exaggeration", low=0, low_open=True
        )
    if learning_rate is not None:
        learning_rate = check_float(learning_rate, "learning_rate", low=0, low_open=True)
    hidden = check_widths(hidden)
    random_state = resolve_seed(random_state)
    check_key_added(adata, key_added)
    if method == "mds" and metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    if sampled_pairs is not None:
        if graph_method:
            raise ValueError("`sampled_pairs` applies to method='pca' or 'mds'.")
        if int(sampled_pairs) < 3:
            raise ValueError(f"sampled_pairs must be at least 3 cells, got {sampled_pairs}.")
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
        needed = (int(np.ceil(3 * perplexity)) if method == "tsne" else int(n_neighbors)) + 1
        if adata.n_obs < needed:
            raise ValueError(
                f"ardr(method={method!r}) needs at least {needed} cells for its neighbour graph, "
                f"got {adata.n_obs}; lower `perplexity` / `n_neighbors`."
            )
    init = init or ("pca" if graph_method else "random")
    if init not in ("random", "pca", "spectral"):
        check_key(
            adata.obsm, init, "adata.obsm", "`init` is 'random', 'pca', 'spectral' or an obsm key."
        )
        init_given = np.asarray(adata.obsm[init], dtype=np.float64)
        check_finite(init_given, f"adata.obsm[{init!r}]")
        if init_given.ndim != 2 or init_given.shape[1] < n_components:
            raise ValueError(
                f"adata.obsm[{init!r}] has shape {init_given.shape}; `init` needs at least "
                f"{n_components} columns."
            )
    resolve_device(device)

    if normalization is None and graph_method:
        normalization = 1.0 if method == "tsne" else 0.0
    start = logg.info(
        f"computing attraction-repulsion DR ({method}"
        + (f", normalization={normalization:g}" if graph_method else "")
        + (", parametric" if parametric else "")
        + ")"
    )
    inp, features = prepare_input(
        adata, use_rep=use_rep, n_pcs=n_pcs, layer=layer, random_state=random_state, func="ardr"
    )
    n = adata.n_obs

    graph = None
    if graph_method or classical or init == "spectral":
        graph = neighbor_graph(
            features,
            affinity=method if (graph_method or classical) else "umap",
            perplexity=perplexity,
            n_neighbors=n_neighbors,
            adata=adata,
            use_rep=use_rep,
            n_pcs=n_pcs,
            random_state=random_state,
        )
    if classical:
        idx = graph.knn_indices
        coords, eigenvalues = classical_lle(
            idx, reconstruction_weights(features, idx), n_components, random_state
        )
        adata.obsm[f"X_{key_added}"] = coords.astype(np.float32)
        params = dict(method=method, normalization=None, n_components=n_components)
        params |= dict(use_rep=use_rep, n_pcs=n_pcs, layer=layer, n_neighbors=int(idx.shape[1]))
        params |= dict(reg=REG, random_state=random_state)
        adata.uns[key_added] = {"params": jsonable(params), "eigenvalues": eigenvalues}
        logg.info("    finished", time=start, deep=f"    added 'X_{key_added}', '{key_added}'")
        return adata if copy else None

    # -- encoder: a coordinate table or a network, both map cell indices to coordinates --------
    network = None
    if parametric:
        with seeded(random_state):
            network = Network(features.shape[1], hidden, n_components)
        encoder = IndexedNetwork(features, network)
    else:
        if init == "random":
            rng = np.random.default_rng(random_state)
            Y0 = 1e-2 * rng.standard_normal((n, n_components))
        elif init == "pca":
            mean, comps = fit_pca(features, n_components, random_state=random_state)
            Y0 = (features - mean) @ comps
        elif init == "spectral":
            Y0 = _spectral(graph.to_sparse(), n_components, random_state)
        else:
            Y0 = init_given[:, :n_components]
        if graph_method or init in ("spectral",):
            Y0 = _standardise(Y0)
        elif init not in ("random", "pca"):
            Y0 = Y0 / inp.scale  # an obsm map in data units -> feature units
        encoder = CoordinateTable(Y0.astype(np.float32))
    trainer = Trainer(encoder, device=device, random_state=random_state)

    params = dict(
        method=method,
        parametric=parametric,
        n_components=n_components,
        use_rep=use_rep,
        n_pcs=n_pcs,
        layer=layer,
        init=None if parametric else init,
        random_state=random_state,
    )
    extra_uns = {}
    if graph_method:
        a, b = (1.0, 1.0) if method == "tsne" else umap_ab(1.0, min_dist)
        if early_exaggeration is None:
            early_exaggeration = 4.0 if normalization > 0 else 1.0
        lr = learning_rate or (2e-3 if parametric else 0.5)
        if n_epochs is None:
            n_epochs = (
                auto_epochs(n, batch_size)
                if parametric
                else auto_epochs(n, batch_size, min_steps=2000, max_steps=10_000, passes=200)
            )
        if exact_repulsion is None:
            exact_repulsion = not parametric and n <= EXACT_REPULSION_CELLS
        if exact_repulsion and parametric:
            raise ValueError("exact_repulsion needs a coordinate table; use parametric=False.")
        # a table trains on batches of cells (each pulled by all its neighbours), a network on
        # batches of edges: each is the better of the two for it (docs/methods/ardr.md)
        sampler = EdgeSampler(graph, batch_size) if parametric else CellSampler(n, batch_size)
        affinities = None if parametric else graph.to_sparse()
        n_early = int(round(0.25 * n_epochs)) if early_exaggeration != 1 else 0
        phases = [("exaggeration", early_exaggeration, n_early), ("embedding", 1.0, None)]
        for phase, ex, epochs in phases:
            trainer.optimize(
                AttractionRepulsion(
                    affinities,
                    normalization=float(normalization),
                    exaggeration=ex,
                    a=a,
                    b=b,
                    n_negatives=None if exact_repulsion else 256,
                    generator=trainer.generator,
                ),
                sampler,
                n_epochs=n_epochs - n_early if epochs is None else epochs,
                learning_rate=lr,
                phase=phase,
                final_lr_fraction=1.0 if phase == "exaggeration" else 0.1,
            )
        params |= dict(
            exact_repulsion=bool(exact_repulsion),
            normalization=float(normalization),
            perplexity=perplexity if method == "tsne" else None,
            n_neighbors=int(graph.knn_indices.shape[1]),
            min_dist=None if method == "tsne" else min_dist,
            a=a,
            b=b,
            negative_rate=AttractionRepulsion.negative_rate,
            early_exaggeration=early_exaggeration,
            batch_size=batch_size,
            n_edges=len(graph.weights),
        )
    else:
        X = torch.as_tensor(features)
        if method == "mds" and sampled_pairs is None:
            K = -0.5 * double_centre(sq_dists(X.double(), metric))
            objective_args = dict(gram=K)
            lam = _top_eigenvalue(lambda v: K @ v, n)
        else:
            objective_args = dict(features=X, metric=metric if method == "mds" else "euclidean")
            if objective_args["metric"] == "euclidean":
                Xc = X.double() - X.double().mean(0)
                lam = _top_eigenvalue(lambda v: Xc.T @ (Xc @ v), Xc.shape[1])
            else:  # estimate from one batch of the sampled target, scaled up to n cells
                sub = torch.randperm(n, generator=torch.Generator().manual_seed(random_state))
                sub = sub[: min(n, 2048)]
                Ks = -0.5 * double_centre(sq_dists(X[sub].double(), metric))
                lam = _top_eigenvalue(lambda v: Ks @ v, len(sub)) * n / len(sub)
        m = n if (sampled_pairs is None and not parametric) else int(sampled_pairs or batch_size)
        m = min(m, n)
        objective = GramMismatch(**objective_args, scale=lam * m / n)
        cells = CellSampler(n, m)
        exact = m == n and not parametric
        if parametric:
            lr = learning_rate or 2e-3
            n_epochs = n_epochs or auto_epochs(n, m)
            trainer.optimize(objective, cells, n_epochs=n_epochs, learning_rate=lr, phase="forces")
        else:
            lr = learning_rate or 0.125
            n_epochs = n_epochs or (1000 if exact else 100)
            trainer.optimize(
                objective,
                cells,
                n_epochs=n_epochs,
                learning_rate=lr,
                phase="exact" if exact else "sampled",
                optimizer="sgd",
                final_lr_fraction=1.0 if exact else 0.02,
                callbacks=[_stop_when_converged(1e-9)] if exact else (),
            )
        params |= dict(
            metric=metric if method == "mds" else "euclidean",
            sampled_pairs=sampled_pairs,
            top_eigenvalue=lam,
        )
    params |= dict(
        n_epochs=n_epochs,
        epochs_run=len(trainer.history),
        learning_rate=lr,
        hidden=hidden if parametric else None,
        device=str(trainer.device),
        interrupted=trainer.interrupted,
        finished_phases=trainer.finished_phases,
    )

    trainer.check_publishable(
        "ardr", any_of=("exaggeration", "embedding", "forces", "exact", "sampled")
    )

    # -- results --------------------------------------------------------------------------------
    # PCA / MDS maps are returned in the data's units (the features were divided by inp.scale)
    unit = 1.0
    if not graph_method:
        unit = {"euclidean": inp.scale, "sqeuclidean": inp.scale**2}.get(params["metric"], 1.0)
    if parametric:
        network = network.cpu().eval()
        with torch.no_grad():
            network.embed.weight.mul_(unit)
            network.embed.bias.mul_(unit)
        coords = network.transform(features)
        extra_uns["model"] = Model.from_parts("ardr", inp, network, ardr_method=method).to_uns()
    else:
        coords = encoder.coords.detach().cpu().numpy().astype(np.float64)
        if not graph_method:
            coords = _principal_axes(coords) * unit
    if not graph_method:
        Yc = coords - coords.mean(0)
        extra_uns["singular_values"] = np.linalg.svd(Yc, compute_uv=False)
    coords = np.asarray(coords, dtype=np.float32)
    adata.obsm[f"X_{key_added}"] = coords
    added = f"added\n    'X_{key_added}', coordinates (adata.obsm)\n"
    if graph_method:
        adata.obsp[f"{key_added}_connectivities"] = graph.to_sparse().astype(np.float32)
        added += f"    '{key_added}_connectivities', affinities (adata.obsp)\n"
    adata.uns[key_added] = {
        "params": jsonable(params),
        "history": trainer.history_arrays(),
        **extra_uns,
    }
    logg.info(
        "    finished",
        time=start,
        deep=added
        + f"    '{key_added}', params, history{', model' if parametric else ''} (adata.uns)",
    )
    return adata if copy else None
