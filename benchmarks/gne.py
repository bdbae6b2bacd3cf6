"""GNE: reconstruction against an autoencoder, projection, novelty, and the kNN-attraction term.

    python benchmarks/gne.py --out benchmarks/results [--dataset baron] [--n-cells 0] [--epochs 60]

On Baron pancreas (log-normalised, 2,000 HVGs; the preparation of ``benchmarks/run.py``):

1. reconstruction: ``sl.tl.gne`` versus a 2-D-bottleneck autoencoder with the same decoder and
   the same epochs and batch size: final reconstruction MSE, seconds, map trustworthiness (k=10,
   against the PCs) and 5-fold 10-NN accuracy; and GNE with ``neighbor_weight`` 0.1 and 1;
2. projection: train on 80% of cells, project 20% with ``sl.tl.project``, kNN label transfer
   accuracy and seconds;
3. novelty: for each cell type (at least ``--min-type`` cells), train without it on 80% of the
   other cells, project the other 20% plus every cell of the type, AUROC of ``gne_novelty``
   for the left-out type versus the others.

Writes ``<out>/gne.md`` and ``<out>/gne.json``. ``--n-cells`` subsamples for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import prepare, quality  # noqa: E402


def dense(X) -> np.ndarray:
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)


def main() -> None:
    import scanpy as sc
    from sklearn.metrics import roc_auc_score

    import sclens as sl
    from sclens.tl._gne import fit_autoencoder

    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--dataset", default="baron")
    p.add_argument("--n-cells", type=int, default=0, help="subsample (0: all cells)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--min-type", type=int, default=50)
    p.add_argument("--skip-novelty", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sc.settings.verbosity = 0
    path, label = prepare(args.dataset, 0)
    adata = sc.read_h5ad(path)
    if args.n_cells:
        rng = np.random.default_rng(0)
        adata = adata[np.sort(rng.choice(adata.n_obs, args.n_cells, replace=False))].copy()
    truth = adata.obs[label].astype(str).to_numpy()
    pcs = np.asarray(adata.obsm["X_pca"])
    kw = dict(epochs=args.epochs, batch_size=args.batch_size, random_state=0)
    res: dict = {"dataset": args.dataset, "n_cells": adata.n_obs, **kw}

    # 1. reconstruction and map quality
    rows = []
    for name, nw in (
        ("gne", 0.0),
        ("gne, neighbor_weight=0.1", 0.1),
        ("gne, neighbor_weight=1", 1.0),
    ):
        a = adata.copy()
        t0 = time.perf_counter()
        sl.tl.gne(a, neighbor_weight=nw, **kw)
        secs = time.perf_counter() - t0
        trust, acc = quality(pcs, a.obsm["X_gne"], truth, np.random.default_rng(0))
        mse = a.uns["gne"]["reconstruction"]["error"]
        rows.append({"method": name, "mse": mse, "seconds": secs, "trust": trust, "knn_acc": acc})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    coords, mse, secs = fit_autoencoder(dense(adata.X), **kw)
    trust, acc = quality(pcs, coords, truth, np.random.default_rng(0))
    rows.append(
        {"method": "autoencoder", "mse": mse, "seconds": secs, "trust": trust, "knn_acc": acc}
    )
    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    res["maps"] = rows

    # 2. projection of 20% held-out cells
    rng = np.random.default_rng(0)
    test = rng.random(adata.n_obs) < 0.2
    ref, query = adata[~test].copy(), adata[test].copy()
    sl.tl.gne(ref, **kw)
    q = query.copy()
    q.obs = q.obs.drop(columns=[label])
    t0 = time.perf_counter()
    sl.tl.project(q, ref, key="gne", transfer=label)
    res["projection"] = {
        "n_ref": ref.n_obs,
        "n_query": q.n_obs,
        "accuracy": float(np.mean(q.obs[label].astype(str).to_numpy() == truth[test])),
        "seconds": time.perf_counter() - t0,
        "novelty_median": float(np.median(q.obs["gne_novelty"])),
    }
    print(json.dumps(res["projection"]), file=sys.stderr, flush=True)

    # 3. novelty of a left-out type
    novel = []
    types, counts = np.unique(truth, return_counts=True)
    for t in [] if args.skip_novelty else types[counts >= args.min_type]:
        is_t = truth == t
        ref = adata[~is_t & ~test].copy()
        query = adata[is_t | test].copy()
        sl.tl.gne(ref, **kw)
        sl.tl.project(query, ref, key="gne")
        auroc = roc_auc_score(is_t[is_t | test], query.obs["gne_novelty"].to_numpy())
        novel.append({"left_out": str(t), "n_cells": int(is_t.sum()), "auroc": float(auroc)})
        print(json.dumps(novel[-1]), file=sys.stderr, flush=True)
    res["novelty"] = novel

    (out / "gne.json").write_text(json.dumps(res, indent=1))
    lines = [
        f"GNE on {args.dataset} ({adata.n_obs} cells, {args.epochs} epochs, batch {args.batch_size}).",
        "",
        "| map | reconstruction MSE | seconds | trust@10 | 10-NN acc |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['mse']:.4f} | {r['seconds']:.1f} | {r['trust']:.4f} | {r['knn_acc']:.4f} |"
        )
    pr = res["projection"]
    lines += [
        "",
        f"Projection: {pr['n_query']} held-out cells onto {pr['n_ref']}: label transfer accuracy "
        f"{pr['accuracy']:.3f}, {pr['seconds']:.1f} s.",
    ]
    if novel:
        lines += ["", "| left-out type | cells | novelty AUROC |", "|---|---|---|"]
        lines += [f"| {r['left_out']} | {r['n_cells']} | {r['auroc']:.3f} |" for r in novel]
    (out / "gne.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
