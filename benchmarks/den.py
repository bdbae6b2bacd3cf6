"""DEN clusters (automatic K) versus Leiden at default resolution, on the same PCs.

    python benchmarks/den.py --out benchmarks/results

For every labelled set (Baron pancreas, 10x PBMC, kidney, pbmc68k_reduced): ARI, NMI, number of
clusters and wall time of ``sl.tl.den`` and of ``sc.pp.neighbors + sc.tl.leiden``, plus the DEN
map's trustworthiness (k=10) and 10-NN accuracy. Writes ``<out>/den.md`` and ``<out>/den.json``.
Data preparation is shared with ``benchmarks/run.py``.
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


def main() -> None:
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    import sclens as sl

    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--datasets", default="baron,pbmc10x,kidney,pbmc68k")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sc.settings.verbosity = 0
    rows = []
    for name in args.datasets.split(","):
        path, label = prepare(name, 0)
        adata = sc.read_h5ad(path)
        truth = adata.obs[label].astype(str).to_numpy()
        t0 = time.perf_counter()
        sl.tl.den(adata, random_state=0)
        t_den = time.perf_counter() - t0
        t0 = time.perf_counter()
        sc.pp.neighbors(adata, random_state=0)
        sc.tl.leiden(adata, flavor="igraph", n_iterations=2, random_state=0)
        t_leiden = time.perf_counter() - t0
        trust, acc = quality(
            np.asarray(adata.obsm["X_pca"]), adata.obsm["X_den"], truth, np.random.default_rng(0)
        )
        for method, clusters, secs in (
            ("den", adata.obs["den"], t_den),
            ("leiden", adata.obs["leiden"], t_leiden),
        ):
            row = {
                "dataset": name,
                "n_cells": adata.n_obs,
                "n_types": len(set(truth)),
                "method": method,
                "n_clusters": int(clusters.nunique()),
                "ari": float(adjusted_rand_score(truth, clusters)),
                "nmi": float(normalized_mutual_info_score(truth, clusters)),
                "seconds": secs,
            }
            if method == "den":
                row |= {"map_trust": trust, "map_knn_acc": acc}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    (out / "den.json").write_text(json.dumps(rows, indent=1))
    lines = [
        "| data set | cells | types | method | clusters | ARI | NMI | seconds | time ratio | map trust@10 | map 10-NN acc |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by = {(r["dataset"], r["method"]): r for r in rows}
    for r in rows:
        ratio = r["seconds"] / by[(r["dataset"], "leiden")]["seconds"]
        extra = f"{r['map_trust']:.4f} | {r['map_knn_acc']:.4f}" if "map_trust" in r else " | "
        lines.append(
            f"| {r['dataset']} | {r['n_cells']} | {r['n_types']} | {r['method']} | {r['n_clusters']} | "
            f"{r['ari']:.3f} | {r['nmi']:.3f} | {r['seconds']:.1f} | {ratio:.1f} | {extra} |"
        )
    (out / "den.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
