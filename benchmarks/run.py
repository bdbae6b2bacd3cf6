"""Benchmarks: sclens against scanpy's own tools, side by side in one run.

    python benchmarks/run.py --out benchmarks/results [--datasets baron,pbmc68k,...] [--n-synthetic 70000]

Each (data set, method) runs in its own subprocess so that its peak resident memory is its own.
Writes ``<out>/ptsne.md`` (table) and ``<out>/ptsne.json``.

Methods on the same PCs (50 components of 2,000 HVGs of log-normalised counts):
``sclens.ptsne``, ``sc.pp.neighbors + sc.tl.umap``, ``sc.tl.tsne``. Quality: trustworthiness
(k=10, 5,000-cell subsample, against the PCs) and 5-fold 10-NN accuracy of the 2-D coordinates
against the labels. Projection: 10,000 new cells with ``sl.tl.project`` versus ``sc.tl.ingest``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("SCLENS_SHARED_DATA", ROOT.parent / "shared" / "data"))
CACHE = HERE / "cache"

DATASETS = {
    "baron": ("baron_human_pancreas.h5ad", "cell_type1"),
    "pbmc10x": ("scdcc_10X_PBMC_top2000.h5ad", "label"),
    "kidney": ("scdcc_human_kidney_counts_top2000.h5ad", "label"),
    "pbmc68k": (None, "bulk_labels"),
    "synthetic": (None, "group"),
}


def prepare(name: str, n_synthetic: int, hvg: str = "seurat"):
    """Preprocessed data set, cached as h5ad: (path, label key).

    Log-normalised, 2,000 genes, 50 PCs. ``hvg='seurat'``: scanpy's default flavour on the
    log-normalised data; ``'pearson'``: Pearson residuals of the raw counts (as the tutorials).
    """
    import scanpy as sc

    import sclens as sl

    if hvg not in ("seurat", "pearson"):
        raise ValueError(f"hvg must be 'seurat' or 'pearson', got {hvg!r}")
    if hvg == "pearson" and name == "pbmc68k":
        raise SystemExit("hvg='pearson' needs raw counts; pbmc68k has none (use 'seurat')")
    CACHE.mkdir(exist_ok=True)
    fname, label = DATASETS[name]
    stem = f"{name}_{n_synthetic}" if name == "synthetic" else name
    path = CACHE / (f"{stem}.h5ad" if hvg == "seurat" else f"{stem}_{hvg}.h5ad")
    if path.exists():
        return path, label
    if name == "pbmc68k":
        adata = sc.datasets.pbmc68k_reduced()  # already scaled, with PCA
        adata.obsm.pop("X_umap", None)
    else:
        if name == "synthetic":
            adata = sl.datasets.synthetic_counts(n_synthetic + 10_000, 2000, 12, random_state=0)
        else:
            local = ROOT / "src" / "sclens" / "data" / fname  # shipped in the package
            adata = sc.read_h5ad(local if local.exists() else SHARED / fname)
            if adata.obs[label].dtype != "category":
                adata.obs[label] = adata.obs[label].astype(str).astype("category")
        if adata.var_names.has_duplicates or name in ("pbmc10x", "kidney"):
            adata.var_names = (
                [f"g{i}" for i in range(adata.n_vars)] if name != "baron" else adata.var_names
            )
            adata.var_names_make_unique()
        if hvg == "pearson" and adata.n_vars > 2000:
            sc.experimental.pp.highly_variable_genes(
                adata, flavor="pearson_residuals", n_top_genes=2000
            )
            adata = adata[:, adata.var["highly_variable"]].copy()
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
        if hvg == "seurat" and adata.n_vars > 2000:
            sc.pp.highly_variable_genes(adata, n_top_genes=2000, subset=True)
        sc.pp.pca(adata, n_comps=50, random_state=0)
    for k in list(adata.uns):
        if k not in ("pca",):
            del adata.uns[k]
    adata.obsp.clear() if hasattr(adata.obsp, "clear") else None
    adata.write_h5ad(path)
    return path, label


def peak_rss_gib() -> float:
    """This process's own peak resident memory (VmHWM; ru_maxrss would include the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def worker(path: str, method: str, out: str, n_query: int) -> None:
    """Run one method on one data set; save coordinates and timings."""
    import scanpy as sc

    import sclens as sl

    sc.settings.verbosity = 0
    adata = sc.read_h5ad(path)
    res: dict = {}
    query = None
    if n_query:
        query = adata[-n_query:].copy()
        adata = adata[:-n_query].copy()
    t0 = time.perf_counter()
    if method == "ptsne":
        sl.tl.ptsne(adata, random_state=0)
        Y = adata.obsm["X_ptsne"]
    elif method == "umap":
        sc.pp.neighbors(adata, n_neighbors=15, random_state=0)
        sc.tl.umap(adata, random_state=0)
        Y = adata.obsm["X_umap"]
    elif method == "tsne":
        sc.tl.tsne(adata, random_state=0, n_jobs=2)
        Y = adata.obsm["X_tsne"]
    else:
        raise ValueError(method)
    res["train_s"] = time.perf_counter() - t0
    if query is not None and method in ("ptsne", "umap"):
        t0 = time.perf_counter()
        if method == "ptsne":
            sl.tl.project(query, adata, model_key="ptsne")
        else:
            sc.tl.ingest(query, adata, embedding_method="umap")
        res["project_s"] = time.perf_counter() - t0
    res["peak_rss_gib"] = peak_rss_gib()
    np.save(out, Y)
    Path(out).with_suffix(".json").write_text(json.dumps(res))


