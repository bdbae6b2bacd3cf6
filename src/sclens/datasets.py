"""Data sets for tests, tutorials and benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

__all__ = ["synthetic_counts", "pancreas"]


def synthetic_counts(
    n_cells: int = 2000,
    n_genes: int = 2000,
    n_groups: int = 6,
    *,
    n_markers: int = 10,
    n_down: int = 5,
    fold_change: float = 4.0,
    depth: float = 2000.0,
    dispersion: float = 0.3,
    random_state: int = 0,
) -> AnnData:
    """Negative-binomial counts with ``n_groups`` groups, each with known marker genes.

    Each group has ``n_markers`` up-regulated genes (mean x ``fold_change``) and ``n_down``
    down-regulated genes (mean / ``fold_change``) of its own; all other genes are null. Library
    sizes vary log-normally around ``depth``.

    Returns
    -------
    AnnData with raw counts (CSR float32) in ``.X``, ``obs['group']`` (categorical), and
    ``var['marker_of']`` / ``var['direction']`` naming each planted marker's group (``''`` for null
    genes); ``uns['markers'][group]`` lists up-regulated markers first.
    """
    rng = np.random.default_rng(random_state)
    per_group = n_markers + n_down
    if n_groups * per_group > n_genes:
        raise ValueError(f"{n_groups} groups x {per_group} markers do not fit in {n_genes} genes.")
    base = rng.lognormal(mean=-1.0, sigma=1.2, size=n_genes)
    base /= base.sum()
    means = np.tile(base, (n_groups, 1))
    marker_of = np.full(n_genes, "", dtype=object)
    direction = np.full(n_genes, "", dtype=object)
    genes = rng.permutation(n_genes)[: n_groups * per_group].reshape(n_groups, per_group)
    for g in range(n_groups):
        up, down = genes[g, :n_markers], genes[g, n_markers:]
        # markers need enough baseline expression to be detectable
        means[:, up] = np.maximum(means[:, up], np.median(base))
        means[g, up] *= fold_change
        means[:, down] = np.maximum(means[:, down], 2 * np.median(base))
        means[g, down] /= fold_change
        marker_of[genes[g]] = str(g)
        direction[up], direction[down] = "up", "down"
    means /= means.sum(1, keepdims=True)
    group = rng.integers(0, n_groups, size=n_cells)
    size = depth * rng.lognormal(0, 0.3, size=n_cells)
    mu = means[group] * size[:, None]
    r = 1.0 / dispersion
    counts = rng.poisson(rng.gamma(r, mu / r)).astype(np.float32)
    names = [f"gene{i}" for i in range(n_genes)]
    adata = AnnData(
        sparse.csr_matrix(counts),
        obs=pd.DataFrame(
            {
                "group": pd.Categorical(
                    [str(g) for g in group], categories=[str(g) for g in range(n_groups)]
                )
            },
            index=[f"cell{i}" for i in range(n_cells)],
        ),
        var=pd.DataFrame(
            {"marker_of": marker_of.astype(str), "direction": direction.astype(str)}, index=names
        ),
    )
    adata.uns["markers"] = {str(g): [names[i] for i in genes[g]] for g in range(n_groups)}
    return adata


def pancreas(path: str | Path | None = None) -> AnnData:
    """Baron et al. (2016) human pancreas, 2,142 cells, raw counts, ``obs['cell_type1']`` (14 types).

    Shipped in the repository's ``data/`` folder (see ``data/PROVENANCE.md``).
    """
    import anndata as ad

    if path is None:
        path = Path(__file__).resolve().parents[2] / "data" / "baron_human_pancreas.h5ad"
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; pass `path=` to the pancreas .h5ad file.")
    return ad.read_h5ad(path)
