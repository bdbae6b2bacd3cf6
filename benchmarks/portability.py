"""Do the conclusions a user reads depend on the CPU? Thread counts x torch CPU kernels x seeds.

    python benchmarks/portability.py --out benchmarks/results [--datasets baron] \
        [--caps default,avx2,avx512] [--threads 1,2] [--seeds 0,1] [--params '{"ptsne": {...}}']

Every (capability, threads, seed) runs in its own process: ``ATEN_CPU_CAPABILITY`` selects
torch's vectorised kernels at start-up (as on a CPU that has only those; with MKL's and
oneDNN's matching code paths, as in ``benchmarks/spread.py``) and ``sl.set_num_threads`` the
thread count. Each process trains ``sl.tl.ptsne`` and ``sl.tl.den``
at their defaults on the same preprocessed data (the cache of ``benchmarks/run.py``, so scanpy's
own steps are identical) and ranks genes with integrated gradients on the ptsne map. Pairs of
runs that differ only in the thread count or only in the kernels are compared, and so are
runs that differ only in the seed, for scale:

- ptsne: mean overlap of the 15-NN sets of the two maps;
- DEN: ARI between the two clusterings, and the two K;
- rank_genes: overlap of the top-10 genes of each cell type (min and median over types).

Writes ``<out>/portability.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import prepare  # noqa: E402
from spread import KERNEL_ENV  # noqa: E402


def worker(path: str, label: str, threads: int, seed: int, params: dict, out: str) -> None:
    import scanpy as sc

    import sclens as sl

    sc.settings.verbosity = 0
    sl.set_num_threads(threads)
    adata = sc.read_h5ad(path)
    t0 = time.perf_counter()
    sl.tl.ptsne(adata, random_state=seed, **params.get("ptsne", {}))
    t1 = time.perf_counter()
    sl.tl.den(adata, random_state=seed, **params.get("den", {}))
    t2 = time.perf_counter()
    sl.tl.rank_genes(adata, label, model_key="ptsne", method="integrated_gradients")
    t3 = time.perf_counter()
    names = adata.uns["rank_genes_integrated_gradients"]["names"]
    groups = list(names.dtype.names)
    top = np.array([[str(g) for g in names[grp][:10]] for grp in groups])
    np.savez(
        out,
        ptsne=adata.obsm["X_ptsne"],
        den=np.asarray(adata.obs["den"].astype(str), dtype=str),
        groups=np.array(groups),
        top=top,
        seconds=np.array([t1 - t0, t2 - t1, t3 - t2]),
    )


def knn_overlap(a: np.ndarray, b: np.ndarray, k: int = 15) -> float:
    """Mean share of each cell's k nearest neighbours that two maps have in common."""
    from sklearn.neighbors import NearestNeighbors

    na = NearestNeighbors(n_neighbors=k + 1).fit(a).kneighbors(a, return_distance=False)[:, 1:]
    nb = NearestNeighbors(n_neighbors=k + 1).fit(b).kneighbors(b, return_distance=False)[:, 1:]
    return float(np.mean([len(np.intersect1d(x, y)) / k for x, y in zip(na, nb, strict=True)]))


def compare(a: dict, b: dict) -> dict:
    from sklearn.metrics import adjusted_rand_score

    overlaps = [len(set(x) & set(y)) for x, y in zip(a["top"], b["top"], strict=True)]
    return {
        "ptsne_knn15": knn_overlap(a["ptsne"], b["ptsne"]),
        "den_ari": float(adjusted_rand_score(a["den"], b["den"])),
        "den_K": [len(set(a["den"])), len(set(b["den"]))],
        "top10_min": int(min(overlaps)),
        "top10_median": float(np.median(overlaps)),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--datasets", default="baron")
    p.add_argument("--caps", default="default,avx2,avx512")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--params", default="{}", help='JSON: {"ptsne": {...}, "den": {...}}')
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (one-thread runs)")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--tag", default="", help="suffix of the output files")
    p.add_argument("--worker", nargs=6, metavar=("PATH", "LABEL", "THREADS", "SEED", "P", "OUT"))
    args = p.parse_args()
    if args.worker:
        path, label, threads, seed, params, out = args.worker
        worker(path, label, int(threads), int(seed), json.loads(params), out)
        return

    caps = args.caps.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    runs_dir = HERE / "cache" / f"portability{args.tag}"
    runs_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.datasets.split(","):
        path, label = prepare(name, 0)
        configs = list(itertools.product(caps, threads, seeds))
        outs = {c: runs_dir / f"{name}_{c[0]}_{c[1]}_{c[2]}.npz" for c in configs}
        # two-thread runs alone, one-thread runs --jobs at a time
        pending = [c for c in configs if not outs[c].exists()]
        running: list[subprocess.Popen] = []
        for c in sorted(pending, key=lambda c: c[1]):
            cap, t, seed = c
            env = dict(
                os.environ,
                ATEN_CPU_CAPABILITY=cap,
                OMP_NUM_THREADS=str(t),
                **KERNEL_ENV.get(cap, {}),
            )
            cmd = [sys.executable, __file__, "--worker", str(path), label, str(t), str(seed)]
            cmd += [args.params, str(outs[c])]
            limit = max(1, args.jobs // t)
            while len(running) >= limit:
                running = [r for r in running if r.poll() is None]
                time.sleep(0.5)
            print("run", name, c, flush=True)
            running.append(subprocess.Popen(cmd, env=env))
        for r in running:
            r.wait()
        res = {c: dict(np.load(outs[c])) for c in configs}
        for c1, c2 in itertools.combinations(configs, 2):
            diff = [x != y for x, y in zip(c1, c2, strict=True)]
            if sum(diff) != 1:
                continue
            what = ("kernels", "threads", "seed")[diff.index(True)]
            rows.append(
                {"dataset": name, "differs": what, "a": list(c1), "b": list(c2)}
                | compare(res[c1], res[c2])
            )
        secs = np.mean([res[c]["seconds"] for c in configs], axis=0)
        print(f"{name}: seconds ptsne/den/IG {np.round(secs, 1).tolist()}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"portability{args.tag}.json").write_text(
        json.dumps({"params": json.loads(args.params), "rows": rows}, indent=1)
    )
    (out / f"portability{args.tag}.md").write_text(table(rows, args.params))
    print(table(rows, args.params))


def table(rows: list[dict], params: str) -> str:
    lines = [
        f"Settings: {params} (defaults otherwise). Pairs of runs that differ in one thing.",
        "",
        "| data set | differs | run a (kernels, threads, seed) | run b | ptsne 15-NN overlap "
        "| DEN ARI | DEN K | rank_genes top-10 overlap min / median |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["differs"])):
        lines.append(
            f"| {r['dataset']} | {r['differs']} | {tuple(r['a'])} | {tuple(r['b'])} "
            f"| {r['ptsne_knn15']:.3f} | {r['den_ari']:.3f} | {r['den_K'][0]} / {r['den_K'][1]} "
            f"| {r['top10_min']} / {r['top10_median']:.0f} |"
        )
    lines.append("")
    for what in ("threads", "kernels", "seed"):
        sel = [r for r in rows if r["differs"] == what]
        if sel:
            lines.append(
                f"- {what}: ptsne 15-NN {min(r['ptsne_knn15'] for r in sel):.3f}-"
                f"{max(r['ptsne_knn15'] for r in sel):.3f}, DEN ARI "
                f"{min(r['den_ari'] for r in sel):.3f}-{max(r['den_ari'] for r in sel):.3f}, "
                f"top-10 overlap min {min(r['top10_min'] for r in sel)}"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
