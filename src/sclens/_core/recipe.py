"""Methods as recipes: what a tool trains is data, and one driver keeps the books.

A tool validates its options, then describes its method: the input, the graph, the encoder and
a list of :class:`Phase` (objective, sampler, epochs, schedule). :class:`Run` owns what every
tool does the same way: timing each stage, running the phases in order on one
:class:`~sclens._core.engine.Trainer`, capturing the settings from the tool's own signature,
writing the results into the AnnData and logging what was added.

Neighbour embeddings (t-SNE, UMAP, LLE with forces, parametric t-SNE) share one more layer:
:class:`NeighborMap`, the forces and schedule as data, and :func:`neighbor_phases`, the
exaggeration and embedding phases they all train.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from anndata import AnnData
from scanpy import logging as logg
from scipy import sparse

from .data import fit_pca
from .engine import CellSampler, EdgeSampler, Trainer
from .graph import Graph
from .networks import IndexedNetwork, Network
from .objectives import EXACT_REPULSION_CELLS, AttractionRepulsion, Regression, umap_ab

__all__ = [
    "Phase",
    "Run",
    "NETWORK_HIDDEN",
    "NeighborMap",
    "neighbor_map",
    "neighbor_phases",
    "network_trainer",
    "settings_of",
    "jsonable",
    "auto_epochs",
    "initial_coordinates",
    "graph_spectral",
    "network_start",
    "standardise",
    "seeded",
]

#: hidden layers of the networks of ptsne and ardr (see :func:`neighbor_map`)
NETWORK_HIDDEN = (128, 128, 128)

#: steps of fitting a network to its starting coordinates (see :func:`neighbor_phases`)
NETWORK_START_STEPS = 300

#: options of a tool that say where results go, not how they were made
_NOT_SETTINGS = ("adata", "copy", "key_added")


@dataclass
class Phase:
    """One stretch of training: an objective on batches from a sampler, for ``n_epochs``."""

    name: str
    objective: Callable
    sampler: Any
    n_epochs: int
    learning_rate: float
    final_lr_fraction: float = 1.0
    optimizer: str = "adam"
    parameters: list | None = None
    callbacks: Sequence = ()


def settings_of(func: Callable, values: Mapping[str, Any], **resolved) -> dict:
    """``params`` for ``.uns``: every option of ``func``'s signature with the value it ran with.

    ``values`` holds the options after validation (the tool's ``locals()``); ``resolved``
    overrides or adds what was decided at run time (``n_epochs=None`` -> the epochs run, the
    device used, counts of edges or pairs). ``None`` values are dropped, sequences become lists.
    """
    names = [
        p for p in inspect.signature(inspect.unwrap(func)).parameters if p not in _NOT_SETTINGS
    ]
    return jsonable({name: values[name] for name in names} | resolved)


def jsonable(params: dict) -> dict:
    """Params for ``.uns`` (h5ad-writable): None values dropped, tuples -> lists."""
    return {
        k: (list(v) if isinstance(v, Sequence) and not isinstance(v, str) else v)
        for k, v in params.items()
        if v is not None
    }


class Run:
    """The bookkeeping of one tool call: stage timings, training, writing and logging."""

    def __init__(self, description: str):
        self.start = logg.info(description)
        self.timings: dict[str, float] = {}
        self.trainer: Trainer | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage (``input``, ``graph``, ``training``, ``transform``, ...)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def train(self, trainer: Trainer, phases: Sequence[Phase]) -> Trainer:
        """Run ``phases`` in order (timed as ``training``); Ctrl-C stops at the current one."""
        self.trainer = trainer
        with self.stage("training"):
            for p in phases:
                trainer.optimize(
                    p.objective,
                    p.sampler,
                    n_epochs=p.n_epochs,
                    learning_rate=p.learning_rate,
                    phase=p.name,
                    parameters=p.parameters,
                    callbacks=p.callbacks,
                    final_lr_fraction=p.final_lr_fraction,
                    optimizer=p.optimizer,
                )
        return trainer

    def trained(self) -> dict[str, Any]:
        """What every trained tool records: the device and whether a Ctrl-C cut training."""
        t = self.trainer
        return dict(
            device=str(t.device), interrupted=t.interrupted, finished_phases=t.finished_phases
        )

    def write(
        self,
        adata: AnnData,
        key_added: str,
        uns: dict,
        *,
        obsm: Mapping[str, np.ndarray] = {},
        obs: Mapping[str, Any] = {},
        obsp: Mapping[str, Any] = {},
        message: str = "    finished",
    ) -> None:
        """Write the results (nothing before: a failed run leaves ``adata`` as it was) and log
        them; ``uns`` becomes ``adata.uns[key_added]``, with the history and timings added."""
        if self.trainer is not None and self.trainer.history:
            uns = {**uns, "history": self.trainer.history_arrays()}
        uns = {**uns, "timings": dict(self.timings)}
        lines = []
        for slot, entries in (("obsm", obsm), ("obs", obs), ("obsp", obsp)):
            for k, v in entries.items():
                getattr(adata, slot)[k] = v
            if entries:
                lines.append(f"    {', '.join(repr(k) for k in entries)} (adata.{slot})")
        adata.uns[key_added] = uns
        lines.append(f"    {key_added!r}: {', '.join(uns)} (adata.uns)")
        logg.info(message, time=self.start, deep="added\n" + "\n".join(lines))


@dataclass(frozen=True)
class NeighborMap:
    """A neighbour embedding as data: the forces between cells and how they are scheduled.

    Cells attract along the edges of the graph and repel other cells, with the kernel
    ``1 / (1 + a d^{2b})``; ``normalization`` in [0, 1] chooses the repulsion (1: t-SNE's,
    normalised by the sum of all similarities; 0: UMAP's). Training runs an exaggeration phase
    (``early_exaggeration`` on the attraction for ``exaggeration_fraction`` of the epochs) and
    an embedding phase whose learning rate decays linearly to ``final_lr_fraction``.
    ``batches`` chooses how the forces are sampled: ``'edges'`` (graph edges drawn by affinity,
    each pulled by one neighbour), ``'cells'`` (cells, each pulled by all its neighbours against
    a memory of every cell's position) or ``'auto'`` (edges for a network, cells for a table).
    """

    normalization: float = 1.0
    a: float = 1.0
    b: float = 1.0
    early_exaggeration: float = 4.0
    exaggeration_fraction: float = 0.25
    final_lr_fraction: float = 0.1
    n_negatives: int | None = 256
    batches: str = "auto"


def neighbor_map(
    method: str,
    *,
    n_cells: int,
    parametric: bool,
    normalization: float | None = None,
    min_dist: float = 0.5,
    batch_size: int = 1024,
    n_epochs: int | None = None,
    learning_rate: float | None = None,
    early_exaggeration: float | None = None,
    exaggeration_fraction: float = 0.25,
    final_lr_fraction: float | None = None,
    exact_repulsion: bool | None = None,
    batches: str = "auto",
) -> tuple[NeighborMap, dict[str, Any]]:
    """The forces and schedule of a neighbour embedding, every ``None`` resolved to its default.

    ``method`` is ``'tsne'`` (Cauchy kernel, ``normalization`` 1) or ``'umap'``/``'lle'`` (the
    UMAP kernel of ``min_dist``, ``normalization`` 0). Defaults: early exaggeration 4 when the
    repulsion is normalised, else 1; Adam decaying linearly to 0.1x its rate, from 1e-2 for a
    network and from 0.5 for a coordinate table; epochs from :func:`auto_epochs` (200 passes over
    the cells, clipped to 1,500-3,000 steps for a network and 2,000-10,000 for a table: a network
    reaches 3,000 steps from about 16,000 cells, where it used to stop at 1,500); exact repulsion
    for tables of at most ``EXACT_REPULSION_CELLS`` cells. Returns the recipe and the resolved
    settings, for ``params``.

    The network's defaults (with ``NETWORK_HIDDEN``) are measured in ``docs/methods/ardr.md``:
    a network is undertrained long before it runs out of capacity, so a higher, decaying rate
    and, on large data, twice the steps of a half-width network give better maps than 256-wide
    layers at 2e-3 in the same time.
    """
    if normalization is None:
        normalization = 1.0 if method == "tsne" else 0.0
    a, b = (1.0, 1.0) if method == "tsne" else umap_ab(1.0, min_dist)
    if early_exaggeration is None:
        early_exaggeration = 4.0 if normalization > 0 else 1.0
    if final_lr_fraction is None:
        final_lr_fraction = NeighborMap.final_lr_fraction
    learning_rate = learning_rate or (1e-2 if parametric else 0.5)
    if n_epochs is None:
        n_epochs = (
            auto_epochs(n_cells, batch_size, passes=200)
            if parametric
            else auto_epochs(n_cells, batch_size, min_steps=2000, max_steps=10_000, passes=200)
        )
    if exact_repulsion is None:
        exact_repulsion = not parametric and n_cells <= EXACT_REPULSION_CELLS
    recipe = NeighborMap(
        normalization=float(normalization),
        a=a,
        b=b,
        early_exaggeration=early_exaggeration,
        exaggeration_fraction=exaggeration_fraction,
        final_lr_fraction=final_lr_fraction,
        n_negatives=None if exact_repulsion else 256,
        batches=batches,
    )
    kept = ("normalization", "a", "b", "early_exaggeration", "final_lr_fraction")
    resolved = {k: getattr(recipe, k) for k in kept} | dict(
        learning_rate=learning_rate,
        n_epochs=n_epochs,
        exact_repulsion=bool(exact_repulsion),
        negative_rate=AttractionRepulsion.negative_rate,
    )
    return recipe, resolved


def neighbor_phases(
    recipe: NeighborMap,
    graph: Graph,
    trainer: Trainer,
    *,
    parametric: bool,
    n_epochs: int,
    learning_rate: float,
    batch_size: int,
    parameters: list | None = None,
    start: np.ndarray | None = None,
) -> list[Phase]:
    """The exaggeration and embedding phases of ``recipe`` on ``graph``, after a ``start``
    phase where there are ``start`` coordinates for a network.

    ``start`` (networks; ``init`` other than ``'random'``): coordinates the network is first
    fitted to, for about ``NETWORK_START_STEPS`` steps of ``batch_size`` cells (mean squared
    distance, the rate decaying to a tenth), so the exaggeration phase begins from a map with,
    e.g., the graph's large-scale layout instead of a random network's projection
    (``docs/methods/ardr.md``: on 56,000 digits the random start left two digits on top of each
    other, 10-NN accuracy 0.919-0.946 over seeds; from the spectral start 0.959-0.972 on six runs
    of seven, but one noisy planted draw of thirty collapsed to a point).

    By default (``recipe.batches='auto'``) a coordinate table trains on batches of cells (each
    pulled by all its graph neighbours), a network on batches of graph edges; a network on cell
    batches gives more trustworthy maps of a few thousand cells but places held-out cells worse
    by its forward pass, and worse maps from ~16,000 cells on (``docs/methods/ardr.md``).
    """
    n = graph.n
    cells = recipe.batches == "cells" or (recipe.batches == "auto" and not parametric)
    sampler = (
        CellSampler(n, batch_size)
        if cells
        else EdgeSampler(graph, batch_size, n_negatives=recipe.n_negatives)
    )
    affinities = graph.to_sparse() if cells else None
    exaggerate = recipe.early_exaggeration != 1
    n_early = int(round(recipe.exaggeration_fraction * n_epochs)) if exaggerate else 0

    def forces(exaggeration: float) -> AttractionRepulsion:
        return AttractionRepulsion(
            affinities,
            normalization=float(recipe.normalization),
            exaggeration=exaggeration,
            a=recipe.a,
            b=recipe.b,
            n_negatives=recipe.n_negatives,
            generator=trainer.generator,
        )

    phases = []
    if start is not None and parametric:
        starts = CellSampler(n, batch_size)
        phases.append(
            Phase(
                "start",
                Regression(torch.as_tensor(start, dtype=torch.float32)),
                starts,
                max(1, int(np.ceil(NETWORK_START_STEPS / len(starts)))),
                learning_rate,
                final_lr_fraction=0.1,
                parameters=parameters,
            )
        )
    return phases + [
        Phase(
            "exaggeration",
            forces(recipe.early_exaggeration),
            sampler,
            n_early,
            learning_rate,
            parameters=parameters,
        ),
        Phase(
            "embedding",
            forces(1.0),
            sampler,
            n_epochs - n_early,
            learning_rate,
            final_lr_fraction=recipe.final_lr_fraction,
            parameters=parameters,
        ),
    ]


def network_trainer(
    features: np.ndarray,
    hidden: Sequence[int],
    n_components: int,
    *,
    n_classes: int = 0,
    device: str,
    random_state: int,
) -> tuple[Network, Trainer]:
    """A network of ``features`` -> ``n_components`` (initialised from ``random_state``, with a
    classifier of ``n_classes`` if any) and the :class:`Trainer` that fits it on every cell."""
    with seeded(random_state):
        network = Network(features.shape[1], hidden, n_components, n_classes)
    trainer = Trainer(IndexedNetwork(features, network), device=device, random_state=random_state)
    return network, trainer


def auto_epochs(
    n_cells: int,
    batch_size: int,
    *,
    min_steps: int = 1500,
    max_steps: int = 3000,
    passes: float = 20.0,
) -> int:
    """Epochs (passes of ``n_cells`` edges) giving ``passes`` data passes, clipped to a step budget."""
    steps_per_epoch = max(1, n_cells // batch_size)
    steps = int(np.clip(passes * steps_per_epoch, min_steps, max_steps))
    return max(1, int(np.ceil(steps / steps_per_epoch)))


def initial_coordinates(
    init: str,
    features: np.ndarray,
    graph: Graph | None,
    n_components: int,
    random_state: int,
    *,
    given: np.ndarray | None = None,
) -> np.ndarray:
    """Starting coordinates of a map: ``'random'`` (small Gaussian), ``'pca'`` (the features'
    first principal components), ``'spectral'`` (the graph's Laplacian eigenmaps, approximated by
    :func:`graph_spectral`) or ``given`` (e.g. an ``.obsm`` map)."""
    if init == "random":
        rng = np.random.default_rng(random_state)
        return 1e-2 * rng.standard_normal((len(features), n_components))
    if init == "pca":
        mean, comps = fit_pca(features, n_components, random_state=random_state)
        return (features - mean) @ comps
    if init == "spectral":
        return graph_spectral(graph, features, n_components, random_state=random_state)
    return given[:, :n_components]


def graph_spectral(
    graph: Graph,
    features: np.ndarray,
    n_components: int,
    *,
    n_iter: int = 200,
    random_state: int = 0,
) -> np.ndarray:
    """Laplacian eigenmaps of ``graph``, approximated: the slowest modes of a random walk.

    Subspace iteration with the lazy walk ``(I + D^-1/2 W D^-1/2) / 2`` on ``n_components + 1``
    vectors, started from the stationary vector and the features' first principal components
    (each times ``sqrt(degree)``), orthonormalised after every step; the coordinates are the
    vectors after the stationary one, times ``D^-1/2``. ``n_iter`` steps damp every mode of
    eigenvalue ``lambda`` by ``lambda^n_iter``, so the result is the leading PCs smoothed over
    the graph until only its slowest modes (the groups it keeps apart) remain: UMAP's spectral
    start, in 1-3 s at 56,000 cells where an exact eigensolver ran for minutes.
    Deterministic for the graph and features.
    """
    S = sparse.csr_matrix(graph.to_sparse())  # a fresh matrix: scaled in place below
    degree = np.asarray(S.sum(1), dtype=np.float64).ravel()
    root = np.sqrt(np.maximum(degree, np.finfo(np.float64).tiny))
    S.data *= np.repeat(1.0 / root, np.diff(S.indptr)).astype(S.dtype)  # rows
    S.data *= (1.0 / root)[S.indices].astype(S.dtype)  # columns
    mean, comps = fit_pca(features, n_components, random_state=random_state)
    V = np.column_stack([root, ((features - mean) @ comps) * root[:, None]])
    for _ in range(n_iter):
        V, _ = np.linalg.qr(0.5 * (V + S @ V))
    return V[:, 1:] / root[:, None]


def network_start(
    run: Run,
    init: str,
    features: np.ndarray,
    graph: Graph,
    n_components: int,
    random_state: int,
    *,
    given: np.ndarray | None = None,
) -> np.ndarray | None:
    """The coordinates a network is fitted to before its neighbour embedding (the ``start`` of
    :func:`neighbor_phases`), standardised and timed as ``run``'s ``start`` stage; ``None`` for
    ``'random'`` (the network's own random initialisation; no stage)."""
    if init == "random":
        return None
    with run.stage("start"):
        Y0 = initial_coordinates(init, features, graph, n_components, random_state, given=given)
        return standardise(Y0).astype(np.float32)


def standardise(Y: np.ndarray) -> np.ndarray:
    """Centre and scale so the first column has unit standard deviation."""
    Y = Y - Y.mean(0)
    return Y / (Y[:, 0].std() or 1.0)


class seeded:
    """Context manager: torch's global RNG seeded for network initialisation, then restored."""

    def __init__(self, random_state: int):
        self.random_state = int(random_state)

    def __enter__(self):
        self._fork = torch.random.fork_rng(devices=[])
        self._fork.__enter__()
        torch.manual_seed(self.random_state)

    def __exit__(self, *exc):
        return self._fork.__exit__(*exc)
