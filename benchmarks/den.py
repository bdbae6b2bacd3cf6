"""DEN clusters (automatic K) versus Leiden at default resolution, on the same PCs.

    python benchmarks/den.py --out benchmarks/results [--datasets ...] [--seeds 0,1,2]
    python benchmarks/den.py --datasets synthetic --seeds 0     # the 80,000-cell set

For every labelled set (Baron pancreas, 10x PBMC, kidney, pbmc68k_reduced, and the synthetic
set of ``benchmarks/run.py``: 70,000 + 10,000 cells, 12 groups): ARI, NMI, number of clusters
and wall time of ``sl.tl.den`` (default, and with ``snap=True``) for each seed, and of
``sc.pp.neighbors + sc.tl.leiden`` (seed 0); the smallest ARI between two seeds' clusterings;
the DEN map's trustworthiness (k=10) and 10-NN accuracy. A data set given again replaces its
rows; the others keep theirs. Writes ``<out>/den.md`` and ``<out>/den.json``. Data preparation
is shared with ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rank_genes import table  # noqa: E402
from run import prepare, quality  # noqa: E402

VARIANTS = {"den": {}, "den snap": {"snap": True}}


def one_set(name: str, seeds: list[int], n_synthetic: int) -> list[dict]:
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    import sclens as sl

    path, label = prepare(name, n_synthetic)
    rows = []
    adata = sc.read_h5ad(path)
    truth = adata.obs[label].astype(str).to_numpy()
    base = {"dataset": name, "n_cells": adata.n_obs, "n_types": len(set(truth))}
    t0 = time.perf_counter()
    sc.pp.neighbors(adata, random_state=0)
    sc.tl.leiden(adata, flavor="igraph", n_iterations=2, random_state=0)
    leiden = adata.obs["leiden"].to_numpy()
    rows.append(
        base
        | {
            "method": "leiden",
            "seeds": [0],
            "n_clusters": [int(len(set(leiden)))],
            "ari": [float(adjusted_rand_score(truth, leiden))],
            "nmi": [float(normalized_mutual_info_score(truth, leiden))],
            "seconds": [time.perf_counter() - t0],
        }
    )
    for method, kwargs in VARIANTS.items():
        row = base | {"method": method, "seeds": seeds, "n_clusters": [], "ari": [], "nmi": []}
        row |= {"seconds": [], "map_trust": [], "map_knn_acc": []}
        found = []
        for seed in seeds:
            adata = sc.read_h5ad(path)
            t0 = time.perf_counter()
            sl.tl.den(adata, random_state=seed, **kwargs)
            row["seconds"].append(time.perf_counter() - t0)
            clusters = adata.obs["den"].to_numpy()
            found.append(clusters)
            row["n_clusters"].append(int(len(set(clusters))))
            row["ari"].append(float(adjusted_rand_score(truth, clusters)))
            row["nmi"].append(float(normalized_mutual_info_score(truth, clusters)))
            trust, acc = quality(
                np.asarray(adata.obsm["X_pca"]),
                adata.obsm["X_den"],
                truth,
                np.random.default_rng(0),
            )
            row["map_trust"].append(trust)
            row["map_knn_acc"].append(acc)
            print(json.dumps({k: row[k] for k in ("dataset", "method", "nmi")}), file=sys.stderr)
        pairs = [adjusted_rand_score(a, b) for a, b in itertools.combinations(found, 2)]
        row["seed_to_seed_ari"] = float(min(pairs)) if pairs else None
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    leiden = {r["dataset"]: np.mean(r["seconds"]) for r in rows if r["method"] == "leiden"}
    mean = lambda r, k, fmt: "" if r.get(k) is None else format(np.mean(r[k]), fmt)  # noqa: E731
    out = [
        {
            "data set": r["dataset"],
            "cells": r["n_cells"],
            "types": r["n_types"],
            "method": r["method"],
            "seeds": len(r["seeds"]),
            "clusters": "/".join(str(k) for k in r["n_clusters"]),
            "ARI": mean(r, "ari", ".3f"),
            "NMI (mean, min)": f"{np.mean(r['nmi']):.3f}, {np.min(r['nmi']):.3f}",
            "seed-to-seed ARI (min)": mean(r, "seed_to_seed_ari", ".3f"),
            "time / leiden": f"{np.mean(r['seconds']) / leiden[r['dataset']]:.1f}",
            "map trust@10": mean(r, "map_trust", ".4f"),
            "map 10-NN acc": mean(r, "map_knn_acc", ".4f"),
        }
        for r in rows
    ]
    return table(out) + "\n"


def main() -> None:
    import scanpy as sc

    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--datasets", default="baron,pbmc10x,kidney,pbmc68k")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--n-synthetic", type=int, default=70_000)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sc.settings.verbosity = 0
    names = args.datasets.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    stored = out / "den.json"
    old = json.loads(stored.read_text()) if stored.exists() else []
    rows = [r for r in old if r["dataset"] not in names and isinstance(r.get("nmi"), list)]
    for name in names:
        rows += one_set(name, seeds, args.n_synthetic)
    stored.write_text(json.dumps(rows, indent=1))
    md = markdown(rows)
    (out / "den.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
