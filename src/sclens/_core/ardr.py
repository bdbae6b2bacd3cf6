"""The methods of ``sl.tl.ardr`` as recipes on the one engine.

The tool validates its options and hands them here. :func:`fit_ardr` prepares the input, builds
the neighbour graph where the method has one, and trains one of three recipes: forces along the
graph (t-SNE, UMAP, LLE with forces: :class:`~sclens._core.recipe.NeighborMap`), forces between
Gram matrices (PCA, classical MDS: :func:`~sclens._core.gram.gram_phase`), or classical LLE's
eigenvectors, which need no training. It returns what the tool writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from anndata import AnnData

from .data import prepare_input
from .engine import Trainer
from .gram import data_unit, gram_phase, principal_axes
from .graph import neighbor_graph
from .lle import REG, classical_lle, reconstruction_weights
from .model import Model
from .networks import CoordinateTable
from .recipe import (
    Run,
    initial_coordinates,
    neighbor_map,
    neighbor_phases,
    network_start,
    network_trainer,
    standardise,
)

__all__ = ["ArdrResult", "fit_ardr"]

#: the settings classical LLE records (it has no forces, epochs or network)
LLE_SETTINGS = (
    "method",
    "n_components",
    "use_rep",
    "n_pcs",
    "layer",
    "n_neighbors",
    "reg",
    "random_state",
)


@dataclass
class ArdrResult:
    """What ``ardr`` writes: coordinates, ``.uns`` entries besides ``params``, the affinity
    graph, the settings decided at run time, and which options are not recorded."""

    coords: np.ndarray
    uns: dict[str, Any] = field(default_factory=dict)
    obsp: dict[str, Any] = field(default_factory=dict)
    resolved: dict[str, Any] = field(default_factory=dict)
    unused: set[str] = field(default_factory=set)
    keep_only: Sequence[str] | None = None

    def params(self, settings: dict[str, Any]) -> dict[str, Any]:
        """``settings`` (every option, as run) without those that did not act."""
        if self.keep_only is not None:
            return {k: settings[k] for k in self.keep_only if k in settings}
        return {k: v for k, v in settings.items() if k not in self.unused}


def fit_ardr(
    adata: AnnData,
    run: Run,
    *,
    method: str,
    normalization: float | None,
    parametric: bool,
    n_components: int,
    use_rep: str | None,
    n_pcs: int | None,
    layer: str | None,
    perplexity: float,
    n_neighbors: int,
    min_dist: float,
    metric: str,
    sampled_pairs: int | None,
    exact_repulsion: bool | None,
    init: str,
    init_given: np.ndarray | None,
    n_epochs: int | None,
    learning_rate: float | None,
    batch_size: int,
    early_exaggeration: float | None,
    exaggeration_fraction: float,
    final_lr_fraction: float | None,
    batches: str,
    hidden: Sequence[int],
    device: str,
    random_state: int,
    key_added: str,
) -> ArdrResult:
    """Train the map of ``method`` on ``adata`` (options as :func:`sclens.tl.ardr`, validated)."""
    classical = method == "lle" and normalization is None
    graph_method = method in ("tsne", "umap", "lle") and not classical
    with run.stage("input"):
        inp, features = prepare_input(
            adata, use_rep=use_rep, n_pcs=n_pcs, layer=layer, random_state=random_state, func="ardr"
        )
    graph = None
    if graph_method or classical or init == "spectral":
        with run.stage("graph"):
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
        with run.stage("training"):
            idx = graph.knn_indices
            W = reconstruction_weights(features, idx)
            coords, eigenvalues = classical_lle(idx, W, n_components, random_state)
        return ArdrResult(
            coords.astype(np.float32),
            uns={"eigenvalues": eigenvalues},
            resolved=dict(n_neighbors=int(idx.shape[1]), reg=REG),
            keep_only=LLE_SETTINGS,
        )

    start = None
    if parametric:
        network, trainer = network_trainer(
            features, hidden, n_components, device=device, random_state=random_state
        )
        if graph_method:
            start = network_start(
                run, init, features, graph, n_components, random_state, given=init_given
            )
    else:
        Y0 = initial_coordinates(
            init, features, graph, n_components, random_state, given=init_given
        )
        if graph_method or init == "spectral":
            Y0 = standardise(Y0)
        elif init_given is not None:
            Y0 = Y0 / inp.scale  # an obsm map in data units -> feature units
        network, table = None, CoordinateTable(Y0.astype(np.float32))
        trainer = Trainer(table, device=device, random_state=random_state)

    if graph_method:
        forces, resolved = neighbor_map(
            method,
            n_cells=adata.n_obs,
            parametric=parametric,
            normalization=normalization,
            min_dist=min_dist,
            batch_size=batch_size,
            n_epochs=n_epochs,
            learning_rate=learning_rate,
            early_exaggeration=early_exaggeration,
            exaggeration_fraction=exaggeration_fraction,
            final_lr_fraction=final_lr_fraction,
            exact_repulsion=exact_repulsion,
            batches=batches,
        )
        phases = neighbor_phases(
            forces,
            graph,
            trainer,
            parametric=parametric,
            n_epochs=resolved["n_epochs"],
            learning_rate=resolved["learning_rate"],
            batch_size=batch_size,
            start=start,
        )
        resolved |= dict(n_neighbors=int(graph.knn_indices.shape[1]), n_edges=len(graph.weights))
    else:
        phase, resolved = gram_phase(
            features,
            method=method,
            metric=metric,
            sampled_pairs=sampled_pairs,
            parametric=parametric,
            batch_size=batch_size,
            n_epochs=n_epochs,
            learning_rate=learning_rate,
            random_state=random_state,
        )
        phases = [phase]
    run.train(trainer, phases)
    trainer.check_publishable(
        "ardr", any_of=("exaggeration", "embedding", "forces", "exact", "sampled")
    )

    # PCA / MDS maps are returned in the data's units (the features were divided by inp.scale)
    unit = 1.0 if graph_method else data_unit(inp.scale, resolved["metric"])
    uns, obsp = {}, {}
    with run.stage("transform"):
        if parametric:
            network = network.cpu().eval()
            network.scale_output(unit)
            coords = network.transform(features)
            uns["model"] = Model.from_parts("ardr", inp, network, ardr_method=method).to_uns()
        else:
            coords = table.coords.detach().cpu().numpy().astype(np.float64)
            if not graph_method:
                coords = principal_axes(coords) * unit
    if graph_method:
        obsp[f"{key_added}_connectivities"] = graph.to_sparse().astype(np.float32)
    else:
        uns["singular_values"] = np.linalg.svd(coords - coords.mean(0), compute_uv=False)
    return ArdrResult(
        np.asarray(coords, np.float32),
        uns=uns,
        obsp=obsp,
        resolved=resolved | {"epochs_run": len(trainer.history)},
        unused=_unused(method, parametric),
    )


def _unused(method: str, parametric: bool) -> set[str]:
    """Options that did not act on this run, left out of ``params``."""
    graph = method in ("tsne", "umap", "lle")
    out = {"device"}  # recorded as the device used
    if not parametric:
        out |= {"hidden"}
    elif not graph:
        out |= {"init"}  # networks of pca/mds start from their random initialisation
    if graph:
        out |= {"metric", "sampled_pairs"} | ({"min_dist"} if method == "tsne" else {"perplexity"})
    else:
        out |= {"normalization", "perplexity", "n_neighbors", "min_dist", "exact_repulsion"}
        out |= {"early_exaggeration", "exaggeration_fraction", "final_lr_fraction", "batches"}
        out |= {"batch_size"} if not parametric else set()
    return out
