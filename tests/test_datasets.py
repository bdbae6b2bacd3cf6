"""The shipped pancreas data (also from an installed wheel) and the demo's DEN figure."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import sclens as sl

ROOT = Path(__file__).resolve().parents[1]
PANCREAS_SHAPE = (2142, 20125)


def test_pancreas_has_its_fourteen_cell_types():
    adata = sl.datasets.pancreas()
    assert adata.shape == PANCREAS_SHAPE
    assert isinstance(adata.obs["cell_type1"].dtype, pd.CategoricalDtype)
    assert len(adata.obs["cell_type1"].cat.categories) == 14


def test_pancreas_reads_a_given_path(tmp_path):
    path = tmp_path / "copy.h5ad"
    AnnData(np.ones((3, 2), dtype=np.float32)).write_h5ad(path)
    assert sl.datasets.pancreas(path=path).shape == (3, 2)
    assert sl.datasets.pancreas(path=str(path)).shape == (3, 2)


def test_pancreas_missing_path_says_what_to_do():
    with pytest.raises(FileNotFoundError, match=r"nonexistent\.h5ad.*not found.*path="):
        sl.datasets.pancreas(path="nonexistent.h5ad")


def _run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout}\n{res.stderr}"
    return res


def test_pancreas_loads_from_an_installed_wheel(tmp_path):
    """Build the wheel, install it outside the repository, load the data from there."""
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling (test extra)")
    dist, site, elsewhere = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)])
    (wheel,) = dist.glob("sclens-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert "sclens/data/baron_human_pancreas.h5ad" in names
    assert "sclens/data/PROVENANCE.md" in names
    _run([*pip, "install", "--no-deps", "--no-compile", "--target", str(site), str(wheel)])

    code = (
        "import sclens\n"
        "a = sclens.datasets.pancreas()\n"
        "print(sclens.__file__)\n"
        "print(a.shape)\n"
        "print(a.obs['cell_type1'].nunique())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    res = _run([sys.executable, "-c", code], cwd=elsewhere, env=env)
    module_file, shape, n_types = res.stdout.strip().splitlines()[-3:]
    assert Path(module_file).resolve().is_relative_to(site.resolve())
    assert shape == str(PANCREAS_SHAPE)
    assert n_types == "14"


@pytest.mark.parametrize("n_clusters", [15, 31])
def test_den_figure_lists_every_cluster(n_clusters):
    """scanpy's legend has two columns above 14 categories; the second must not be hidden."""
    import matplotlib.pyplot as plt

    from sclens.demo import den_figure

    rng = np.random.default_rng(0)
    n = 40 * n_clusters
    adata = AnnData(np.zeros((n, 3), dtype=np.float32))
    clusters = [str(c) for c in range(n_clusters)]
    adata.obs["den"] = pd.Categorical(rng.choice(clusters, n), categories=clusters)
    adata.obs["cell_type1"] = pd.Categorical(rng.choice([f"type {t}" for t in range(14)], n))
    adata.obsm["X_den"] = rng.normal(size=(n, 2))
    adata.uns["den_colors"] = ["#000000"] * 8  # stale palette of an earlier, smaller clustering

    fig = den_figure(adata)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax_den, ax_types = fig.axes[:2]
        legends = {ax_den: ax_den.get_legend(), ax_types: ax_types.get_legend()}
        texts = legends[ax_den].get_texts()
        assert [t.get_text() for t in texts] == clusters
        assert len(legends[ax_types].get_texts()) == 14
        for ax, legend in legends.items():
            others = [o.get_window_extent(renderer) for o in fig.axes if o is not ax]
            for text in legend.get_texts():
                box = text.get_window_extent(renderer)
                assert text.get_visible()
                assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1), (
                    f"legend entry {text.get_text()!r} outside the figure"
                )
                assert not any(box.overlaps(o) for o in others), (
                    f"legend entry {text.get_text()!r} is drawn under another panel"
                )
    finally:
        plt.close(fig)


def test_planted_markers_draws_differ_in_what_matters():
    """Each draw records its settings, plants 10 up-regulated markers per group that are
    higher in their group, and honours settings given by hand."""
    draws = [sl.datasets.planted_markers(random_state=s) for s in range(4)]
    settings = [d.uns["planted"] for d in draws]
    assert len({(s["n_genes"], s["n_groups"]) for s in settings}) > 1
    for adata, s in zip(draws, settings, strict=True):
        assert adata.n_vars == s["n_genes"]
        assert adata.obs["group"].cat.categories.size == s["n_groups"]
        assert adata.obs["group"].value_counts().min() >= 30
        X = adata.X.toarray()
        for g, genes in adata.uns["markers"].items():
            up = adata.var_names.get_indexer(genes[:10])
            assert (adata.var["direction"].iloc[up] == "up").all()
            inside = (adata.obs["group"] == g).to_numpy()
            per_cell = X / X.sum(1, keepdims=True)
            assert (
                per_cell[inside][:, up].mean(0) > per_cell[~inside][:, up].mean(0)
            ).mean() >= 0.9
    fixed = sl.datasets.planted_markers(random_state=5, n_groups=3, down=False, n_modules=2)
    assert fixed.uns["planted"]["n_groups"] == 3 and not fixed.uns["planted"]["down"]
    assert set(fixed.var["module"]) == {"", "module0", "module1"}
    with pytest.raises(TypeError, match="unknown settings"):
        sl.datasets.planted_markers(n_group=3)
