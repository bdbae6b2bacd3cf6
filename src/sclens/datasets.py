"""Data sets for tests, tutorials and benchmarks."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

__all__ = ["synthetic_counts", "planted_markers", "write_synthetic_h5ad", "pancreas"]

_PANCREAS_FILE = "baron_human_pancreas.h5ad"


def _synthetic_model(n_genes, n_groups, n_markers, n_down, fold_change, rng):
    """Per-group gene proportions with planted up/down markers: (means, marker_of, direction, genes)."""
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
    return means, marker_of, direction, genes


def _sample_cells(means, n_cells, depth, dispersion, rng):
    """Negative-binomial counts (CSR float32) and group codes of ``n_cells`` cells."""
    group = rng.integers(0, len(means), size=n_cells)
    size = depth * rng.lognormal(0, 0.3, size=n_cells)
    mu = means[group] * size[:, None]
    r = 1.0 / dispersion
    counts = rng.poisson(rng.gamma(r, mu / r)).astype(np.float32)
    return sparse.csr_matrix(counts), group


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
    means, marker_of, direction, genes = _synthetic_model(
        n_genes, n_groups, n_markers, n_down, fold_change, rng
    )
    X, group = _sample_cells(means, n_cells, depth, dispersion, rng)
    names = [f"gene{i}" for i in range(n_genes)]
    adata = AnnData(
        X,
        obs=_group_frame(group, n_groups),
        var=pd.DataFrame(
            {"marker_of": marker_of.astype(str), "direction": direction.astype(str)}, index=names
        ),
    )
    adata.uns["markers"] = {str(g): [names[i] for i in genes[g]] for g in range(n_groups)}
    return adata


#: Ranges of :func:`planted_markers`' random draws (low, high; log-uniform where marked).
PLANTED_RANGES = {
    "n_genes": (1000, 5000),  # log-uniform
    "n_groups": (3, 8),
    "n_cells": (1500, 3000),
    "size_ratio": (1.0, 10.0),  # largest / smallest group, log-uniform
    "dispersion": (0.05, 1.0),  # NB: var = mu + dispersion * mu^2, log-uniform
    "fold_change": (2.0, 8.0),  # log-uniform
    "depth": (1000.0, 10000.0),  # mean counts per cell, log-uniform
    "n_modules": (0, 3),  # gene modules that vary across cells independently of the groups
}


def planted_markers(random_state: int = 0, **settings) -> AnnData:
    """One draw from a family of planted-marker data sets that differ in what matters.

    Every setting not given is drawn at random (seeded by ``random_state``) from
    :data:`PLANTED_RANGES` and the choices below, so a benchmark over many ``random_state``
    values tests methods on data nobody tuned them for:

    - ``n_genes``, ``n_groups``, ``n_cells``; group sizes whose largest/smallest ratio is
      ``size_ratio`` (at least 30 cells per group);
    - negative-binomial counts with ``dispersion``, library sizes log-normal around ``depth``;
    - 10 up-regulated markers per group at ``fold_change``, and with ``down=True`` 5
      down-regulated ones per group;
    - ``markers``: ``'variable'`` draws the markers among the 20 % most expressed genes (they are
      also among the most variable genes), ``'any'`` among all genes whose expected count at the
      base profile is at least 0.1 per cell (so a marker can be as quiet as the data allows);
    - ``n_modules`` correlated gene modules of 20 to 60 null genes each, scaled together by a
      per-cell log-normal factor (as cell cycle or stress programmes), independently of the groups.

    Returns
    -------
    AnnData with raw counts (CSR float32) in ``.X``, ``obs['group']``, ``var['marker_of']`` /
    ``var['direction']`` / ``var['module']``, ``uns['markers'][group]`` (up-regulated markers first,
    as :func:`synthetic_counts`) and ``uns['planted']``: the settings of this draw.
    """
    rng = np.random.default_rng(random_state)
    known = set(PLANTED_RANGES) | {"down", "markers"}
    unknown = set(settings) - known
    if unknown:
        raise TypeError(
            f"planted_markers got unknown settings {sorted(unknown)}; known: {sorted(known)}."
        )

    def draw(name, log=False, integer=False):
        if name in settings:
            return settings[name]
        lo, hi = PLANTED_RANGES[name]
        if integer:
            return int(rng.integers(lo, hi + 1))
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))) if log else rng.uniform(lo, hi))

    s = {
        "n_genes": int(round(draw("n_genes", log=True))),
        "n_groups": draw("n_groups", integer=True),
        "n_cells": int(round(draw("n_cells"))),
        "size_ratio": draw("size_ratio", log=True),
        "dispersion": draw("dispersion", log=True),
        "fold_change": draw("fold_change", log=True),
        "depth": draw("depth", log=True),
        "n_modules": draw("n_modules", integer=True),
        "down": bool(settings.get("down", rng.random() < 0.5)),
        "markers": settings.get("markers", "variable" if rng.random() < 0.5 else "any"),
    }
    if s["markers"] not in ("variable", "any"):
        raise ValueError(f"markers must be 'variable' or 'any', got {s['markers']!r}.")
    n_genes, n_groups, n_up, n_down = s["n_genes"], s["n_groups"], 10, 5 if s["down"] else 0
    base = rng.lognormal(mean=-1.0, sigma=1.2, size=n_genes)
    base /= base.sum()
    if s["markers"] == "variable":
        pool = np.argsort(-base)[: n_genes // 5]
    else:
        pool = np.flatnonzero(base * s["depth"] >= 0.1)
    per_group = n_up + n_down
    if n_groups * per_group > len(pool):
        raise ValueError(
            f"{n_groups} groups x {per_group} markers do not fit in {len(pool)} genes."
        )
    genes = rng.choice(pool, n_groups * per_group, replace=False).reshape(n_groups, per_group)
    means = np.tile(base, (n_groups, 1))
    marker_of = np.full(n_genes, "", dtype=object)
    direction = np.full(n_genes, "", dtype=object)
    for g in range(n_groups):
        up, dn = genes[g, :n_up], genes[g, n_up:]
        means[g, up] *= s["fold_change"]
        means[g, dn] /= s["fold_change"]
        marker_of[genes[g]] = str(g)
        direction[up], direction[dn] = "up", "down"
    means /= means.sum(1, keepdims=True)

    weights = np.exp(rng.uniform(0, np.log(s["size_ratio"]), n_groups))
    weights[rng.permutation(n_groups)[:2]] = [1.0, s["size_ratio"]][: min(2, n_groups)]
    sizes = np.maximum(np.round(s["n_cells"] * weights / weights.sum()).astype(int), 30)
    group = rng.permutation(np.repeat(np.arange(n_groups), sizes))
    n_cells = len(group)
    library = s["depth"] * rng.lognormal(0, 0.3, size=n_cells)
    mu = means[group] * library[:, None]
    module = np.full(n_genes, "", dtype=object)
    nulls = np.flatnonzero(marker_of == "")
    for k in range(s["n_modules"]):
        members = rng.choice(nulls, int(rng.integers(20, 61)), replace=False)
        nulls = np.setdiff1d(nulls, members)
        mu[:, members] *= rng.lognormal(0, 0.8, size=n_cells)[:, None]
        module[members] = f"module{k}"
    r = 1.0 / s["dispersion"]
    counts = rng.poisson(rng.gamma(r, mu / r)).astype(np.float32)
    names = [f"gene{i}" for i in range(n_genes)]
    adata = AnnData(
        sparse.csr_matrix(counts),
        obs=_group_frame(group, n_groups),
        var=pd.DataFrame(
            {
                "marker_of": marker_of.astype(str),
                "direction": direction.astype(str),
                "module": module.astype(str),
            },
            index=names,
        ),
    )
    adata.uns["markers"] = {str(g): [names[i] for i in genes[g]] for g in range(n_groups)}
    adata.uns["planted"] = s
    return adata


def _group_frame(group: np.ndarray, n_groups: int) -> pd.DataFrame:
    cats = [str(g) for g in range(n_groups)]
    return pd.DataFrame(
        {"group": pd.Categorical([str(g) for g in group], categories=cats)},
        index=[f"cell{i}" for i in range(len(group))],
    )


def write_synthetic_h5ad(
    path: str | Path,
    n_cells: int,
    n_genes: int = 2000,
    n_groups: int = 12,
    *,
    chunk_size: int = 50_000,
    log_normalize: bool = True,
    depth: float = 1500.0,
    random_state: int = 0,
) -> Path:
    """Write :func:`synthetic_counts`-style cells straight to an ``.h5ad``, chunk by chunk.

    For data sets larger than memory: each chunk of ``chunk_size`` cells is drawn from the same
    groups (one model, ``random_state``), optionally normalised to 10,000 counts and ``log1p``-ed,
    and appended to a CSR ``.X`` on disk, so memory stays at one chunk. Open the result with
    ``anndata.read_h5ad(path, backed='r')``.
    """
    import h5py
    from anndata.io import sparse_dataset, write_elem

    path = Path(path)
    means, _, _, _ = _synthetic_model(
        n_genes, n_groups, 10, 5, 4.0, np.random.default_rng(random_state)
    )
    groups = []
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        for c, start in enumerate(range(0, n_cells, chunk_size)):
            rng = np.random.default_rng([random_state, c])
            X, group = _sample_cells(means, min(chunk_size, n_cells - start), depth, 0.3, rng)
            if log_normalize:
                scale = 1e4 / np.maximum(np.asarray(X.sum(axis=1)).ravel(), 1)
                X = sparse.diags(scale.astype(np.float32)) @ X
                np.log1p(X.data, out=X.data)
            groups.append(group)
            if c == 0:
                write_elem(f, "X", X)
            else:
                sparse_dataset(f["X"]).append(X)
        group = np.concatenate(groups)
        write_elem(f, "obs", _group_frame(group, n_groups))
        write_elem(f, "var", pd.DataFrame(index=[f"gene{i}" for i in range(n_genes)]))
        for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            write_elem(f, key, {})
    return path


def pancreas(path: str | Path | None = None) -> AnnData:
    """Baron et al. (2016) human pancreas, 2,142 cells, raw counts, ``obs['cell_type1']`` (14 types).

    Shipped inside the package as ``sclens/data/baron_human_pancreas.h5ad`` (provenance in
    ``sclens/data/PROVENANCE.md``), so it is there in an installed wheel too.

    Parameters
    ----------
    path
        Read this ``.h5ad`` instead of the copy shipped with sclens.
    """
    import anndata as ad

    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"pancreas data file {str(path)!r} not found (resolved: {path.resolve()}); "
                "pass `path=` to an existing .h5ad, or leave it out to read the copy shipped "
                "with sclens."
            )
        return ad.read_h5ad(path)
    resource = resources.files("sclens").joinpath("data", _PANCREAS_FILE)
    if not resource.is_file():
        raise FileNotFoundError(
            f"the pancreas data file {_PANCREAS_FILE!r} is missing from the installed sclens "
            f"package ({resource}); reinstall sclens, or pass `path=` to your own copy."
        )
    with resources.as_file(resource) as local:
        return ad.read_h5ad(local)
