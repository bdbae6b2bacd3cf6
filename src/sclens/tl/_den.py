"""Differentiating Embedding Networks: a Siamese map with a cluster head that finds K itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .._core.cluster import mutual_near_pairs, pseudo_labels
from .._core.data import prepare_input
from .._core.engine import CellSampler, PairSampler, resolve_device
from .._core.graph import knn, knn_from_scanpy
from .._core.model import Model
from .._core.objectives import Classification, DENPairs, Sum, balanced_weights
from .._core.recipe import Phase, Run, auto_epochs, network_trainer, settings_of
from .._core.threads import fixed_threads
from ._common import seeded, start_adata
from ._docs import doc_input, doc_params, doc_run
from ._options import check_int, check_key_added, checked_options

__all__ = ["den"]


@fixed_threads
@doc_params(doc_input=doc_input, doc_run=doc_run)
@checked_options()
def den(
    adata: AnnData,
    *,
    n_components: int = 2,
    n_neighbors: int = 10,
    use_rep: str | None = None,
    n_pcs: int | None = 50,
    layer: str | None = None,
    n_clusters: int | None = None,
    resolution: float = 1.0,
    eigen_threshold: float = 0.005,
    merge_threshold: float | None = 0.06,
    max_clusters: int = 40,
    snap: bool = False,
    hidden: Sequence[int] = (256, 256, 256),
    n_epochs: int | None = None,
    n_finetune_epochs: int | None = None,
    batch_size: int = 512,
    learning_rate: float = 1e-3,
    corr_weight: float = 1.0,
    device: Literal["auto", "cpu", "cuda"] | str = "auto",
    random_state: int | None = 0,
    key_added: str = "den",
    copy: bool = False,
) -> AnnData | None:
    """Differentiating Embedding Network: a Siamese map and a cluster head that finds K itself.

    A network f maps each cell to ``n_components`` dimensions. Near pairs are mutual
    ``n_neighbors``-nearest neighbours (every cell keeps at least its nearest one); far pairs are
    drawn with probability proportional to distance. For a pair, ``p`` is the F(1, v) CDF of
    ``||f(a) - f(b)||^2``; the loss pushes near pairs to small ``p`` and far pairs to large ``p``,
    balanced between the two kinds, plus ``corr_weight`` times the squared correlation of the
    output axes.

    Clusters: on the trained map, a Gaussian affinity whose local width is the distance to
    the 10th neighbour on the map (times ``resolution``) gives a graph Laplacian; its eigenvalues
    below ``eigen_threshold`` count the clusters K (unless ``n_clusters`` is given). k-means with
    K centres on the map gives pseudo-labels. The map tends to cut large populations into
    pieces, and where it cuts changes from one training to the next; so (with automatic K)
    clusters that stay connected in the 30-nearest-neighbour graph of the input features are
    joined (see ``merge_threshold``), which lowers K. A cluster head on the map learns the
    pseudo-labels (class-weighted) and then network and head are fine-tuned together, so any
    cell, new ones included, gets a cluster.

    Parameters
    ----------
    adata
        Annotated data matrix (log-normalised expression in ``.X`` or ``layer``).
    n_components
        Dimensions of the map (v of the F distribution).
    n_neighbors
        Neighbours per cell that define near pairs.
    {doc_input}
    n_clusters
        Number of clusters; ``None`` finds it from the Laplacian's spectrum.
    resolution
        Factor on the affinity's width. Larger values join nearby groups (fewer clusters);
        smaller values split them (more clusters).
    eigen_threshold
        Eigenvalues of the normalised Laplacian below this count as "near zero".
    merge_threshold
        With automatic K, clusters linked by a chain of pairs whose connection in the feature kNN
        graph (the share of the larger cluster's edges that lead into the other) is at least this
        are joined; ``None``: no joining.
    max_clusters
        Upper bound on the automatic K.
    snap
        Let clusters follow the communities of the feature graph: Leiden communities (as
        ``sc.pp.neighbors`` + ``sc.tl.leiden`` at default settings would find them on the same
        features) each take the cluster most of their cells have on the map, so the map
        decides which communities belong together and the feature graph where the boundaries
        lie. Clusters that no community carries vanish. Only with automatic K, as the joins.
        Off by default: it raises NMI a little but leaves fewer clusters than cell types
        (measurements in ``docs/methods/den.md``).
    hidden
        Widths of the hidden layers.
    n_epochs
        Epochs of Siamese training (an epoch is ``n_obs / batch_size`` batches); ``None``: auto.
    n_finetune_epochs
        Epochs of joint fine-tuning of network and cluster head; ``None``: a third of ``n_epochs``.
    batch_size
        Near pairs (and as many far pairs) per batch.
    learning_rate
        Adam learning rate.
    corr_weight
        Weight of the decorrelation penalty on the output axes.
    {doc_run}

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Sets:

    ``adata.obsm['X_den']``
        The map.
    ``adata.obs['den']``
        Clusters, categorical ``'0'``, ``'1'``, ... ordered by size.
    ``adata.obsm['den_proba']``
        Cluster probabilities, column ``r`` for cluster ``'r'``.
    ``adata.uns['den']``
        ``params`` (settings and the final ``n_clusters``), ``spectrum`` (Laplacian eigenvalues,
        threshold, K counted from them, and ``merges``: one row ``(a, b, connectivity)`` per
        join), ``model``, ``history``, ``timings`` (seconds per stage: ``input``, ``graph``,
        ``training``, ``clustering``, ``transform``).
    """
    adata = start_adata(adata, "den", copy, backed_ok=True)
    if n_clusters is not None:
        n_clusters = check_int(n_clusters, "n_clusters", low=1, high=adata.n_obs - 1)
    check_key_added(adata, key_added)
    resolve_device(device)
    if adata.n_obs < 2 * (n_neighbors + 1):
        raise ValueError(
            f"den with n_neighbors={n_neighbors} needs at least {2 * (n_neighbors + 1)} cells, "
            f"got {adata.n_obs}. Lower `n_neighbors`."
        )
    run = Run("computing differentiating embedding network (DEN)")
    with run.stage("input"):
        inp, features = prepare_input(
            adata, use_rep=use_rep, n_pcs=n_pcs, layer=layer, random_state=random_state, func="den"
        )
    with run.stage("graph"):
        found = knn_from_scanpy(adata, n_neighbors, use_rep, n_pcs)
        idx, _ = (
            found if found is not None else knn(features, n_neighbors, random_state=random_state)
        )
        near = mutual_near_pairs(idx)
    if n_epochs is None:
        n_epochs = auto_epochs(adata.n_obs, batch_size, min_steps=1000, max_steps=4000, passes=30)
    if n_finetune_epochs is None:
        n_finetune_epochs = max(1, n_epochs // 3)

    network, trainer = network_trainer(
        features, hidden, n_components, device=device, random_state=random_state
    )
    pairs = DENPairs(n_components, corr_weight)
    sampler = PairSampler(near, features, batch_size)
    run.train(trainer, [Phase("siamese", pairs, sampler, n_epochs, learning_rate)])
    # clusters from a half-trained map and an untrained head are no result: write nothing
    trainer.check_publishable("den", needs=("siamese",))

    # parametric clustering: K from the spectrum, pseudo-labels, a head, joint fine-tuning
    with run.stage("clustering"):
        spec, pseudo, merges = pseudo_labels(
            network.cpu().transform(features),
            features,
            n_clusters=n_clusters,
            resolution=resolution,
            eigen_threshold=eigen_threshold,
            merge_threshold=merge_threshold,
            max_clusters=max_clusters,
            snap=snap,
            random_state=random_state,
        )
    K = int(pseudo.max()) + 1
    weights = balanced_weights(pseudo, K)
    with seeded(random_state + 1):
        network.add_cluster_head(K)
    trainer.encoder.to(trainer.device)
    head = Classification(weights, head="cluster_logits")
    phases = [
        Phase(
            "cluster_head",
            head,
            CellSampler(adata.n_obs, batch_size, pseudo),
            max(10, n_epochs // 10),
            learning_rate,
            parameters=network.cluster_head.parameters(),
        ),
        Phase(
            "finetune",
            Sum([pairs, head]),
            PairSampler(near, features, batch_size, labels=pseudo),
            n_finetune_epochs,
            0.3 * learning_rate,
        ),
    ]
    run.train(trainer, phases)

    trainer.check_publishable("den", needs=("siamese", "cluster_head"))
    network = network.cpu().eval()
    with run.stage("transform"):
        Z = network.transform(features)
        proba = network.cluster_proba(Z)
    order = np.argsort(-np.bincount(proba.argmax(1), minlength=K), kind="stable")
    proba = proba[:, order]
    names = [str(r) for r in range(K)]
    clusters = pd.Categorical.from_codes(proba.argmax(1), categories=names)
    params = settings_of(
        den,
        locals(),
        n_clusters=K,
        n_clusters_auto=n_clusters is None,
        n_near_pairs=len(near),
        **run.trained(),
    )
    model = Model.from_parts("den", inp, network, cluster_order=order.tolist())
    spectrum = {
        "eigenvalues": spec.eigenvalues,
        "threshold": spec.threshold,
        "n_clusters": spec.n_clusters,
        "merges": np.array(merges, dtype=np.float64).reshape(-1, 3),
    }
    run.write(
        adata,
        key_added,
        {"params": params, "spectrum": spectrum, "model": model.to_uns()},
        obsm={f"X_{key_added}": Z, f"{key_added}_proba": proba},
        obs={key_added: clusters.remove_unused_categories()},
        message=f"    found {K} clusters",
    )
    return adata if copy else None
