"""Scale: ptsne on 100k, 300k and 1M cells x 2,000 genes, backed on disk.

    python benchmarks/scale.py --out benchmarks/results [--sizes 100000,300000,1000000]

Synthetic log-normalised counts (12 groups) are written chunk by chunk to
``benchmarks/cache/scale_<n>.h5ad`` (never held in memory whole). Every run is its own
subprocess, so its peak resident memory (VmHWM) is its own:

- ``backed``: ``sl.tl.ptsne`` on ``read_h5ad(path, backed='r')`` (PCA streamed in row blocks),
  at every size; wall time per stage from ``uns['ptsne']['timings']``.
- ``memory``: ``sl.tl.ptsne`` on the same file loaded into memory (at the smallest size).
- ``umap``: scanpy on the file in memory: ``sc.pp.pca``, ``sc.pp.neighbors``, ``sc.tl.umap``
  (at the smallest size), the same stages timed.

Quality on a labelled subsample of 10,000 cells: trustworthiness (k=10, 5,000 cells) against
the PCs of the backed run's input layer, and 5-fold 10-NN accuracy of the coordinates against
the groups. The fitted exponent is the least-squares slope of log(time) on log(n).
Writes ``<out>/scale.md`` and ``<out>/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"


def peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def data_path(n: int) -> Path:
    import sclens as sl

    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"scale_{n}.h5ad"
    if not path.exists():
        t0 = time.perf_counter()
        sl.datasets.write_synthetic_h5ad(path.with_suffix(".tmp"), n, 2000, 12, random_state=0)
        path.with_suffix(".tmp").rename(path)
        print(f"wrote {path} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return path


def worker(path: str, mode: str, out: str) -> None:
    import anndata as ad
    import scanpy as sc

    import sclens as sl

    sc.settings.verbosity = 0
    t0 = time.perf_counter()
    adata = ad.read_h5ad(path, backed="r" if mode == "backed" else None)
    res: dict = {"load_s": time.perf_counter() - t0}
    if mode in ("backed", "memory"):
        sl.tl.ptsne(adata, random_state=0)
        res |= {f"{k}_s": float(v) for k, v in adata.uns["ptsne"]["timings"].items()}
        Y = adata.obsm["X_ptsne"]
        sl.save_model(adata, "ptsne", str(Path(out).with_suffix(".npz")))
    elif mode == "umap":
        t = time.perf_counter()
        sc.pp.pca(adata, n_comps=50, random_state=0)
        res["input_s"] = time.perf_counter() - t
        t = time.perf_counter()
        sc.pp.neighbors(adata, n_neighbors=15, random_state=0)
        res["graph_s"] = time.perf_counter() - t
        t = time.perf_counter()
        sc.tl.umap(adata, random_state=0)
        res["training_s"] = time.perf_counter() - t
        Y = adata.obsm["X_umap"]
    else:
        raise ValueError(mode)
    res["total_s"] = time.perf_counter() - t0
    res["peak_rss_gib"] = peak_rss_gib()
    np.save(out, np.asarray(Y, dtype=np.float32))
    Path(out).with_suffix(".json").write_text(json.dumps(res))


def quality(path: Path, model: Path, Y: np.ndarray) -> tuple[float, float]:
    """Trustworthiness against the model's PCs and 10-NN accuracy on a 10,000-cell subsample."""
    import anndata as ad
    from sklearn.manifold import trustworthiness
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    import sclens as sl

    backed = ad.read_h5ad(path, backed="r")
    rng = np.random.default_rng(0)
    sub = np.sort(rng.choice(backed.n_obs, size=10_000, replace=False))
    X = backed.X[sub]
    labels = backed.obs["group"].to_numpy()[sub].astype(str)
    pcs = sl.load_model(str(model)).input_layer.transform(X)
    t = trustworthiness(pcs[:5000], Y[sub][:5000], n_neighbors=10)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    acc = cross_val_score(KNeighborsClassifier(10), Y[sub], labels, cv=cv).mean()
    return float(t), float(acc)


def fitted_exponent(ns, ts) -> float:
    if len(ns) < 2:
        return float("nan")
    return float(np.polyfit(np.log(ns), np.log(ts), 1)[0])


def table(rows: list[dict]) -> str:
    lines = [
        "| cells | run | input (PCA) s | graph s | training s | total s | peak RSS GiB | trust@10 | 10-NN acc |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['mode']} | {r['input_s']:.0f} | {r['graph_s']:.0f} | "
            f"{r['training_s']:.0f} | {r['total_s']:.0f} | {r['peak_rss_gib']:.2f} | "
            f"{r['trust']:.4f} | {r['knn_acc']:.4f} |"
        )
    backed = sorted((r for r in rows if r["mode"] == "backed"), key=lambda r: r["n"])
    ns = [r["n"] for r in backed]
    lines.append("")
    for stage in ("input_s", "graph_s", "training_s", "total_s"):
        e = fitted_exponent(ns, [r[stage] for r in backed])
        lines.append(f"- fitted exponent of {stage[:-2]} time in n (backed): {e:.2f}")
    by = {(r["n"], r["mode"]): r for r in rows}
    for n in ns:
        m, b, u = by.get((n, "memory")), by.get((n, "backed")), by.get((n, "umap"))
        if m:
            lines.append(
                f"- {n:,} cells, backed - in memory: trustworthiness {b['trust'] - m['trust']:+.4f}, "
                f"10-NN accuracy {b['knn_acc'] - m['knn_acc']:+.4f}; time ratio {b['total_s'] / m['total_s']:.2f}"
            )
        if u:
            lines.append(
                f"- {n:,} cells, backed ptsne / scanpy pca+neighbors+umap: time ratio "
                f"{b['total_s'] / u['total_s']:.2f}, trustworthiness {b['trust'] - u['trust']:+.4f}, "
                f"10-NN accuracy {b['knn_acc'] - u['knn_acc']:+.4f}"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--sizes", default="100000,300000,1000000")
    p.add_argument(
        "--compare-at", type=int, default=None, help="size for memory/umap runs (0: none)"
    )
    p.add_argument("--worker", nargs=3, metavar=("PATH", "MODE", "OUT"))
    args = p.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    compare = min(sizes) if args.compare_at is None else args.compare_at
    rows = []
    for n in sizes:
        path = data_path(n)
        modes = ["backed"] + (["memory", "umap"] if n == compare else [])
        for mode in modes:
            coords = out / f"scale_{n}_{mode}.npy"
            subprocess.run(
                [sys.executable, __file__, "--worker", str(path), mode, str(coords)], check=True
            )
            res = json.loads(coords.with_suffix(".json").read_text())
            model = out / f"scale_{n}_backed.npz"
            t, acc = quality(path, model, np.load(coords))
            row = {"n": n, "mode": mode, **res, "trust": t, "knn_acc": acc}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            coords.unlink()
            coords.with_suffix(".json").unlink()
    for f in out.glob("scale_*_*.npz"):
        f.unlink()
    # rows of (size, run) pairs not run this time are kept from the previous results
    previous = out / "scale.json"
    if previous.exists():
        done = {(r["n"], r["mode"]) for r in rows}
        kept = [
            r for r in json.loads(previous.read_text())["rows"] if (r["n"], r["mode"]) not in done
        ]
        rows = sorted(
            kept + rows, key=lambda r: (r["n"], ["backed", "memory", "umap"].index(r["mode"]))
        )
    meta = {"threads": os.environ.get("OMP_NUM_THREADS", "all"), "rows": rows}
    (out / "scale.json").write_text(json.dumps(meta, indent=1))
    (out / "scale.md").write_text(table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
