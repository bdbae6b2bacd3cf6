"""Attraction-repulsion DR against scanpy: the t-SNE end vs ``sc.tl.tsne``, the UMAP end vs
``sc.tl.umap``, and PCA recovered from random points vs ``sc.pp.pca``.

    python benchmarks/ardr.py --out benchmarks/results [--datasets baron,pbmc68k] [--n-cells N] [--epochs E]

Each (data set, method) runs in its own subprocess (timings are its own). Same PCs for all:
``sc.pp.pca`` (50 components) of the cells used, on 2,000 HVGs of log-normalised counts
(pbmc68k_reduced: its scaled genes). Maps: trust-
worthiness (k=10, 5,000-cell subsample, against the PCs), 5-fold 10-NN accuracy, wall time and its
ratio to the scanpy method. PCA: cosines of the principal angles between the recovered plane and
``sc.pp.pca``'s first two components, relative error of the two singular values, wall time and its
ratio to ``sc.pp.pca`` (50 components, as scanpy computes them). Writes ``<out>/ardr.md`` and
``<out>/ardr.json``. ``--n-cells``/``--epochs`` make a quick smoke run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import prepare, quality  # noqa: E402

#: method -> (what it is compared with, kind)
METHODS = {
    "ardr_tsne": ("tsne", "map"),
    "tsne": ("tsne", "map"),
    "ardr_umap": ("umap", "map"),
    "umap": ("umap", "map"),
    "ardr_pca": ("sc_pca", "pca"),
    "ardr_pca_genes": ("sc_pca", "pca"),
    "ardr_pca_sampled": ("sc_pca", "pca"),
    "sc_pca": ("sc_pca", "pca"),
}


def load(path, n_cells: int):
    """The prepared data (first ``n_cells``), with ``sc.pp.pca`` recomputed on exactly these cells."""
    import scanpy as sc

    adata = sc.read_h5ad(path)
    if n_cells:
        adata = adata[:n_cells].copy()
    # PCA of all genes the map reads (pbmc68k_reduced flags a subset as highly variable)
    adata.var.drop(columns=["highly_variable"], errors="ignore", inplace=True)
    sc.pp.pca(adata, n_comps=50, random_state=0)
    return adata


def worker(path: str, method: str, out: str, n_cells: int, epochs: int) -> None:
    import scanpy as sc

    import sclens as sl

    sc.settings.verbosity = 0
    adata = load(path, n_cells)
    kw = {"n_epochs": epochs} if epochs else {}
    t0 = time.perf_counter()
    if method == "ardr_tsne":
        sl.tl.ardr(adata, method="tsne", random_state=0, **kw)
        Y = adata.obsm["X_ardr"]
    elif method == "ardr_umap":
        sl.tl.ardr(adata, method="umap", random_state=0, **kw)
        Y = adata.obsm["X_ardr"]
    elif method == "tsne":
        sc.tl.tsne(adata, random_state=0, n_jobs=2)
        Y = adata.obsm["X_tsne"]
    elif method == "umap":
        sc.pp.neighbors(adata, n_neighbors=15, random_state=0)
        sc.tl.umap(adata, random_state=0)
        Y = adata.obsm["X_umap"]
    elif method == "ardr_pca":
        sl.tl.ardr(adata, method="pca", random_state=0)
        Y = adata.obsm["X_ardr"]
    elif method == "ardr_pca_genes":
        sl.tl.ardr(adata, method="pca", use_rep="X", random_state=0)
        Y = adata.obsm["X_ardr"]
    elif method == "ardr_pca_sampled":
        sl.tl.ardr(adata, method="pca", sampled_pairs=512, random_state=0)
        Y = adata.obsm["X_ardr"]
    elif method == "sc_pca":
        ref = adata.copy()
        sc.pp.pca(ref, n_comps=50, random_state=0)
        Y = ref.obsm["X_pca"][:, :2]
    else:
        raise ValueError(method)
    secs = time.perf_counter() - t0
    np.save(out, Y)
    Path(out).with_suffix(".json").write_text(json.dumps({"seconds": secs}))


def pca_accuracy(Y: np.ndarray, P: np.ndarray) -> tuple[float, float, float]:
    """(smallest principal-angle cosine, worst relative singular value error)."""
    qy, _ = np.linalg.qr(Y - Y.mean(0))
    qp, _ = np.linalg.qr(P - P.mean(0))
    cos = np.linalg.svd(qy.T @ qp, compute_uv=False)
    sy = np.linalg.svd(Y - Y.mean(0), compute_uv=False)
    sp = np.linalg.svd(P - P.mean(0), compute_uv=False)
    err = np.abs(sy / sp - 1)
    return float(cos.min()), float(cos.max()), float(err.max())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--datasets", default="baron,pbmc68k")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--n-cells", type=int, default=0, help="first N cells only (smoke runs)")
    p.add_argument("--epochs", type=int, default=0, help="ardr epochs (0: defaults)")
    p.add_argument("--worker", nargs=5, metavar=("PATH", "METHOD", "OUT", "NCELLS", "EPOCHS"))
    args = p.parse_args()
    if args.worker:
        a = args.worker
        worker(a[0], a[1], a[2], int(a[3]), int(a[4]))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.datasets.split(","):
        path, label = prepare(name, 0)
        adata = load(path, args.n_cells)
        X, labels = np.asarray(adata.obsm["X_pca"]), adata.obs[label].astype(str).to_numpy()
        for method in args.methods.split(","):
            coords = out / f"ardr_{name}_{method}.npy"
            cmd = [sys.executable, __file__, "--worker", str(path), method, str(coords)]
            subprocess.run(cmd + [str(args.n_cells), str(args.epochs)], check=True)
            res = json.loads(coords.with_suffix(".json").read_text())
            Y = np.load(coords)
            row = {"dataset": name, "n_cells": adata.n_obs, "method": method, **res}
            if METHODS[method][1] == "map":
                row["trust"], row["knn_acc"] = quality(X, Y, labels, np.random.default_rng(0))
            else:
                cmin, cmax, err = pca_accuracy(Y.astype(np.float64), X[:, :2].astype(np.float64))
                row |= {"cos_min": cmin, "cos_max": cmax, "sv_rel_err": err}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            coords.unlink()
            coords.with_suffix(".json").unlink()
    (out / "ardr.json").write_text(json.dumps(rows, indent=1))
    (out / "ardr.md").write_text(table(rows))
    print(table(rows))


def table(rows: list[dict]) -> str:
    by = {(r["dataset"], r["method"]): r for r in rows}
    lines = [
        "### Maps: normalization 1 (t-SNE end) and 0 (UMAP end) vs scanpy",
        "",
        "| data set | cells | method | seconds | time ratio | trust@10 | 10-NN acc | Δtrust | Δacc |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "trust" not in r:
            continue
        base = by.get((r["dataset"], METHODS[r["method"]][0]), r)
        lines.append(
            f"| {r['dataset']} | {r['n_cells']} | {r['method']} | {r['seconds']:.1f} | "
            f"{r['seconds'] / base['seconds']:.2f} | {r['trust']:.4f} | {r['knn_acc']:.4f} | "
            f"{r['trust'] - base['trust']:+.4f} | {r['knn_acc'] - base['knn_acc']:+.4f} |"
        )
    lines += [
        "",
        "### PCA recovered from random points vs sc.pp.pca (first two components)",
        "",
        "| data set | cells | method | seconds | time ratio | min cosine | max cosine | max singular value error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "cos_min" not in r:
            continue
        base = by.get((r["dataset"], "sc_pca"), r)
        lines.append(
            f"| {r['dataset']} | {r['n_cells']} | {r['method']} | {r['seconds']:.2f} | "
            f"{r['seconds'] / base['seconds']:.2f} | {r['cos_min']:.6f} | {r['cos_max']:.6f} | "
            f"{r['sv_rel_err']:.2e} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
