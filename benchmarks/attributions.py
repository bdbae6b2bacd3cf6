"""Attributions on planted markers nobody tuned for: precision@10 over random generator draws.

    python benchmarks/attributions.py --out benchmarks/results [--draws 30] [--jobs 2]

Each draw of :func:`sclens.datasets.planted_markers` (random NB dispersion, fold change 2-8x,
up-only or up-and-down markers, group sizes up to 1:10, library size, 1,000-5,000 genes, markers
among the most variable genes or anywhere, correlated gene modules) is log-normalised, reduced
to 50 PCs and mapped with a default ``sl.tl.ptsne``; then every attribution method of
``sl.tl.rank_genes`` at its defaults ranks the genes of every group against the rest, beside
``sc.tl.rank_genes_groups(method='wilcoxon')``. Precision@10: the share of a group's 10
up-regulated planted markers among its 10 top-ranked genes, averaged over groups (and the worst
group). Draws run in ``--jobs`` one-thread processes.

Writes ``<out>/attributions.md`` (distribution per method) and ``attributions.json`` (per draw,
with the draw's settings, for finding what a method fails on).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from maps import planted_draw  # benchmarks/ is on the path when a script here runs
from rank_genes import table

METHODS = {
    "saliency": {"method": "saliency"},
    "saliency x input": {"method": "saliency", "times_input": True},
    "integrated_gradients": {"method": "integrated_gradients"},
    "shap": {"method": "shap"},
}

DELETE = (5, 10, 20, 50)
#: maps whose groups' 10-NN accuracy reaches this separate the groups
SEPARATED = 0.9
#: bins of the per-group separation that ``sl.tl.rank_genes`` reports
SEPARATION_BINS = (-1.0, 0.25, 0.5, 0.75, 1.0)


def one_draw(
    seed: int, methods: dict[str, dict] | None = None, save: str | None = None, deletion=True
) -> dict:
    import anndata
    import scanpy as sc
    import torch
    from sklearn.neighbors import KNeighborsClassifier

    import sclens as sl

    torch.set_num_threads(1)
    sl.set_num_threads(1)
    sc.settings.verbosity = 0
    methods = METHODS if methods is None else methods
    stored = Path(save or "") / f"draw{seed}.h5ad"
    t0 = time.perf_counter()
    if save and stored.is_file():  # the same draw and map as last time
        adata = anndata.read_h5ad(stored)
    else:
        adata = planted_draw(seed)
        t0 = time.perf_counter()
        sl.tl.ptsne(adata, random_state=seed)
        if save:
            adata.write_h5ad(stored)
    row = {"seed": seed, "settings": adata.uns["planted"], "map s": time.perf_counter() - t0}
    labels = adata.obs["group"].to_numpy()
    knn = KNeighborsClassifier(10).fit(adata.obsm["X_ptsne"], labels)
    row["map 10-NN accuracy"] = float(knn.score(adata.obsm["X_ptsne"], labels))
    row["pcs 10-NN accuracy"] = pcs_accuracy(adata)
    groups = list(adata.obs["group"].cat.categories)
    markers = {g: adata.uns["markers"][g][:10] for g in groups}

    def precision(names_of) -> list[float]:
        return [float(np.isin(names_of(g)[:10], markers[g]).mean()) for g in groups]

    warm = adata[:200].copy()  # numba compiles Wilcoxon's kernels on the first call
    sc.tl.rank_genes_groups(warm, "group", method="wilcoxon", key_added="w")
    t0 = time.perf_counter()
    sc.tl.rank_genes_groups(adata, "group", method="wilcoxon", key_added="w")
    row["wilcoxon s"] = time.perf_counter() - t0
    row["wilcoxon"] = precision(lambda g: list(adata.uns["w"]["names"][g]))
    keys = {"wilcoxon": "w"}
    for i, (label, kw) in enumerate(methods.items()):
        t0 = time.perf_counter()
        sl.tl.rank_genes(adata, "group", model_key="ptsne", key_added=f"r{i}", **kw)
        row[f"{label} s"] = time.perf_counter() - t0
        row[label] = precision(lambda g, i=i: list(adata.uns[f"r{i}"]["names"][g]))
        keys[label] = f"r{i}"
    # every method explains the same map: one separation per group
    row["separation"] = [float(adata.uns["r0"]["separation"][g]) for g in groups]
    if not deletion:
        return row
    # deletion curves: share of a group's cells that leave it when its top k genes are removed
    sl.tl.attribution_faithfulness(
        adata, "group", model_key="ptsne", keys=list(keys.values()), n_genes=DELETE
    )
    table = adata.uns["attribution_faithfulness"]["table"]
    left = table.groupby(["ranking", "n_genes"])["left"].mean()
    label_of = {key: label for label, key in keys.items()}
    row["left"] = {}
    for ranking in table["ranking"].unique():  # 'r2', 'r2:influence', 'w', 'random'
        key, _, kind = ranking.partition(":")
        label = label_of.get(key, key) + (f" ({kind})" if kind else "")
        row["left"][label] = [float(left[ranking, k]) for k in DELETE]
    return row


def pcs_accuracy(adata) -> float:
    """10-NN accuracy of the groups in the 50 PCs the map reads (as the map's is computed): how
    well the map's own input separates them."""
    from sklearn.neighbors import KNeighborsClassifier

    labels = adata.obs["group"].to_numpy()
    knn = KNeighborsClassifier(10).fit(adata.obsm["X_pca"], labels)
    return float(knn.score(adata.obsm["X_pca"], labels))


def summary(rows: list[dict], labels: list[str]) -> list[dict]:
    out = []
    for label in labels:
        mean = np.array([np.mean(r[label]) for r in rows])
        worst = np.array([np.min(r[label]) for r in rows])
        secs = np.array([r[f"{label} s"] / r["wilcoxon s"] for r in rows])
        out.append(
            {
                "method": label,
                "draws": len(rows),
                "median": f"{np.median(mean):.3f}",
                "10th pct": f"{np.percentile(mean, 10):.3f}",
                "min": f"{mean.min():.3f}",
                "median worst group": f"{np.median(worst):.2f}",
                "time / wilcoxon (median)": f"{np.median(secs):.1f}",
            }
        )
    return out


def by_separation(rows: list[dict], labels: list[str]) -> list[dict]:
    """Precision@10 per group (not per draw), binned by how well the map separates the group."""
    sep = np.concatenate([r["separation"] for r in rows])
    out = []
    for lo, hi in zip(SEPARATION_BINS[:-1], SEPARATION_BINS[1:], strict=True):
        inside = (sep >= lo) & ((sep < hi) if hi < 1 else (sep <= hi))
        row = {
            "separation": f"[{lo:g}, {hi:g}{']' if hi == 1 else ')'}",
            "groups": int(inside.sum()),
        }
        for label in labels:
            prec = np.concatenate([r[label] for r in rows])[inside]
            row[label] = (
                f"{np.median(prec):.2f} / {np.percentile(prec, 10):.2f}" if len(prec) else ""
            )
        out.append(row)
    return out


def fill_separation(rows: list[dict], save: str) -> None:
    """Recompute each draw's per-group separation from its saved map, as ``sl.tl.rank_genes``
    computes it (rows written before rank_genes reported it, or by an older version), and the
    10-NN accuracy of its groups in the PCs."""
    import anndata

    from sclens._core.ranking import group_labels, map_separation

    for r in rows:
        adata = anndata.read_h5ad(Path(save) / f"draw{r['seed']}.h5ad")
        groups = list(adata.obs["group"].cat.categories)
        coords = adata.obsm["X_ptsne"]
        r["separation"] = map_separation(coords, group_labels(adata, "group"), groups).tolist()
        r["pcs 10-NN accuracy"] = pcs_accuracy(adata)


def deletion(rows: list[dict]) -> list[dict]:
    """Mean share of cells that leave their group per ranking (markers, influence, random) and
    k, and on how many draws the ranking beats Wilcoxon's at that k (ties within 0.005 count)."""
    out = []
    for label in rows[0]["left"]:
        left = np.array([r["left"][label] for r in rows])
        wil = np.array([r["left"]["wilcoxon"] for r in rows])
        out.append(
            {"ranking": label}
            | {f"left, top {k}": f"{v:.3f}" for k, v in zip(DELETE, left.mean(0), strict=True)}
            | {
                f">= wilcoxon, top {k}": f"{v}/{len(rows)}"
                for k, v in zip(DELETE, (left >= wil - 0.005).sum(0), strict=True)
            }
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--draws", type=int, default=30)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument(
        "--save", help="folder that keeps each draw's mapped AnnData (reused when there)"
    )
    p.add_argument(
        "--retable",
        action="store_true",
        help="rewrite the tables from <out>/attributions.json, separations recomputed from the "
        "maps in --save",
    )
    args = p.parse_args()
    if args.retable and not args.save:
        p.error("--retable needs --save, the folder holding each draw's mapped AnnData")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
    seeds = range(args.first_seed, args.first_seed + args.draws)
    t0 = time.perf_counter()
    if args.retable:
        rows = json.loads((out / "attributions.json").read_text())
        fill_separation(rows, args.save)
        before = re.search(r"; (\d+ s)[,)]", (out / "attributions.md").read_text())
        took = f"{before.group(1) if before else '?'}, tables rewritten with --retable"
    else:
        reused = sum((Path(args.save or "") / f"draw{s}.h5ad").is_file() for s in seeds)
        with ProcessPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(partial(one_draw, save=args.save), seeds))
        took = f"{time.perf_counter() - t0:.0f} s"
        if args.save and reused:
            took += f", {reused} of the maps reused from {args.save}"
    labels = ["wilcoxon", *METHODS]
    separated = [r for r in rows if r["map 10-NN accuracy"] >= SEPARATED]
    in_pcs = [r for r in rows if r["pcs 10-NN accuracy"] >= SEPARATED]
    lost = sum(r["map 10-NN accuracy"] < SEPARATED for r in in_pcs)
    (out / "attributions.json").write_text(json.dumps(rows, indent=1))
    md = (
        "# Attributions on random planted-marker data sets\n\n"
        f"`python benchmarks/attributions.py --draws {args.draws}"
        + (f" --save {args.save}" if args.save else "")
        + f"` ({len(rows)} draws of "
        "`sl.datasets.planted_markers`, default `sl.tl.ptsne` on 50 PCs, defaults of "
        f"`sl.tl.rank_genes`; {took}). Precision@10 of the planted "
        "up-regulated markers, mean over a draw's groups; distribution over draws.\n\n"
        "Left, top k: share of a group's cells whose 15 nearest map neighbours, mostly of their group before, are mostly of "
        "another group once the group's k top-ranked genes are set to the other cells' mean "
        "(`sl.tl.attribution_faithfulness`), mean over groups and draws; '(influence)': the "
        "method's ranking by mean attribution without the sign.\n\n"
        f"## All draws\n\n{table(summary(rows, labels))}\n\n{table(deletion(rows))}\n\n"
        "## Groups by how well the map separates them\n\n"
        "Per group (not per draw): median / 10th percentile of precision@10, binned by the "
        "group's `separation` as `sl.tl.rank_genes` reports it (share of its cells' 15 nearest "
        "map neighbours in the group, 0 at chance, 1 the most the group's size allows; it warns below "
        "0.75).\n\n"
        f"{table(by_separation(rows, labels))}\n\n"
        f"## Draws whose map separates the groups (10-NN accuracy of the groups >= {SEPARATED})"
        f"\n\n{table(summary(separated, labels))}\n\n{table(deletion(separated))}\n\n"
        f"## Draws whose PCs separate the groups (10-NN accuracy in the 50 PCs >= {SEPARATED})\n\n"
        f"{len(in_pcs)} of {len(rows)} draws; on {lost} of them the map does not reach "
        f"{SEPARATED}. A map of PCs that mix the groups cannot separate them, and its "
        "attributions cannot name markers of groups it does not show.\n\n"
        f"{table(summary(in_pcs, labels))}\n"
    )
    (out / "attributions.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