def quality(X: np.ndarray, Y: np.ndarray, labels: np.ndarray, rng) -> tuple[float, float]:
    from sklearn.manifold import trustworthiness
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    sub = rng.choice(len(X), size=min(5000, len(X)), replace=False)
    t = trustworthiness(X[sub], Y[sub], n_neighbors=10)
    _, counts = np.unique(labels, return_counts=True)
    cv = StratifiedKFold(5, shuffle=True, random_state=0) if counts.min() >= 5 else 5
    acc = cross_val_score(KNeighborsClassifier(10), Y, labels, cv=cv).mean()
    return float(t), float(acc)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--datasets", default="baron,pbmc10x,kidney,pbmc68k,synthetic")
    p.add_argument("--methods", default="ptsne,umap,tsne", help="others keep their previous rows")
    p.add_argument("--n-synthetic", type=int, default=70_000)
    p.add_argument("--worker", nargs=4, metavar=("PATH", "METHOD", "OUT", "NQUERY"))
    args = p.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.worker[2], int(args.worker[3]))
        return
    import scanpy as sc

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.datasets.split(","):
        path, label = prepare(name, args.n_synthetic)
        adata = sc.read_h5ad(path)
        n_query = 10_000 if name == "synthetic" else 0
        ref = adata[:-n_query] if n_query else adata
        X, labels = np.asarray(ref.obsm["X_pca"]), ref.obs[label].astype(str).to_numpy()
        for method in args.methods.split(","):
            if method == "tsne" and name == "synthetic" and args.n_synthetic > 100_000:
                continue
            coords = out / f"{name}_{method}.npy"
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                str(path),
                method,
                str(coords),
                str(n_query),
            ]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            res = json.loads(coords.with_suffix(".json").read_text())
            t, acc = quality(X, np.load(coords), labels, np.random.default_rng(0))
            row = {
                "dataset": name,
                "n_cells": ref.n_obs,
                "method": method,
                **res,
                "trust": t,
                "knn_acc": acc,
            }
            rows.append(row)
            print(json.dumps(row), flush=True, file=sys.stderr)
            print(f"  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    # rows of (data set, method) pairs not run this time are kept from the previous results
    previous = out / "ptsne.json"
    if previous.exists():
        done = {(r["dataset"], r["method"]) for r in rows}
        kept = [
            r for r in json.loads(previous.read_text()) if (r["dataset"], r["method"]) not in done
        ]
        rows = sorted(kept + rows, key=lambda r: (list(DATASETS).index(r["dataset"]), r["method"]))
    (out / "ptsne.json").write_text(json.dumps(rows, indent=1))
    (out / "ptsne.md").write_text(table(rows))
    print(table(rows))


def table(rows: list[dict]) -> str:
    lines = [
        "| data set | cells | method | train s | ratio to umap | peak RSS GiB | trust@10 | 10-NN acc | project 10k s | ratio to ingest |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    by = {(r["dataset"], r["method"]): r for r in rows}
    for r in rows:
        u = by.get((r["dataset"], "umap"))
        ratio = r["train_s"] / u["train_s"] if u else float("nan")
        proj = r.get("project_s")
        pr = (
            (u["project_s"] / proj)
            if (proj and r["method"] != "umap" and u and u.get("project_s"))
            else None
        )
        lines.append(
            f"| {r['dataset']} | {r['n_cells']} | {r['method']} | {r['train_s']:.1f} | {ratio:.2f} | "
            f"{'n/a' if r.get('peak_rss_gib') is None else format(r['peak_rss_gib'], '.2f')} | {r['trust']:.4f} | {r['knn_acc']:.4f} | "
            f"{'' if proj is None else f'{proj:.2f}'} | {'' if pr is None else f'ingest {pr:.0f}x slower'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
