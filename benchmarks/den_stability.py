"""Stability of DEN clusters: K, ARI, NMI, seed-to-seed and held-out agreement.

    python benchmarks/den_stability.py --datasets baron,pbmc68k [--params '{"resolution": 2}']
    python benchmarks/den_stability.py --datasets baron --pairs 0:1,1:2,2:3,3:4 --out benchmarks/results

Per data set: ``sl.tl.den`` on all cells (``--seed``, default 0), optionally again with the next
seed, and on 80 % of the cells (``--split``; by default the split of ``tests/test_den.py``); the
other 20 % are projected with ``sl.tl.project``. Held-out ARI compares their predicted clusters
with the full model's; "seen" ARI compares the two models on the cells both were trained on.
``--pairs seed:split,...`` repeats this for several seeds and splits; with ``--out`` the rows go
to ``<out>/den_stability.md`` and ``.json`` (with ``sl.get_num_threads()``: the thread count
changes the numbers).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import prepare  # noqa: E402


def main() -> None:
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score as ari
    from sklearn.metrics import normalized_mutual_info_score as nmi

    import sclens as sl

    p = argparse.ArgumentParser()
    p.add_argument("--datasets", default="baron,pbmc68k")
    p.add_argument("--params", default="{}")
    p.add_argument("--seeds", action="store_true", help="also train with seed + 1")
    p.add_argument("--seed", type=int, default=0, help="random_state of both models")
    p.add_argument("--split", type=int, default=1, help="seed of the 80/20 split")
    p.add_argument("--pairs", default=None, help="seed:split,... (overrides --seed/--split)")
    p.add_argument("--out", default=None, help="write den_stability.md/.json here")
    args = p.parse_args()
    params = json.loads(args.params)
    sc.settings.verbosity = 0
    pairs = (
        [tuple(int(v) for v in pair.split(":")) for pair in args.pairs.split(",")]
        if args.pairs
        else [(args.seed, args.split)]
    )
    rows = []
    data = {}  # each data set read once, whatever the number of pairs
    for name, (seed, split) in ((n, pair) for n in args.datasets.split(",") for pair in pairs):
        if name not in data:
            path, label = prepare(name, 0)
            data[name] = (sc.read_h5ad(path), label)
        adata, label = data[name]
        truth = adata.obs[label].astype(str).to_numpy()
        held = np.random.default_rng(split).random(adata.n_obs) < 0.2
        t0 = time.perf_counter()
        full = sl.tl.den(adata, random_state=seed, copy=True, **params)
        secs = time.perf_counter() - t0
        ref = sl.tl.den(adata[~held].copy(), random_state=seed, copy=True, **params)
        query = sl.tl.project(adata[held].copy(), ref, model_key="den", copy=True)
        row = {
            "dataset": name,
            "params": params,
            "seed": seed,
            "split": split,
            "K": [full.uns["den"]["params"]["n_clusters"], ref.uns["den"]["params"]["n_clusters"]],
            "K_spectral": [
                full.uns["den"]["spectrum"]["n_clusters"],
                ref.uns["den"]["spectrum"]["n_clusters"],
            ],
            "ari": ari(truth, full.obs["den"]),
            "nmi": nmi(truth, full.obs["den"]),
            "held_out_ari": ari(full.obs["den"][held], query.obs["den"]),
            "seen_ari": ari(full.obs["den"][~held], ref.obs["den"]),
            "seconds": secs,
            "merges": np.round(full.uns["den"]["spectrum"]["merges"][:, 2], 3).tolist(),
        }
        if args.seeds:
            other = sl.tl.den(adata, random_state=seed + 1, copy=True, **params)
            row["K"].append(other.uns["den"]["params"]["n_clusters"])
            row["seed_ari"] = ari(full.obs["den"], other.obs["den"])
            row["ari_seed1"] = ari(truth, other.obs["den"])
            row["nmi_seed1"] = nmi(truth, other.obs["den"])
        row["threads"] = sl.get_num_threads()
        rows.append(row)
        print(
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
            flush=True,
        )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "den_stability.json").write_text(json.dumps(rows, indent=1))
        lines = [
            "| data set | seed | split | threads | K full / 80 % | ARI | NMI | held-out ARI | seen ARI |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['dataset']} | {r['seed']} | {r['split']} | {r['threads']} | "
                f"{r['K'][0]} / {r['K'][1]} | {r['ari']:.3f} | {r['nmi']:.3f} | "
                f"{r['held_out_ari']:.3f} | {r['seen_ari']:.3f} |"
            )
        (out / "den_stability.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
