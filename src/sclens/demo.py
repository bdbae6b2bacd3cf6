"""``make demo``: maps and clusters of the shipped pancreas data, a held-out donor projected, out/.

Run as ``python -m sclens.demo --out out`` (``--data`` reads another copy of the pancreas
``.h5ad`` instead of the one shipped in the package).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scanpy as sc  # noqa: E402
from anndata import AnnData  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import sclens as sl  # noqa: E402


def den_figure(adata: AnnData, key: str = "den", label_key: str = "cell_type1") -> Figure:
    """DEN clusters (``obs[key]``) and labelled types (``obs[label_key]``) side by side on the map.

    scanpy puts a categorical legend in the right margin of its axes and splits it into two
    columns above 14 categories (three above 30). With the two panels at fixed positions, the
    second column of the left panel's legend was drawn under the right panel, so a DEN map with
    15 clusters showed only clusters 0-7. A constrained layout makes room for each legend,
    however many columns it has, so every cluster is listed.
    """
    fig, axs = plt.subplots(1, 2, figsize=(15, 5.5), layout="constrained")
    sc.pl.embedding(adata, basis=key, color=key, ax=axs[0], show=False, title="DEN clusters")
    sc.pl.embedding(adata, basis=key, color=label_key, ax=axs[1], show=False, title="cell types")
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data", default=None, help="pancreas .h5ad (default: the copy shipped with sclens)"
    )
    parser.add_argument("--out", default="out")
    parser.add_argument("--query-donor", default="human4")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sc.settings.verbosity = 1
    sc.settings.figdir = out

    adata = sl.datasets.pancreas(args.data)
    print(
        f"loaded {adata.n_obs} cells x {adata.n_vars} genes from {args.data or 'the shipped copy'}"
    )
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    is_query = (adata.obs["donor"] == args.query_donor).to_numpy()
    ref, query = adata[~is_query].copy(), adata[is_query].copy()
    sc.pp.highly_variable_genes(ref, n_top_genes=2000, subset=True)
    sc.pp.pca(ref, n_comps=50, random_state=0)

    t0 = time.perf_counter()
    sl.tl.ptsne(ref, random_state=0)
    print(f"parametric t-SNE on {ref.n_obs} reference cells: {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    sl.tl.den(ref, random_state=0)
    print(
        f"DEN on the reference: {time.perf_counter() - t0:.1f} s, "
        f"{ref.uns['den']['params']['n_clusters']} clusters found "
        f"({ref.obs['cell_type1'].nunique()} labelled cell types)"
    )

    truth = query.obs["cell_type1"].astype(str).to_numpy()
    query.obs = query.obs.drop(columns=["cell_type1"])
    t0 = time.perf_counter()
    sl.tl.project(query, ref, model_key="ptsne", transfer="cell_type1")
    sl.tl.project(query, ref, model_key="den")
    acc = float(np.mean(query.obs["cell_type1"].astype(str).to_numpy() == truth))
    print(
        f"projected donor {args.query_donor} ({query.n_obs} cells) in {time.perf_counter() - t0:.2f} s; "
        f"label transfer accuracy {acc:.3f}"
    )
    query.obs["cell_type1_true"] = truth

    figs = []
    fig, ax = plt.subplots(figsize=(7, 5))
    sc.pl.embedding(
        ref, basis="ptsne", color="cell_type1", ax=ax, show=False, title="reference (3 donors)"
    )
    figs.append(("map_cell_types.png", fig))
    fig, ax = plt.subplots(figsize=(7, 5))
    sl.pl.projection(query, ref, key="ptsne", color="cell_type1", ax=ax, show=False)
    figs.append(("projection.png", fig))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    sl.pl.history(ref, "ptsne", ax=ax, show=False)
    figs.append(("training_loss.png", fig))
    figs.append(("den_clusters.png", den_figure(ref)))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    sl.pl.den_spectrum(ref, ax=ax, show=False)
    figs.append(("den_spectrum.png", fig))
    written = []
    for name, fig in figs:
        fig.savefig(out / name, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(out / name)
    ref.write_h5ad(out / "pancreas_reference.h5ad")
    query.write_h5ad(out / "pancreas_query.h5ad")
    sl.save_model(ref, "ptsne", out / "ptsne_model.npz")
    sl.save_model(ref, "den", out / "den_model.npz")
    written += [
        out / "pancreas_reference.h5ad",
        out / "pancreas_query.h5ad",
        out / "ptsne_model.npz",
        out / "den_model.npz",
    ]
    print("wrote:")
    for p in written:
        print(f"  {p}")


if __name__ == "__main__":
    main()
